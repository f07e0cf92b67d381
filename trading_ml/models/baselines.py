"""The volatility baselines (naive, RiskMetrics EWMA, historical) and the pieces GARCH shares with them.

The target is the ``window``-bar standard deviation of returns one bar ahead. It shares all but one
return with today's value, so a forecast of the one missing return's variance σ²(t+1) is combined
with the ``window``-1 returns already known (:func:`rolling_std_with_next`); the naive baseline is
today's value. Every forecast at t uses returns up to t only. numpy and pandas only: serving and the
evaluation use these without loading torch.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

TARGET = "target_volatility"
RETURN = "return_1"


def symbol_returns(table: pd.DataFrame) -> dict[str, pd.Series]:
    return {symbol: rows[RETURN].droplevel("symbol") for symbol, rows in table.groupby(level="symbol", sort=False)}


def rolling_std_with_next(returns: pd.Series, next_variance: pd.Series, window: int) -> pd.Series:
    """Expected sample std of the ``window`` returns ending at t+1, given returns up to t and E[r²(t+1)]."""
    known_squares = (returns**2).rolling(window - 1).sum()
    known_sum = returns.rolling(window - 1).sum()
    variance = (known_squares + next_variance - (known_sum**2 + next_variance) / window) / (window - 1)
    return np.sqrt(variance.clip(lower=0))


def naive_forecast(table: pd.DataFrame, window: int) -> pd.Series:
    """Yesterday's value of the target: today's ``window``-bar std."""
    parts = [r.rolling(window).std().to_frame("volatility").assign(symbol=s) for s, r in symbol_returns(table).items()]
    return align(table, parts)


def ewma_forecast(table: pd.DataFrame, window: int, decay: float) -> pd.Series:
    """RiskMetrics: σ²(t+1) = λ σ²(t) + (1 - λ) r²(t), put into the target's window."""
    parts = []
    for symbol, returns in symbol_returns(table).items():
        next_variance = (returns**2).ewm(alpha=1 - decay, adjust=False).mean()
        parts.append(rolling_std_with_next(returns, next_variance, window).to_frame("volatility").assign(symbol=symbol))
    return align(table, parts)


def historical_forecast(table: pd.DataFrame, window: int) -> pd.Series:
    """The historical variance: σ²(t+1) = the mean of every squared return up to t (expanding), put
    into the target's window. Where volatility does not cluster it is the forecast to beat."""
    parts = []
    for symbol, returns in symbol_returns(table).items():
        next_variance = (returns**2).expanding(min_periods=window).mean()
        parts.append(rolling_std_with_next(returns, next_variance, window).to_frame("volatility").assign(symbol=symbol))
    return align(table, parts)


def align(table: pd.DataFrame, parts: list[pd.DataFrame]) -> pd.Series:
    frame = pd.concat(parts).set_index("symbol", append=True)
    return frame["volatility"].reindex(table.index)
