"""The long-short backtest of a direction score, with block-bootstrap intervals on what traders look at
(Sharpe ratio, maximum drawdown, turnover)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from arch.bootstrap import CircularBlockBootstrap

from trading_ml.models.statistics import interval


@dataclass(frozen=True)
class Resampling:
    """How intervals are drawn: blocks of ``block_days`` consecutive dates, ``samples`` times."""

    block_days: int
    samples: int
    seed: int
    confidence: float


def long_short_backtest(score: pd.Series, next_return: pd.Series, share: float, costs_bps: float, bars_per_year: int,
                        resampling: Resampling | None = None) -> dict:
    """Each bar: long the top ``share`` of symbols by score, short the bottom, equal weights, costs
    of ``costs_bps`` per unit of turnover; against buy-and-hold of every symbol, equally weighted.
    Sharpe ratios are annualized with the calendar's ``bars_per_year``. With ``resampling``, each
    of Sharpe, maximum drawdown, total return and turnover gets an interval from paths of whole
    blocks of dates (a path keeps the order a drawdown needs inside each block)."""
    frame = pd.DataFrame({"score": score, "next": next_return}).dropna()
    weights = frame.groupby(level="timestamp", group_keys=False)["score"].apply(lambda day: _long_short_weights(day, share))
    frame["weight"] = weights
    gross = (frame["weight"] * frame["next"]).groupby(level="timestamp").sum()
    turnover = frame["weight"].unstack("symbol").fillna(0.0).diff().abs().sum(axis=1)
    turnover.iloc[0] = frame["weight"].abs().groupby(level="timestamp").sum().iloc[0]
    strategy = gross - turnover * costs_bps / 1e4
    hold = frame["next"].groupby(level="timestamp").mean()
    result = {
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
    if resampling is not None and len(strategy) > 1:
        result["intervals"] = _intervals(strategy, hold, turnover, bars_per_year, resampling)
    return result


def _intervals(strategy: pd.Series, hold: pd.Series, turnover: pd.Series, bars_per_year: int, resampling: Resampling) -> dict:
    """{long_short: {metric: interval}, buy_and_hold: {...}, turnover: interval} over block-resampled paths."""
    paths = np.column_stack([strategy.to_numpy(), hold.reindex(strategy.index).fillna(0.0).to_numpy(), turnover.to_numpy()])
    block = max(1, min(resampling.block_days, len(paths)))
    bootstrap = CircularBlockBootstrap(block, paths, seed=np.random.default_rng(resampling.seed))
    samples = bootstrap.apply(lambda path: np.array([*_figures(path[:, 0], bars_per_year), *_figures(path[:, 1], bars_per_year),
                                                      path[:, 2].mean()]), resampling.samples)
    point = np.array([*_figures(paths[:, 0], bars_per_year), *_figures(paths[:, 1], bars_per_year), paths[:, 2].mean()])
    names = ("annualized_sharpe", "max_drawdown", "total_return")
    drawn = {side: {name: interval(point[3 * k + i], samples[:, 3 * k + i], resampling.confidence) for i, name in enumerate(names)}
             for k, side in enumerate(("long_short", "buy_and_hold"))}
    return {**drawn, "turnover": interval(point[6], samples[:, 6], resampling.confidence), "confidence": resampling.confidence}


def _figures(returns: np.ndarray, bars_per_year: int) -> tuple[float, float, float]:
    """(annualized Sharpe, maximum drawdown, total return) of one path of returns."""
    equity = np.cumprod(1 + returns)
    spread = returns.std(ddof=1) if len(returns) > 1 else 0.0
    sharpe = returns.mean() / spread * np.sqrt(bars_per_year) if spread > 0 else 0.0
    return sharpe, float((equity / np.maximum.accumulate(equity) - 1).min()), float(equity[-1] - 1)

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
