"""Feature engineering: per-symbol indicators, market-wide features and targets (see catalogue)."""
