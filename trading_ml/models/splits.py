"""Walk-forward folds by time, with a purge gap so no training label reaches into a later segment.

The newest ``folds`` x ``test_share`` of the table's time span is cut into ``folds`` test segments
in time order. Fold k trains on everything before its validation segment (an expanding window),
stops early on the ``validation_share`` just before its test segment, and predicts its test segment;
rows after it belong to later folds. Per symbol, the last ``gap`` bars before each boundary belong
to no segment: their labels (up to ``horizon`` bars ahead) or the sequences built on them
(``sequence_length`` bars) would straddle it. The pooled test segments are the out-of-sample rows
every model is judged on; the model of the last fold is the one registered.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from trading_ml.config import FeatureSettings, ModelSettings

SEGMENTS = ("train", "validation", "test")
CATEGORIES = ("", *SEGMENTS)  # a row's segment; "" purged or after the fold


@dataclass(frozen=True)
class Split:
    """One fold: each row's segment ('train', 'validation', 'test' or '' for purged or later), and
    the boundaries (test_end None for the last fold, which runs to the end of the table)."""

    segment: pd.Series
    validation_start: pd.Timestamp
    test_start: pd.Timestamp
    test_end: pd.Timestamp | None
    gap: int
    fold: int = 0

    def mask(self, name: str) -> np.ndarray:
        return (self.segment == name).to_numpy()

    def to_dict(self) -> dict:
        counts = self.segment.value_counts()
        return {
            "fold": self.fold,
            "validation_start": self.validation_start.isoformat(),
            "test_start": self.test_start.isoformat(),
            "test_end": self.test_end.isoformat() if self.test_end is not None else None,
            "purge_gap_bars": self.gap,
            "rows": {name: int(counts.get(name, 0)) for name in SEGMENTS},
        }


def purge_gap(models: ModelSettings, features: FeatureSettings) -> int:
    """The longest label horizon plus the longest sequence a model reads (its `sequence_length`), in bars."""
    horizon = max(1, features.forward_volatility_bars, features.regime.horizon)
    return horizon + models.longest_sequence


def walk_forward(table: pd.DataFrame, models: ModelSettings, features: FeatureSettings) -> list[Split]:
    """The folds of a (timestamp, symbol)-indexed table, oldest first."""
    stamps = table.index.get_level_values("timestamp")
    first, last = stamps.min(), stamps.max()
    span = last - first
    gap = purge_gap(models, features)
    folds = []
    for fold in range(models.folds):
        test_start = first + span * (1 - models.test_share * (models.folds - fold))
        test_end = None if fold == models.folds - 1 else test_start + span * models.test_share
        validation_start = test_start - span * models.validation_share
        segment = np.full(len(table), CATEGORIES.index("train"), dtype=np.int8)  # a byte a row: every fold is kept
        segment[stamps >= validation_start] = CATEGORIES.index("validation")
        segment[stamps >= test_start] = CATEGORIES.index("test")
        if test_end is not None:
            segment[stamps >= test_end] = CATEGORIES.index("")
        for boundary in (validation_start, test_start):
            segment[_last_bars_before(table, stamps, boundary, gap)] = CATEGORIES.index("")
        segments = pd.Categorical.from_codes(segment, categories=CATEGORIES)
        folds.append(Split(pd.Series(segments, index=table.index), validation_start, test_start, test_end, gap, fold))
    return folds


def out_of_sample_fold(folds: list[Split]) -> np.ndarray:
    """Each row's fold when it is in that fold's test segment, else -1."""
    fold_of = np.full(len(folds[0].segment), -1)
    for split in folds:
        fold_of[split.mask("test")] = split.fold
    return fold_of


def _last_bars_before(table: pd.DataFrame, stamps: pd.DatetimeIndex, boundary: pd.Timestamp, bars: int) -> np.ndarray:
    """Rows among each symbol's last ``bars`` bars before ``boundary`` (the table is in time order)."""
    before = np.asarray(stamps < boundary)
    symbols = table.index.codes[table.index.names.index("symbol")][before]  # the level's codes: no strings made
    from_end = pd.Series(symbols).groupby(symbols).cumcount(ascending=False).to_numpy()
    last = np.zeros(len(table), dtype=bool)
    last[np.flatnonzero(before)[from_end < bars]] = True
    return last


def rows_with_context(table: pd.DataFrame, rows: np.ndarray, context: int | None) -> np.ndarray:
    """The rows a model whose prediction for a row reads only that row and the ``context`` - 1 rows of
    its symbol before it (table order) needs to predict ``rows``: per symbol, from ``context`` - 1 rows
    before its first such row to its last one. None: every row (the model reads the whole history)."""
    if context is None:
        return np.ones(len(table), dtype=bool)
    position = table.groupby(level="symbol", sort=False).cumcount().to_numpy()
    symbols = pd.factorize(table.index.get_level_values("symbol"))[0]
    first = np.full(symbols.max() + 1 if len(symbols) else 0, np.iinfo(np.int64).max)
    last = np.full_like(first, -1)
    np.minimum.at(first, symbols[rows], position[rows])
    np.maximum.at(last, symbols[rows], position[rows])
    return (position >= first[symbols] - (context - 1)) & (position <= last[symbols])
