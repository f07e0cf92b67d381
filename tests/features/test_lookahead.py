"""The plan's sixth check: features at bar t use bars up to t only. Targets are allowed to look ahead.

For several cut points t, the whole feature build (indicators, market-wide joins) runs on every
bar that had closed by t and must equal the build on the full history at every row closed by t.
Cutting by close time, not by bar stamp, is what catches a market join that reads a later close
(^NSEI's daily bar closes at 10:00 UTC, before the US bar stamped the same day does).
"""

from __future__ import annotations

import pandas as pd
import pytest

from trading_ml.data.calendars import bar_close_times
from trading_ml.features.build import build_timeframe
from trading_ml.features.targets import BASELINE_COLUMNS, TARGET_COLUMNS

CUT_SHARES = (0.2, 0.45, 0.7, 0.999)  # of a reference symbol's bars; the first lies just past the warm-up


def closed_by(bars: pd.DataFrame, instrument, timeframe: str, cut: pd.Timestamp) -> pd.Series:
    return pd.Series(bar_close_times(instrument.exchange, timeframe, bars.index) <= cut, index=bars.index)


def truncated(bars_by_symbol, instruments, timeframe, cut) -> dict[str, pd.DataFrame]:
    return {s: bars[closed_by(bars, instruments[s], timeframe, cut)] for s, bars in bars_by_symbol.items()}


def cut_points(bars_by_symbol, instruments, timeframe) -> list[pd.Timestamp]:
    """Close times of bars of ^GSPC and, alternately, ^NSEI (another exchange's clock) when present."""
    references = [s for s in ("^GSPC", "^NSEI") if s in bars_by_symbol]
    cuts = []
    for number, share in enumerate(CUT_SHARES):
        symbol = references[number % len(references)]
        index = bars_by_symbol[symbol].index
        cuts.append(bar_close_times(instruments[symbol].exchange, timeframe, index)[int(share * (len(index) - 1))])
    return cuts


@pytest.mark.parametrize("data", ["synthetic_daily", "synthetic_hourly", "sample_daily"])
def test_every_feature_up_to_t_is_the_same_with_or_without_the_bars_after_t(data, request, feature_settings):
    bars, instruments = request.getfixturevalue(data)
    timeframe = "1h" if "hourly" in data else "1d"
    full = build_timeframe(bars, instruments, timeframe, feature_settings.features)
    compared = 0
    for cut in cut_points(bars, instruments, timeframe):
        partial = build_timeframe(
            truncated(bars, instruments, timeframe, cut), instruments, timeframe, feature_settings.features
        )
        for symbol, result in partial.symbols.items():
            names = result.feature_names
            expected = full.symbols[symbol].table
            expected = expected.loc[
                closed_by(expected, instruments[symbol], timeframe, cut), names + list(BASELINE_COLUMNS)
            ]
            pd.testing.assert_frame_equal(
                result.table[names + list(BASELINE_COLUMNS)], expected, check_exact=False, rtol=1e-12, atol=1e-12
            )
            compared += len(expected)
    assert compared > 1000  # the comparison covered real rows, not empty tables


@pytest.mark.parametrize("data", ["synthetic_daily", "sample_daily"])
def test_targets_are_the_columns_that_see_the_future(data, request, feature_settings):
    bars, instruments = request.getfixturevalue(data)
    full = build_timeframe(bars, instruments, "1d", feature_settings.features)
    cut = cut_points(bars, instruments, "1d")[1]
    partial = build_timeframe(truncated(bars, instruments, "1d", cut), instruments, "1d", feature_settings.features)
    before = partial.symbols["^GSPC"].table
    after = full.symbols["^GSPC"].table.loc[before.index]
    last = before.index[-1]
    assert pd.isna(before.loc[last, "target_return"]) and pd.notna(after.loc[last, "target_return"])
    changed = {c for c in TARGET_COLUMNS if not before[c].equals(after[c])}
    assert changed == set(TARGET_COLUMNS) - {"target_regime"}
    assert before["target_regime"].equals(after["target_regime"])  # the regime nowcast uses the past only
    assert before["baseline_regime_random_walk"].equals(after["baseline_regime_random_walk"])  # so does the baseline
    assert not any(name.startswith("target_") for name in partial.symbols["^GSPC"].feature_names)
