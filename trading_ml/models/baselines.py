"""The volatility baselines (naive, RiskMetrics EWMA, historical) and the pieces models share with them.

The volatility task's target is realized volatility over the next ``horizon`` bars (h,
``features.forward_volatility_bars``): sqrt(mean r²) of returns t+1..t+h, what a risk system sizes
positions with. A forecast of the per-bar variance over those bars gives it directly; EWMA and the
historical variance forecast a flat term structure, GARCH its own. The naive baseline is today's
value: the realized volatility of the last h bars.

The plan's target (the ``window``-bar rolling std one bar ahead, ``target_volatility``) is reported
beside it: a forecast of the next bar's variance, combined with the ``window``-1 returns already
known (:func:`rolling_std_with_next`), gives it. Every forecast at t uses returns up to t only.
numpy and pandas only: serving and the evaluation use these without loading torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGET = "target_forward_volatility"  # realized volatility over the next h bars: the task's target
PLAN_TARGET = "target_volatility"  # the plan's: the window-bar rolling std, one bar ahead
RETURN = "return_1"


def symbol_returns(table: pd.DataFrame) -> dict[str, pd.Series]:
    """Each symbol's returns (grouping the one column, not every column of the table)."""
    by_symbol = table[RETURN].groupby(level="symbol", sort=False)
    return {symbol: returns.droplevel("symbol") for symbol, returns in by_symbol}


def rolling_std_with_next(returns: pd.Series, next_variance: pd.Series, window: int) -> pd.Series:
    """Expected sample std of the ``window`` returns ending at t+1, given returns up to t and E[r²(t+1)]."""
    known_squares = (returns**2).rolling(window - 1).sum()
    known_sum = returns.rolling(window - 1).sum()
    variance = (known_squares + next_variance - (known_sum**2 + next_variance) / window) / (window - 1)
    return np.sqrt(variance.clip(lower=0))


def per_symbol(table: pd.DataFrame, forecast) -> pd.Series:
    """``forecast(returns)`` (a series of one symbol's returns -> its forecasts) over every symbol."""
    parts = [forecast(returns).to_frame("volatility").assign(symbol=s) for s, returns in symbol_returns(table).items()]
    return align(table, parts)


def naive_forecast(table: pd.DataFrame, horizon: int) -> pd.Series:
    """Today's value of the target: the realized volatility of the last ``horizon`` bars."""
    return per_symbol(table, lambda returns: np.sqrt((returns**2).rolling(horizon).mean()))


def ewma_variance(returns: pd.Series, decay: float) -> pd.Series:
    """RiskMetrics: σ²(t+1) = λ σ²(t) + (1 - λ) r²(t)."""
    return (returns**2).ewm(alpha=1 - decay, adjust=False).mean()


def ewma_forecast(table: pd.DataFrame, decay: float, warmup: int = 20) -> pd.Series:
    """The RiskMetrics EWMA's volatility, flat over any horizon; none for a symbol's first ``warmup`` bars."""
    return per_symbol(table, lambda returns: np.sqrt(ewma_variance(returns, decay)).where(warmup_done(returns, warmup)))


def historical_forecast(table: pd.DataFrame, warmup: int = 20) -> pd.Series:
    """The historical variance: the mean of every squared return up to t (expanding), flat over any
    horizon. Where volatility does not cluster it is the forecast to beat."""
    return per_symbol(table, lambda returns: np.sqrt((returns**2).expanding(min_periods=warmup).mean()))


def warmup_done(returns: pd.Series, warmup: int) -> np.ndarray:
    return np.arange(len(returns)) >= warmup - 1


def plan_forecast(table: pd.DataFrame, next_volatility: pd.Series, window: int) -> pd.Series:
    """A volatility forecast (the next bars' realized volatility) turned into one of the plan's target:
    its square taken as the next bar's variance, with the ``window``-1 returns already known."""
    parts = []
    for symbol, returns in symbol_returns(table).items():
        variance = next_volatility.xs(symbol, level="symbol").reindex(returns.index) ** 2
        parts.append(rolling_std_with_next(returns, variance, window).to_frame("volatility").assign(symbol=symbol))
    return align(table, parts)


def plan_naive_forecast(table: pd.DataFrame, window: int) -> pd.Series:
    """The plan's naive forecast: today's ``window``-bar std."""
    return per_symbol(table, lambda returns: returns.rolling(window).std())


def align(table: pd.DataFrame, parts: list[pd.DataFrame]) -> pd.Series:
    frame = pd.concat(parts).set_index("symbol", append=True)
    return frame["volatility"].reindex(table.index)
