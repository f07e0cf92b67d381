"""Targets: direction classes, the volatility targets, and the regime rules as a total function."""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest

from trading_ml.config import FeatureSettings, RegimeRules
from trading_ml.features.targets import REGIMES, direction_labels, fear_gauge, make_targets, regime_labels

RULES = RegimeRules()


def test_direction_is_up_down_or_neutral_around_the_threshold():
    returns = pd.Series([0.002, 0.0005, -0.0005, -0.002, np.nan, 0.001, -0.001])
    labels = direction_labels(returns, 0.001)
    assert labels.tolist()[:4] == [1, 0, 0, -1] and labels.tolist()[5:] == [0, 0]
    assert pd.isna(labels.iloc[4])
    assert direction_labels(returns, 0.0).tolist()[:4] == [1, 1, -1, -1]


def inputs(trend, returns, adx, fear):
    return pd.DataFrame({"trend": [trend], "returns": [returns], "adx": [adx], "fear": [fear]})


@pytest.mark.parametrize(
    "row, label, rule",
    [
        ((-1, -0.05, 35, 40), "bear", "1 the plan's Bear: downtrend, falling, VIX > 30"),
        ((1, 0.05, 35, 40), "high_vol", "2 VIX > 30 without a falling downtrend"),
        ((-1, 0.02, 10, 31), "high_vol", "2 even when choppy"),
        ((1, 0.03, 15, 15), "bull", "3 the plan's Bull: uptrend, rising, VIX < 20 (even with a low ADX)"),
        ((-1, -0.03, 12, 25), "sideways", "4 the plan's Sideways: ADX < 20"),
        ((1, 0.03, 30, 25), "bull", "5 uptrend and rising with VIX 20-30: the trend decides"),
        ((-1, -0.03, 30, 25), "bear", "6 downtrend and falling with VIX 20-30"),
        ((1, -0.03, 30, 15), "sideways", "7 trend and returns disagree"),
    ],
)
def test_hand_made_rows_hit_each_rule(row, label, rule):
    assert regime_labels(inputs(*row), RULES).iloc[0] == label, rule


def precedence(trend, returns, adx, fear):
    """The documented precedence, written as plain ifs."""
    up, down = trend > 0 and returns > 0, trend < 0 and returns < 0
    if fear > 30:
        return "bear" if down else "high_vol"
    if up and fear < 20:
        return "bull"
    if adx < 20:
        return "sideways"
    return "bull" if up else "bear" if down else "sideways"


def test_every_row_gets_exactly_one_label_in_the_stated_precedence():
    grid = list(itertools.product([-1, 0, 1], [-0.05, 0.0, 0.05], [10, 20, 35], [12, 20, 25, 30, 45]))
    frame = pd.DataFrame(grid, columns=["trend", "returns", "adx", "fear"])
    labels = regime_labels(frame, RULES)
    assert labels.notna().all() and set(labels) <= set(REGIMES) and set(labels) == set(REGIMES)
    assert labels.tolist() == [precedence(*row) for row in grid]


def test_rows_with_missing_inputs_get_no_label():
    assert pd.isna(regime_labels(inputs(1, np.nan, 30, 15), RULES).iloc[0])


def test_volatility_targets_look_one_and_h_bars_ahead(synthetic_daily):
    bars, _ = synthetic_daily
    aapl = bars["AAPL"]
    features = pd.DataFrame({"sma_50_to_sma_200": 0.01, "adx_14": 25.0, "vix_level": 18.0}, index=aapl.index)
    options = FeatureSettings()
    targets = make_targets(aapl, features, options, "1d", 252)
    returns = aapl["adj_close"].pct_change()
    row = 300
    assert targets["target_return"].iloc[row] == pytest.approx(returns.iloc[row + 1])
    assert targets["target_volatility"].iloc[row] == pytest.approx(returns.iloc[row - 18 : row + 2].std())
    forward = returns.iloc[row + 1 : row + 6]
    assert targets["target_forward_volatility"].iloc[row] == pytest.approx(np.sqrt((forward**2).mean()))
    assert targets["target_regime_ahead"].iloc[row] == targets["target_regime"].iloc[row + 5]
    assert (
        targets["target_return"].iloc[-1:].isna().all() and targets["target_forward_volatility"].iloc[-5:].isna().all()
    )


def test_fear_gauge_is_the_vix_or_else_annualized_benchmark_volatility():
    index = pd.RangeIndex(2)
    assert fear_gauge(pd.DataFrame({"vix_level": [22.0, 18.0], "volatility_20": [0.1, 0.1]}, index), 252).tolist() == [
        22.0,
        18.0,
    ]
    proxy = fear_gauge(pd.DataFrame({"benchmark_volatility_20": [0.01, 0.02], "volatility_20": [0.5, 0.5]}, index), 252)
    assert proxy.tolist() == pytest.approx([0.01 * np.sqrt(252) * 100, 0.02 * np.sqrt(252) * 100])


def test_the_random_walk_baseline_from_a_later_row_is_the_whole_one_there(synthetic_daily):
    """The stage simulates the baseline only from the first row a table can keep; the rolling
    inputs still read the bars before it, so those rows get the same labels."""
    from trading_ml.features.indicators import symbol_features
    from trading_ml.features.targets import random_walk_regime

    aapl = synthetic_daily[0]["AAPL"]
    features = symbol_features(aapl)
    whole = random_walk_regime(aapl, features, RULES, 252)
    later = random_walk_regime(aapl, features, RULES, 252, first_row=400)
    assert later.iloc[:400].isna().all() and later.index.equals(aapl.index)
    assert later.iloc[400:].equals(whole.iloc[400:]) and whole.iloc[400:].notna().sum() > 500
