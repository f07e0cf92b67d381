"""Train / validation / test by time, with a purge gap so no training label reaches into a later segment.

The segments are the oldest ``train_share`` of the table's time span, the next ``validation_share``
and the rest. Per symbol, the last ``gap`` bars before each boundary belong to no segment: their
labels (up to ``horizon`` bars ahead) or the sequences built on them (``sequence_length`` bars)
would straddle it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trading_ml.config import FeatureSettings, ModelSettings

SEGMENTS = ("train", "validation", "test")


@dataclass(frozen=True)
class Split:
    """Each row's segment ('train', 'validation', 'test' or '' for purged), and the boundaries."""

    segment: pd.Series
    validation_start: pd.Timestamp
    test_start: pd.Timestamp
    gap: int

    def mask(self, name: str) -> np.ndarray:
        return (self.segment == name).to_numpy()

    def to_dict(self) -> dict:
        counts = self.segment.value_counts()
        return {
            "validation_start": self.validation_start.isoformat(),
            "test_start": self.test_start.isoformat(),
            "purge_gap_bars": self.gap,
            "rows": {name: int(counts.get(name, 0)) for name in SEGMENTS},
            "purged_rows": int(counts.get("", 0)),
        }


def purge_gap(models: ModelSettings, features: FeatureSettings) -> int:
    """The longest label horizon plus the LSTM's sequence length, in bars."""
    horizon = max(1, features.forward_volatility_bars, features.regime.horizon)
    return horizon + models.sequence_length


def split_by_time(table: pd.DataFrame, models: ModelSettings, features: FeatureSettings) -> Split:
    """Segments of a (timestamp, symbol)-indexed table."""
    stamps = table.index.get_level_values("timestamp")
    first, last = stamps.min(), stamps.max()
    validation_start = first + (last - first) * models.train_share
    test_start = first + (last - first) * (models.train_share + models.validation_share)
    segment = np.where(stamps >= test_start, "test", np.where(stamps >= validation_start, "validation", "train"))
    gap = purge_gap(models, features)
    purged = np.zeros(len(table), dtype=bool)
    for boundary in (validation_start, test_start):
        purged |= _last_bars_before(table, stamps, boundary, gap)
    segment = np.where(purged, "", segment)
    return Split(pd.Series(segment, index=table.index), validation_start, test_start, gap)


def _last_bars_before(table: pd.DataFrame, stamps: pd.DatetimeIndex, boundary: pd.Timestamp, bars: int) -> np.ndarray:
    """Rows among each symbol's last ``bars`` bars before ``boundary`` (the table is in time order)."""
    before = np.asarray(stamps < boundary)
    symbols = table.index.get_level_values("symbol")[before]
    from_end = pd.Series(0, index=symbols).groupby(level=0).cumcount(ascending=False).to_numpy()
    last = np.zeros(len(table), dtype=bool)
    last[np.flatnonzero(before)[from_end < bars]] = True
    return last
