"""What the models learn to predict. Targets are the only columns that look at later bars.

Every target column starts with ``target_`` and is never among the features:

- ``target_return``: the next bar's return of the adjusted close.
- ``target_direction``: that return as 1 (Up, above +threshold), -1 (Down, below -threshold) or
  0 (Neutral); threshold ``features.direction_threshold`` (0.1%).
- ``target_volatility``: the plan's target, the rolling standard deviation of returns over
  ``features.volatility_window`` (20) bars, one bar ahead (19 of its 20 returns are known at the
  bar: nearly a nowcast, so the evaluation reports it beside the task's target).
- ``target_forward_volatility``: the volatility task's target, realized volatility over the next
  ``forward_volatility_bars`` (h, 5) bars, sqrt(mean(r²)): what a risk system sizes positions with.
- ``target_regime``: the regime label at this bar (a nowcast; it uses data up to the bar only);
  ``target_regime_ahead``: the label ``regime.horizon`` (5) bars ahead.

One baseline column rides along (past data only, never a feature): ``baseline_regime_random_walk``,
the most likely label ``horizon`` bars ahead if prices from here were a driftless random walk at the
symbol's current volatility (ADX and the fear gauge staying where they are). The rules' own
mechanics make the label partly predictable even on pure noise (a 50/200 crossing about to happen);
a regime forecast has skill only where it beats this.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_ml.config import FeatureSettings, RegimeRules

REGIMES = ("bull", "bear", "sideways", "high_vol")
DIRECTIONS = {-1: "down", 0: "neutral", 1: "up"}
RANDOM_WALK_PATHS = 200  # simulated paths per row for the random-walk baseline
BASELINE_COLUMNS = ("baseline_regime_random_walk",)
TARGET_COLUMNS = (
    "target_return",
    "target_direction",
    "target_volatility",
    "target_forward_volatility",
    "target_regime",
    "target_regime_ahead",
)


def make_targets(
    bars: pd.DataFrame,
    features: pd.DataFrame,
    options: FeatureSettings,
    timeframe: str,
    bars_per_year: int,
    first_row: int = 0,
) -> pd.DataFrame:
    """Every target of one symbol, aligned with its bars; NaN where the future is not in the data.
    ``bars_per_year`` (from the symbol's calendar) annualizes the fear gauge when there is no VIX.
    The random-walk baseline is simulated from ``first_row`` on (the rows a table keeps)."""
    returns = bars["adj_close"].pct_change()
    next_return = returns.shift(-1)
    horizon = options.forward_volatility_bars
    regime = regime_labels(regime_inputs(bars, features, options.regime, bars_per_year), options.regime)
    return pd.DataFrame(
        {
            "target_return": next_return,
            "target_direction": direction_labels(next_return, options.direction_threshold),
            "target_volatility": returns.rolling(options.volatility_window).std().shift(-1),
            "target_forward_volatility": np.sqrt((returns**2).rolling(horizon).mean().shift(-horizon)),
            "target_regime": regime,
            "target_regime_ahead": regime.shift(-options.regime.horizon),
            "baseline_regime_random_walk": random_walk_regime(
                bars, features, options.regime, bars_per_year, first_row=first_row
            ),
        },
        index=bars.index,
    )


def direction_labels(next_return: pd.Series, threshold: float) -> pd.Series:
    """1 above +threshold, -1 below -threshold, 0 between; missing where the return is."""
    labels = np.where(next_return > threshold, 1, np.where(next_return < -threshold, -1, 0))
    return pd.Series(labels, index=next_return.index, dtype="Int8").where(next_return.notna())


def regime_inputs(bars: pd.DataFrame, features: pd.DataFrame, rules: RegimeRules, bars_per_year: int) -> pd.DataFrame:
    """The rule inputs at each bar: trend (SMA 50 vs 200), return, ADX and the fear gauge."""
    return pd.DataFrame(
        {
            "trend": np.sign(features["sma_50_to_sma_200"]),
            "returns": bars["adj_close"].pct_change(rules.return_bars),
            "adx": features["adx_14"],
            "fear": fear_gauge(features, bars_per_year),
        },
        index=bars.index,
    )


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
    trend, returns, adx, fear = (inputs[c].to_numpy(dtype=float) for c in ("trend", "returns", "adx", "fear"))
    codes = regime_codes(trend, returns, adx, fear, rules)
    labels = pd.Series(np.array(REGIMES, dtype=object)[codes], index=inputs.index, dtype="object")
    return labels.where(inputs.notna().all(axis=1))


def regime_codes(trend, returns, adx, fear, rules: RegimeRules) -> np.ndarray:
    """The rules on arrays of inputs: the index in REGIMES of each label (see regime_labels)."""
    up, down = (trend > 0) & (returns > 0), (trend < 0) & (returns < 0)
    fearful, calm, choppy = fear > rules.fear_vix, fear < rules.calm_vix, adx < rules.trend_adx
    bull, bear, sideways, high_vol = (REGIMES.index(n) for n in ("bull", "bear", "sideways", "high_vol"))
    return np.select(
        [down & fearful, fearful, up & calm, choppy, up, down],
        [bear, high_vol, bull, sideways, bull, bear],
        default=sideways,
    )


def random_walk_regime(
    bars: pd.DataFrame,
    features: pd.DataFrame,
    rules: RegimeRules,
    bars_per_year: int,
    paths: int = RANDOM_WALK_PATHS,
    first_row: int = 0,
) -> pd.Series:
    """The modal label ``rules.horizon`` bars ahead over ``paths`` driftless random-walk continuations
    of the close at its 20-bar volatility; the 50/200 averages and the return over ``return_bars``
    are rolled forward along each path, ADX and the fear gauge stay (data up to each bar only).
    Rows before ``first_row`` are not simulated (NaN)."""
    horizon, lookback = rules.horizon, rules.return_bars
    every_close = bars["adj_close"].to_numpy(dtype=float)
    rows = slice(first_row, None)  # the rolling inputs read the whole history, the paths start at these rows
    close = every_close[rows]
    volatility = pd.Series(np.diff(np.log(every_close), prepend=np.nan)).rolling(20).std().to_numpy()[rows]
    steps = np.random.default_rng(0).standard_normal((paths, horizon))
    future = volatility[:, None, None] * np.cumsum(steps, axis=1)[None]  # rows x paths x horizon; then in place:
    np.exp(future, out=future)
    future *= close[:, None, None]
    added = future[:, :, 0].copy()
    for step in range(1, horizon):  # the path's future closes summed (sum(axis=2) over a short last axis is slow)
        added += future[:, :, step]
    kept = {n: pd.Series(every_close).rolling(n - horizon).sum().to_numpy()[rows, None] for n in (50, 200)}
    trend = np.sign((kept[50] + added) / 50 - (kept[200] + added) / 200)
    if horizon < lookback:  # the return's first price is already known
        earlier = pd.Series(every_close).shift(lookback - horizon).to_numpy()[rows]
        base = np.broadcast_to(earlier[:, None], future.shape[:2])
    else:
        base = np.concatenate([np.broadcast_to(close[:, None, None], (len(close), paths, 1)), future], axis=2)[
            :, :, horizon - lookback
        ]
    returns = future[:, :, -1] / base - 1
    inputs = regime_inputs(bars, features, rules, bars_per_year).iloc[rows]
    adx, fear = inputs["adx"].to_numpy(dtype=float)[:, None], inputs["fear"].to_numpy(dtype=float)[:, None]
    codes = regime_codes(trend, returns, adx, fear, rules)
    classes = len(REGIMES)
    counts = np.bincount((codes + classes * np.arange(len(codes))[:, None]).ravel(), minlength=classes * len(codes))
    counts = counts.reshape(len(codes), classes)  # each row's paths per label
    labels = pd.Series(np.array(REGIMES, dtype=object)[counts.argmax(axis=1)], index=inputs.index, dtype="object")
    known = (
        np.isfinite(volatility)
        & np.isfinite(kept[200][:, 0])
        & np.isfinite(base[:, 0])
        & inputs.notna().all(axis=1).to_numpy()
    )
    return labels.where(known).reindex(bars.index)
