"""What the models learn to predict. Targets are the only columns that look at later bars.

Every target column starts with ``target_`` and is never among the features:

- ``target_return``: the next bar's return of the adjusted close.
- ``target_direction``: that return as 1 (Up, above +threshold), -1 (Down, below -threshold) or
  0 (Neutral); threshold ``features.direction_threshold`` (0.1%).
- ``target_volatility``: the plan's target, the rolling standard deviation of returns over
  ``features.volatility_window`` (20) bars, one bar ahead.
- ``target_forward_volatility``: realized volatility over the next ``forward_volatility_bars`` (5)
  bars, sqrt(mean(r²)).
- ``target_regime``: the regime label at this bar (a nowcast; it uses data up to the bar only);
  ``target_regime_ahead``: the label ``regime.horizon`` (5) bars ahead.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_ml.config import FeatureSettings, RegimeRules

REGIMES = ("bull", "bear", "sideways", "high_vol")
DIRECTIONS = {-1: "down", 0: "neutral", 1: "up"}
TARGET_COLUMNS = (
    "target_return",
    "target_direction",
    "target_volatility",
    "target_forward_volatility",
    "target_regime",
    "target_regime_ahead",
)


def make_targets(bars: pd.DataFrame, features: pd.DataFrame, options: FeatureSettings, timeframe: str, bars_per_year: int) -> pd.DataFrame:
    """Every target of one symbol, aligned with its bars; NaN where the future is not in the data.
    ``bars_per_year`` (from the symbol's calendar) annualizes the fear gauge when there is no VIX."""
    returns = bars["adj_close"].pct_change()
    next_return = returns.shift(-1)
    horizon = options.forward_volatility_bars
    regime = regime_labels(regime_inputs(bars, features, options.regime, bars_per_year), options.regime)
    return pd.DataFrame({
        "target_return": next_return,
        "target_direction": direction_labels(next_return, options.direction_threshold),
        "target_volatility": returns.rolling(options.volatility_window).std().shift(-1),
        "target_forward_volatility": np.sqrt((returns**2).rolling(horizon).mean().shift(-horizon)),
        "target_regime": regime,
        "target_regime_ahead": regime.shift(-options.regime.horizon),
    }, index=bars.index)


def direction_labels(next_return: pd.Series, threshold: float) -> pd.Series:
    """1 above +threshold, -1 below -threshold, 0 between; missing where the return is."""
    labels = np.where(next_return > threshold, 1, np.where(next_return < -threshold, -1, 0))
    return pd.Series(labels, index=next_return.index, dtype="Int8").where(next_return.notna())


def regime_inputs(bars: pd.DataFrame, features: pd.DataFrame, rules: RegimeRules, bars_per_year: int) -> pd.DataFrame:
    """The rule inputs at each bar: trend (SMA 50 vs 200), return, ADX and the fear gauge."""
    return pd.DataFrame({
        "trend": np.sign(features["sma_50_to_sma_200"]),
        "returns": bars["adj_close"].pct_change(rules.return_bars),
        "adx": features["adx_14"],
        "fear": fear_gauge(features, bars_per_year),
    }, index=bars.index)


def fear_gauge(features: pd.DataFrame, bars_per_year: int) -> pd.Series:
    """The VIX level when the run has it; otherwise the benchmark's (or, without one, the symbol's
    own) 20-bar volatility, annualized and in percent, which is what the VIX quotes."""
    if "vix_level" in features:
        return features["vix_level"]
    column = "benchmark_volatility_20" if "benchmark_volatility_20" in features else "volatility_20"
    return features[column] * np.sqrt(bars_per_year) * 100


def regime_labels(inputs: pd.DataFrame, rules: RegimeRules) -> pd.Series:
    """The plan's rules made a total function: the first rule that holds gives the label.

    1. bear      SMA50 < SMA200, falling, fear gauge > fear_vix (30)   the plan's Bear
    2. high_vol  fear gauge > fear_vix                                 the plan's High Vol
    3. bull      SMA50 > SMA200, rising, fear gauge < calm_vix (20)    the plan's Bull
    4. sideways  ADX < trend_adx (20): no trend, choppy                the plan's Sideways
    5. bull      SMA50 > SMA200 and rising (fear between 20 and 30)    the trend decides
    6. bear      SMA50 < SMA200 and falling
    7. sideways  anything else: trend and returns disagree

    'Rising' and 'falling' are the sign of the return over ``return_bars``. Rows whose inputs are
    missing (warm-up) get no label.
    """
    up = (inputs["trend"] > 0) & (inputs["returns"] > 0)
    down = (inputs["trend"] < 0) & (inputs["returns"] < 0)
    fearful = inputs["fear"] > rules.fear_vix
    calm = inputs["fear"] < rules.calm_vix
    choppy = inputs["adx"] < rules.trend_adx
    conditions = [down & fearful, fearful, up & calm, choppy, up, down]
    choices = ["bear", "high_vol", "bull", "sideways", "bull", "bear"]
    labels = pd.Series(np.select(conditions, choices, default="sideways"), index=inputs.index, dtype="object")
    return labels.where(inputs.notna().all(axis=1))
