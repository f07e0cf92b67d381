"""Each model's test-segment metrics beside its baselines and the plan's target, met or not met.

Baselines use the same test rows: majority class (from the training segment) and the previous
bar's direction for direction; yesterday's value and EWMA for volatility; persistence for regime.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_ml.config import Settings
from trading_ml.features.targets import direction_labels
from trading_ml.models import metrics
from trading_ml.models.direction import TARGET as DIRECTION_TARGET
from trading_ml.models.regime import FORECAST, NOWCAST, persistence
from trading_ml.models.splits import Split
from trading_ml.models.volatility import TARGET as VOLATILITY_TARGET
from trading_ml.models.volatility import ewma_forecast, naive_forecast

PLAN_TARGETS = {
    "direction": "test accuracy > 55%",
    "volatility": "test RMSE below the naive forecast (yesterday's value)",
    "regime": "test accuracy > 70%",
}


def evaluate_direction(table: pd.DataFrame, split: Split, probabilities: pd.DataFrame, settings: Settings) -> dict:
    rows = split.mask("test") & table[DIRECTION_TARGET].notna().to_numpy() & probabilities.notna().all(axis=1).to_numpy()
    truth = table[DIRECTION_TARGET].to_numpy()[rows].astype(int)
    model = metrics.direction_metrics(truth, probabilities.to_numpy()[rows])
    train_labels = table[DIRECTION_TARGET][split.mask("train")].dropna().astype(int)
    majority = int(train_labels.value_counts().idxmax())
    previous = direction_labels(table["return_1"], settings.features.direction_threshold).to_numpy()[rows].astype(int)
    baselines = {
        "majority_class": {"class": majority, **metrics.classification_metrics(truth, np.full(len(truth), majority), metrics.DIRECTION_CLASSES)},
        "previous_direction": metrics.classification_metrics(truth, previous, metrics.DIRECTION_CLASSES),
    }
    test = table[rows]
    score = probabilities["p_up"][rows] - probabilities["p_down"][rows]
    best_baseline = max(b["accuracy"] for b in baselines.values())
    return {
        "metrics": model,
        "baselines": baselines,
        "rank_ic": metrics.rank_ic(score, test["target_return"]),
        "backtest": metrics.long_short_backtest(score, test["target_return"], settings.models.long_short_share, settings.models.costs_bps),
        "beats_baselines": model["accuracy"] > best_baseline,
        "plan_target": {"rule": PLAN_TARGETS["direction"], "value": model["accuracy"], "met": model["accuracy"] > 0.55},
        "primary": {"metric": "accuracy", "value": model["accuracy"], "higher_is_better": True},
    }


def evaluate_volatility(table: pd.DataFrame, split: Split, forecast: pd.DataFrame, settings: Settings) -> dict:
    window = settings.features.volatility_window
    candidates = {
        "model": forecast["volatility"],
        "naive": naive_forecast(table, window),
        "ewma": ewma_forecast(table, window, settings.models.ewma_lambda),
    }
    rows = split.mask("test") & np.logical_and.reduce([np.isfinite(v.to_numpy(dtype=float)) for v in candidates.values()])
    rows &= np.isfinite(table[VOLATILITY_TARGET].to_numpy(dtype=float))
    truth = table[VOLATILITY_TARGET].to_numpy(dtype=float)[rows]
    scored = {name: metrics.volatility_metrics(truth, values.to_numpy(dtype=float)[rows]) for name, values in candidates.items()}
    model, baselines = scored.pop("model"), scored
    return {
        "metrics": model,
        "baselines": baselines,
        "beats_baselines": all(model["rmse"] < b["rmse"] for b in baselines.values()),
        "plan_target": {"rule": PLAN_TARGETS["volatility"], "value": model["rmse"], "naive": baselines["naive"]["rmse"],
                        "met": model["rmse"] < baselines["naive"]["rmse"]},
        "primary": {"metric": "rmse", "value": model["rmse"], "higher_is_better": False},
    }


def evaluate_regime(table: pd.DataFrame, split: Split, predictions: pd.DataFrame) -> dict:
    baseline = persistence(table)
    results = {}
    for column, target in (("regime_now", NOWCAST), ("regime_ahead", FORECAST)):
        rows = split.mask("test") & table[target].notna().to_numpy() & baseline[column].notna().to_numpy()
        truth = table[target].to_numpy()[rows].astype(str)
        labels = sorted(set(truth) | set(predictions[column].to_numpy()[rows]))
        results[column] = {
            "metrics": metrics.classification_metrics(truth, predictions[column].to_numpy()[rows].astype(str), labels),
            "persistence": metrics.classification_metrics(truth, baseline[column].to_numpy()[rows].astype(str), labels),
        }
    now = results["regime_now"]
    return {
        "nowcast": results["regime_now"],
        "forecast": results["regime_ahead"],
        "beats_baselines": now["metrics"]["accuracy"] > now["persistence"]["accuracy"],
        "plan_target": {"rule": PLAN_TARGETS["regime"] + " (nowcast)", "value": now["metrics"]["accuracy"], "met": now["metrics"]["accuracy"] > 0.70},
        "primary": {"metric": "nowcast accuracy", "value": now["metrics"]["accuracy"], "higher_is_better": True},
    }


def evaluate(name: str, table: pd.DataFrame, split: Split, predictions: pd.DataFrame, settings: Settings) -> dict:
    """The evaluation of any registered model name from its predictions over the table."""
    if name.startswith("direction"):
        return evaluate_direction(table, split, predictions, settings)
    if name.startswith("volatility"):
        return evaluate_volatility(table, split, predictions, settings)
    return evaluate_regime(table, split, predictions)


def summary(evaluation: dict) -> dict:
    """The few numbers a table row or XCom needs."""
    return {
        "primary": evaluation["primary"],
        "beats_baselines": evaluation["beats_baselines"],
        "plan_target": evaluation["plan_target"],
    }
