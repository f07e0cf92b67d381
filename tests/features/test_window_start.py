"""A bar's features do not depend on where the data starts: the warm-up margin is fetched before every
window and before every served bar, and rolling moments are computed afresh in each window."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from tests.conftest import AS_OF, make_settings
from tests.stages import run_through
from trading_ml.features.catalogue import model_features
from trading_ml.pipeline.resources import StageResources
from trading_ml.run import RunContext
from trading_ml.serving import SignalService, served_panel, signal_table

SYMBOLS = ["^GSPC", "^VIX", "AAPL", "XOM", "JPM"]


def training_table(settings, lookback: str) -> tuple[RunContext, pd.DataFrame, list[str]]:
    settings = dataclasses.replace(
        settings, timeframes={"1d": dataclasses.replace(settings.timeframes["1d"], lookback=lookback)}
    )
    ctx = RunContext.create(settings, AS_OF, SYMBOLS, ["1d"], "synthetic")
    with StageResources.open(ctx) as resources:
        manifest = run_through(ctx, resources, "features")["features"]
    entry = manifest["timeframes"]["1d"]
    return (
        ctx,
        pd.read_parquet(ctx.layout.resolve(entry["training_table"]["path"])),
        model_features(entry["feature_names"]),
    )


def relative_gap(first: pd.DataFrame, second: pd.DataFrame) -> pd.Series:
    """The largest |a - b| / max(|a|, 1e-6) per feature: below 1e-6 in size, values must agree to 1e-15
    absolutely (a mean of +1s and -1s that is 0 in one window may be 4e-17 in another)."""
    return ((first - second).abs() / first.abs().clip(lower=1e-6)).max()


def tolerance(table: pd.DataFrame, names: list[str]) -> pd.Series:
    """Per feature, the relative gap allowed: 1e-9, or one float32 step (2^-23) for a feature the
    training table stores as float32 (a 1e-15 difference can round to neighbouring float32 values)."""
    return pd.Series([1e-9 if table[n].dtype == np.float64 else 2.0**-23 for n in names], index=names)


@pytest.fixture(scope="module")
def two_windows(tmp_path_factory):
    settings = make_settings(tmp_path_factory.mktemp("window_start") / "data")
    return training_table(settings, "5y"), training_table(settings, "54mo")


def test_two_windows_six_months_apart_agree_on_every_model_feature(two_windows):
    (_, longer, names), (_, shorter, _) = two_windows
    shared = longer.index.intersection(shorter.index)
    assert len(shared) == len(shorter) > 4000  # the later window's every row, none lost to a warm-up
    gaps = relative_gap(longer.loc[shared, names].astype(float), shorter.loc[shared, names].astype(float))
    allowed = tolerance(longer, names)
    assert (gaps <= allowed).all(), gaps[gaps > allowed].to_dict()
    assert (allowed == 1e-9).sum() >= 2 and (longer[names].dtypes == np.float32).sum() > 100
    assert shorter.index.get_level_values("timestamp").min() >= pd.Timestamp(AS_OF, tz="UTC") - pd.DateOffset(months=54)


def test_serving_computes_the_same_features_for_a_bar_as_training(two_windows):
    (ctx, table, names), _ = two_windows
    service = SignalService(ctx.settings)
    served, excluded = served_panel(ctx.settings, service.bars.snapshot()[0])
    assert excluded == {"^VIX": "market input only (no volume)"}  # left out of both, as in training
    assert set(served.index.get_level_values("symbol")) == set(table.index.get_level_values("symbol"))
    assert list(served.columns) == list(table.columns)
    shared = served.index.intersection(table.index)
    assert len(shared) > 200 * 4
    served_as_stored = served.loc[shared, names].astype(table[names].dtypes.to_dict()).astype(float)
    gaps = relative_gap(table.loc[shared, names].astype(float), served_as_stored)
    allowed = tolerance(table, names)
    assert (gaps <= allowed).all(), gaps[gaps > allowed].to_dict()
    assert np.isfinite(served.loc[shared, names].to_numpy()).all()


def test_the_answer_for_an_old_as_of_is_the_answer_built_from_the_bars_before_it(two_windows):
    """Any as-of is a lookup in one build of every stored bar: the same signal as a build from only
    the bars before that as-of (features at a bar use bars up to it only)."""
    (ctx, _, _), _ = two_windows
    bars = SignalService(ctx.settings).bars.snapshot()[0]
    full = signal_table(ctx.settings, bars, {})
    for as_of in ("2024-03-15", "2025-09-02"):
        end = pd.Timestamp(as_of, tz="UTC") + pd.Timedelta(days=1)
        alone = signal_table(ctx.settings, {s: frame[frame.index < end] for s, frame in bars.items()}, {})
        for symbol in ("AAPL", "XOM"):
            looked_up, built = full.latest(symbol, end, ctx.settings), alone.latest(symbol, end, ctx.settings)
            assert looked_up["bar"] == built["bar"] and looked_up["regime"] == built["regime"]
            for task in ("direction", "volatility"):
                for key, value in looked_up[task].items():
                    expected = built[task][key]
                    assert (
                        value == pytest.approx(expected, rel=1e-9) if isinstance(value, float) else value == expected
                    ), (as_of, symbol, task, key)
