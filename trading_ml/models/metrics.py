"""The long-short backtest of a direction score."""

from __future__ import annotations

import numpy as np
import pandas as pd


def long_short_backtest(score: pd.Series, next_return: pd.Series, share: float, costs_bps: float, bars_per_year: int) -> dict:
    """Each bar: long the top ``share`` of symbols by score, short the bottom, equal weights, costs
    of ``costs_bps`` per unit of turnover; against buy-and-hold of every symbol, equally weighted.
    Sharpe ratios are annualized with the calendar's ``bars_per_year``."""
    frame = pd.DataFrame({"score": score, "next": next_return}).dropna()
    weights = frame.groupby(level="timestamp", group_keys=False)["score"].apply(lambda day: _long_short_weights(day, share))
    frame["weight"] = weights
    gross = (frame["weight"] * frame["next"]).groupby(level="timestamp").sum()
    turnover = frame["weight"].unstack("symbol").fillna(0.0).diff().abs().sum(axis=1)
    turnover.iloc[0] = frame["weight"].abs().groupby(level="timestamp").sum().iloc[0]
    strategy = gross - turnover * costs_bps / 1e4
    hold = frame["next"].groupby(level="timestamp").mean()
    return {
        "long_short": _performance(strategy, bars_per_year),
        "buy_and_hold": _performance(hold, bars_per_year),
        "costs_bps": costs_bps,
        "mean_turnover": float(turnover.mean()),
        "equity_curve": {
            "timestamps": [t.isoformat() for t in strategy.index],
            "long_short": (1 + strategy).cumprod().round(6).tolist(),
            "buy_and_hold": (1 + hold).cumprod().round(6).tolist(),
        },
    }


def _long_short_weights(day: pd.Series, share: float) -> pd.Series:
    count = max(1, int(round(len(day) * share)))
    weights = pd.Series(0.0, index=day.index)
    if len(day) < 2 * count:
        return weights
    order = day.rank(method="first")
    weights[order > len(day) - count] = 0.5 / count
    weights[order <= count] = -0.5 / count
    return weights


def _performance(returns: pd.Series, bars_per_year: int) -> dict:
    equity = (1 + returns).cumprod()
    volatility = returns.std()
    return {
        "total_return": float(equity.iloc[-1] - 1) if len(equity) else 0.0,
        "annualized_sharpe": float(returns.mean() / volatility * np.sqrt(bars_per_year)) if volatility > 0 else 0.0,
        "max_drawdown": float((equity / equity.cummax() - 1).min()) if len(equity) else 0.0,
        "bars": int(len(returns)),
    }
