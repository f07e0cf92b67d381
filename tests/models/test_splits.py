"""Walk-forward folds: expanding training windows, disjoint test segments in time order, purge gaps."""

import numpy as np
import pandas as pd

from trading_ml.config import FeatureSettings
from trading_ml.drivers import load_settings
from trading_ml.models.splits import out_of_sample_fold, purge_gap, rows_with_context, walk_forward

MODELS, FEATURES = load_settings(env={}).models, FeatureSettings()  # the repo's models: sequences of 20 bars


def table(days: int = 1000, symbols: int = 3) -> pd.DataFrame:
    stamps = pd.date_range("2021-01-01", periods=days, freq="B", tz="UTC", name="timestamp")
    index = pd.MultiIndex.from_product([stamps, [f"S{i}" for i in range(symbols)]], names=["timestamp", "symbol"])
    return pd.DataFrame({"x": np.arange(len(index))}, index=index)


def test_folds_test_the_newest_segments_in_order_each_trained_only_on_what_came_before():
    frame = table()
    stamps = frame.index.get_level_values("timestamp")
    folds = walk_forward(frame, MODELS, FEATURES)
    assert len(folds) == MODELS.folds and [split.fold for split in folds] == list(range(MODELS.folds))
    train_sizes = []
    for split in folds:
        train, validation, test = (stamps[split.mask(name)] for name in ("train", "validation", "test"))
        assert (
            train.max() < split.validation_start <= validation.min()
            and validation.max() < split.test_start <= test.min()
        )
        if split.test_end is not None:
            assert test.max() < split.test_end
        train_sizes.append(len(train))
    assert train_sizes == sorted(train_sizes) and train_sizes[0] < train_sizes[-1]  # an expanding window
    assert folds[-1].test_end is None and stamps[folds[-1].mask("test")].max() == stamps.max()
    for earlier, later in zip(folds, folds[1:], strict=False):
        assert earlier.test_end == later.test_start  # the test segments tile the newest span
    share = (out_of_sample_fold(folds) >= 0).mean()
    assert abs(share - MODELS.folds * MODELS.test_share) < 0.01


def test_the_last_bars_before_each_boundary_belong_to_no_segment():
    frame = table(symbols=2)
    stamps = frame.index.get_level_values("timestamp")
    gap = purge_gap(MODELS, FEATURES)
    for split in walk_forward(frame, MODELS, FEATURES):
        for boundary in (split.validation_start, split.test_start):
            before = np.flatnonzero(np.asarray(stamps < boundary))
            last_rows = before[-gap * 2 :]  # two symbols: the last `gap` bars of each
            assert (split.segment.to_numpy()[last_rows] == "").all()
            assert split.segment.to_numpy()[before[-gap * 2 - 1]] != ""


def test_rows_with_context_reach_back_per_symbol_from_the_first_row_to_the_last():
    frame = table(days=50, symbols=3).drop(index=[(pd.Timestamp("2021-01-05", tz="UTC"), "S1")])
    symbols = frame.index.get_level_values("symbol")
    stamps = frame.index.get_level_values("timestamp")
    rows = np.flatnonzero((stamps >= "2021-02-01") & (stamps < "2021-02-10") & (symbols != "S2"))
    needed = rows_with_context(frame, rows, context=5)
    for symbol in ("S0", "S1"):
        own = np.flatnonzero(symbols == symbol)
        first, last = np.searchsorted(own, rows[symbols[rows] == symbol][[0, -1]])
        assert np.array_equal(np.flatnonzero(needed[own]), np.arange(first - 4, last + 1))
    assert not needed[symbols == "S2"].any()  # none of its rows asked for
    assert rows_with_context(frame, rows, context=None).all()
