"""Each model judged on its pooled walk-forward out-of-sample rows, beside honest baselines, with
block-bootstrap intervals (:mod:`trading_ml.models.statistics`) on every metric.

Baselines use only what was known before each test segment, on the same rows:
- direction: the class prior of the fold's training rows (probabilities), its majority class, and
  the previous bar's direction;
- volatility (realized volatility over the next h bars): today's value (naive), the RiskMetrics
  EWMA and the historical (expanding) variance; the plan's target is reported beside it;
- regime: persistence (the rule label now, for the label ``horizon`` bars ahead) and the rules rolled
  forward on driftless random-walk paths (what the rules' mechanics alone predict).

Each task has one primary metric (direction: the daily cross-sectional rank IC, the skill a ranking
signal is used for, or, where no date has MIN_CROSS_SECTION symbols, the time-series rank IC: the
rank correlation of score and next return over all rows, from per-date sums so that it resamples
like the rest; volatility: QLIKE, with RMSE and MAE reported; regime: forecast accuracy).
``skill`` is the improvement over the best baseline on it, with its one-sided lower bound: the
deploy gate promotes only when that bound is above zero.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_ml.config import Settings
from trading_ml.errors import DataError
from trading_ml.models.splits import Split, out_of_sample_fold
from trading_ml.models.statistics import bootstrap_t, improvement, interval, resample_dates
from trading_ml.models.tasks import TASKS, Task


def evaluate(
    task: str,
    table: pd.DataFrame,
    folds: list[Split],
    predictions: pd.DataFrame,
    settings: Settings,
    baselines: dict[str, pd.DataFrame] | None = None,
) -> dict:
    """Every metric of the model and its baselines on the pooled out-of-sample rows, with intervals,
    and its skill: the improvement over the best baseline on the primary metric. ``baselines``: the
    task's baselines of this table and folds when already made (models of one task share them)."""
    rules = TASKS[task]
    candidates = {"model": predictions, **(baselines or rules.baselines(table, folds, settings))}
    rows = np.logical_and.reduce(
        [out_of_sample_rows(task, table, folds, predictions), *(_complete(c) for c in candidates.values())]
    )
    if not rows.any():
        raise DataError(
            f"{task}: no out-of-sample rows with a label and a prediction; the table is too short for {len(folds)} "
            "walk-forward folds: use a longer lookback or fewer models.folds"
        )
    resampled, model, others, skill = judge(task, table, rows, candidates, settings)
    details = rules.details(table, rows, predictions, settings)
    result = {
        "task": task,
        "rows": int(rows.sum()),
        "days": resampled.days,
        "folds": [split.to_dict() for split in folds],
        "primary": {
            "metric": rules.primary,
            **model[rules.primary],
            "higher_is_better": rules.higher_is_better,
            **rules.primary_details(table.index[rows]),
        },
        "metrics": model,
        "baselines": others,
        "skill": skill,
        "plan_target": rules.plan_target(model, others, details),
        **details,
    }
    if rules.t_statistic:  # in the metrics, after the primary summary took its copy
        model[rules.primary]["t_stat"] = bootstrap_t(
            model[rules.primary]["value"], _samples(rules, resampled, "model", rules.primary)
        )
    return result


def judge(task: str, table: pd.DataFrame, rows: np.ndarray, candidates: dict[str, pd.DataFrame], settings: Settings):
    """(resampled sums, the model's metrics, each baseline's metrics, the model's skill over the best
    baseline) on the given rows; ``candidates`` holds "model" and the baselines."""
    rules = TASKS[task]
    resampled = _resample(task, table, rows, candidates, settings)
    scored = {name: _scored(rules, resampled, name, settings.models.confidence) for name in candidates}
    model, others = scored.pop("model"), scored
    best = max(others, key=lambda b: _oriented(rules, others[b][rules.primary]["value"]))
    skill = {
        "metric": rules.primary,
        "baseline": best,
        **_improvement(rules, resampled, "model", best, settings.models.confidence),
    }
    return resampled, model, others, skill


def versus(
    task: str,
    table: pd.DataFrame,
    folds: list[Split],
    challenger: pd.DataFrame,
    incumbent: pd.DataFrame,
    rows: np.ndarray,
    settings: Settings,
) -> dict:
    """The challenger's improvement over another model's predictions on the given rows (primary metric)."""
    rules = TASKS[task]
    rows = rows & out_of_sample_rows(task, table, folds, challenger) & _complete(incumbent)
    resampled = _resample(task, table, rows, {"model": challenger, "production": incumbent}, settings)
    return {
        "metric": rules.primary,
        "rows": int(rows.sum()),
        "days": resampled.days,
        **_improvement(rules, resampled, "model", "production", settings.models.confidence),
    }


def out_of_sample_rows(task: str, table: pd.DataFrame, folds: list[Split], predictions: pd.DataFrame) -> np.ndarray:
    """Rows in a fold's test segment with the task's labels and a prediction."""
    return (out_of_sample_fold(folds) >= 0) & TASKS[task].labelled(table) & _complete(predictions)


def _complete(frame: pd.DataFrame) -> np.ndarray:
    return frame.notna().all(axis=1).to_numpy()


def _resample(task: str, table: pd.DataFrame, rows: np.ndarray, candidates: dict, settings: Settings):
    per_row, per_day = TASKS[task].row_sums(table, rows, candidates)
    sums = per_row.groupby(level="timestamp").sum()
    if per_day is not None:
        sums = sums.join(per_day, how="outer").fillna(0.0)
    models = settings.models
    return resample_dates(sums, models.bootstrap_block_days, models.bootstrap_samples, models.seed)


def _samples(rules: Task, resampled, name: str, metric: str) -> pd.Series:
    return rules.metrics[metric](resampled.samples, name)


def _scored(rules: Task, resampled, name: str, confidence: float) -> dict:
    """Every metric the candidate has (one-hot baselines have no log loss), with its interval."""
    point = resampled.point.to_frame().T
    return {
        metric: interval(float(fn(point, name).iloc[0]), fn(resampled.samples, name), confidence)
        for metric, fn in rules.metrics.items()
        if metric != "log_loss" or f"{name}.log_loss" in point
    }


def _oriented(rules: Task, value: float) -> float:
    value = value if np.isfinite(value) else -np.inf if rules.higher_is_better else np.inf
    return value if rules.higher_is_better else -value


def _improvement(rules: Task, resampled, name: str, other: str, confidence: float) -> dict:
    """``name`` minus ``other`` on the primary metric, signed so that positive is better."""
    fn, sign = rules.metrics[rules.primary], 1 if rules.higher_is_better else -1
    point = resampled.point.to_frame().T
    value = sign * float(fn(point, name).iloc[0] - fn(point, other).iloc[0])
    return improvement(value, sign * (fn(resampled.samples, name) - fn(resampled.samples, other)), confidence)


def summary(evaluation: dict) -> dict:
    """The few numbers a table row, the registry record or XCom needs."""
    return {key: evaluation[key] for key in ("task", "primary", "skill", "plan_target", "rows", "days")}
