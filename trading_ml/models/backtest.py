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


def long_short_backtest(
    score: pd.Series,
    next_return: pd.Series,
    share: float,
    costs_bps: float,
    bars_per_year: int,
    resampling: Resampling | None = None,
) -> dict:
    """Each bar: long the top ``share`` of symbols by score, short the bottom, equal weights, costs
    of ``costs_bps`` per unit of turnover; against buy-and-hold of every symbol, equally weighted.
    Sharpe ratios are annualized with the calendar's ``bars_per_year``. With ``resampling``, each
    of Sharpe, maximum drawdown, total return and turnover gets an interval from paths of whole
    blocks of dates (a path keeps the order a drawdown needs inside each block)."""
    frame = pd.DataFrame({"score": score, "next": next_return}).dropna()
    frame["weight"] = long_short_weights(frame["score"], share)
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


def _intervals(
    strategy: pd.Series, hold: pd.Series, turnover: pd.Series, bars_per_year: int, resampling: Resampling
) -> dict:
    """{long_short: {metric: interval}, buy_and_hold: {...}, turnover: interval} over block-resampled
    paths: arch's circular-block indices, every path's figures computed at once."""
    paths = np.column_stack(
        [strategy.to_numpy(), hold.reindex(strategy.index).fillna(0.0).to_numpy(), turnover.to_numpy()]
    )
    block = max(1, min(resampling.block_days, len(paths)))
    bootstrap = CircularBlockBootstrap(block, paths, seed=np.random.default_rng(resampling.seed))
    resampled = paths[np.stack([bootstrap.update_indices() for _ in range(resampling.samples)])]  # samples x bars x 3
    names = ("annualized_sharpe", "max_drawdown", "total_return")
    drawn = {}
    for column, side in enumerate(("long_short", "buy_and_hold")):
        point, samples = (
            _figures(paths[None, :, column], bars_per_year),
            _figures(resampled[:, :, column], bars_per_year),
        )
        drawn[side] = {name: interval(point[k][0], samples[k], resampling.confidence) for k, name in enumerate(names)}
    turnover_point, turnover_samples = paths[:, 2].mean(), resampled[:, :, 2].mean(axis=1)
    return {
        **drawn,
        "turnover": interval(turnover_point, turnover_samples, resampling.confidence),
        "confidence": resampling.confidence,
    }


def _figures(returns: np.ndarray, bars_per_year: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(annualized Sharpe, maximum drawdown, total return) of each row of returns (one path per row)."""
    equity = np.cumprod(1 + returns, axis=1)
    spread = returns.std(axis=1, ddof=1) if returns.shape[1] > 1 else np.zeros(len(returns))
    sharpe = np.divide(returns.mean(axis=1), spread, out=np.zeros(len(returns)), where=spread > 0) * np.sqrt(
        bars_per_year
    )
    drawdown = (equity / np.maximum.accumulate(equity, axis=1) - 1).min(axis=1)
    return sharpe, drawdown, equity[:, -1] - 1


def long_short_weights(score: pd.Series, share: float) -> pd.Series:
    """Each bar's weights: +0.5 split over its top ``share`` of symbols by score (at least one), -0.5
    over its bottom as many, none on a bar with fewer than twice that many symbols; ties go by row
    order. Every bar at once (a call per bar took 3 s per model at 500 symbols)."""
    by_bar = score.groupby(level="timestamp")
    size = by_bar.transform("size").to_numpy()
    count = np.maximum(1, np.round(size * share)).astype(int)
    rank = by_bar.rank(method="first").to_numpy()
    weights = np.where(rank > size - count, 0.5 / count, np.where(rank <= count, -0.5 / count, 0.0))
    weights[size < 2 * count] = 0.0
    return pd.Series(weights, index=score.index)


def _performance(returns: pd.Series, bars_per_year: int) -> dict:
    equity = (1 + returns).cumprod()
    volatility = returns.std()
    return {
        "total_return": float(equity.iloc[-1] - 1) if len(equity) else 0.0,
        "annualized_sharpe": float(returns.mean() / volatility * np.sqrt(bars_per_year)) if volatility > 0 else 0.0,
        "max_drawdown": float((equity / equity.cummax() - 1).min()) if len(equity) else 0.0,
        "bars": int(len(returns)),
    }
