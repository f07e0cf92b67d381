"""Metrics on the test segment, always beside the baselines computed on the same rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, log_loss

DIRECTION_CLASSES = [-1, 0, 1]
QLIKE_FLOOR = 1e-12


def classification_metrics(truth: np.ndarray, predicted: np.ndarray, labels: list) -> dict:
    """Accuracy, balanced accuracy, macro-F1, per-class recall and the confusion matrix (rows = truth)."""
    matrix = confusion_matrix(truth, predicted, labels=labels)
    recall = {str(label): _ratio(matrix[i, i], matrix[i].sum()) for i, label in enumerate(labels)}
    return {
        "accuracy": float(accuracy_score(truth, predicted)),
        "balanced_accuracy": float(balanced_accuracy_score(truth, predicted)),
        "macro_f1": float(f1_score(truth, predicted, labels=labels, average="macro", zero_division=0)),
        "recall": recall,
        "confusion_matrix": {"labels": [str(label) for label in labels], "counts": matrix.tolist()},
        "rows": int(len(truth)),
    }


def direction_metrics(truth: np.ndarray, probabilities: np.ndarray) -> dict:
    """Classification metrics of argmax(probabilities) over classes -1, 0, 1, plus log loss."""
    probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)  # float32 models sum to 1 ± 1e-7
    predicted = np.array(DIRECTION_CLASSES)[probabilities.argmax(axis=1)]
    metrics = classification_metrics(truth, predicted, DIRECTION_CLASSES)
    metrics["log_loss"] = float(log_loss(truth, np.clip(probabilities, 1e-7, 1), labels=DIRECTION_CLASSES))
    return metrics


def rank_ic(score: pd.Series, next_return: pd.Series) -> dict:
    """Mean daily cross-sectional Spearman correlation of the score with the next return."""
    frame = pd.DataFrame({"score": score, "next": next_return}).dropna()
    daily = frame.groupby(level="timestamp").filter(lambda day: len(day) >= 3)
    by_day = daily.groupby(level="timestamp").apply(lambda day: day["score"].corr(day["next"], method="spearman"))
    by_day = by_day.dropna()
    mean, std = float(by_day.mean()) if len(by_day) else float("nan"), float(by_day.std()) if len(by_day) > 1 else float("nan")
    return {"mean": mean, "t_stat": mean / std * np.sqrt(len(by_day)) if std and std > 0 else float("nan"), "days": int(len(by_day))}


def long_short_backtest(score: pd.Series, next_return: pd.Series, share: float, costs_bps: float) -> dict:
    """Each bar: long the top ``share`` of symbols by score, short the bottom, equal weights, costs
    of ``costs_bps`` per unit of turnover; against buy-and-hold of every symbol, equally weighted."""
    frame = pd.DataFrame({"score": score, "next": next_return}).dropna()
    weights = frame.groupby(level="timestamp", group_keys=False)["score"].apply(lambda day: _long_short_weights(day, share))
    frame["weight"] = weights
    gross = (frame["weight"] * frame["next"]).groupby(level="timestamp").sum()
    turnover = frame["weight"].unstack("symbol").fillna(0.0).diff().abs().sum(axis=1)
    turnover.iloc[0] = frame["weight"].abs().groupby(level="timestamp").sum().iloc[0]
    strategy = gross - turnover * costs_bps / 1e4
    hold = frame["next"].groupby(level="timestamp").mean()
    return {
        "long_short": _performance(strategy),
        "buy_and_hold": _performance(hold),
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


def _performance(returns: pd.Series, bars_per_year: int = 252) -> dict:
    equity = (1 + returns).cumprod()
    volatility = returns.std()
    return {
        "total_return": float(equity.iloc[-1] - 1) if len(equity) else 0.0,
        "annualized_sharpe": float(returns.mean() / volatility * np.sqrt(bars_per_year)) if volatility > 0 else 0.0,
        "max_drawdown": float((equity / equity.cummax() - 1).min()) if len(equity) else 0.0,
        "bars": int(len(returns)),
    }


def volatility_metrics(truth: np.ndarray, forecast: np.ndarray) -> dict:
    """RMSE, MAE and QLIKE (on variances: σ²/h - log(σ²/h) - 1, 0 when perfect) of a volatility forecast."""
    keep = np.isfinite(truth) & np.isfinite(forecast)
    truth, forecast = truth[keep], np.maximum(forecast[keep], 1e-8)
    ratio = np.maximum(truth**2, QLIKE_FLOOR) / forecast**2
    return {
        "rmse": float(np.sqrt(np.mean((truth - forecast) ** 2))),
        "mae": float(np.mean(np.abs(truth - forecast))),
        "qlike": float(np.mean(ratio - np.log(ratio) - 1)),
        "rows": int(keep.sum()),
    }


def _ratio(numerator, denominator) -> float:
    return float(numerator / denominator) if denominator else float("nan")
