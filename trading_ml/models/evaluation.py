"""Each model judged on its pooled walk-forward out-of-sample rows, beside honest baselines, with
block-bootstrap intervals (:mod:`trading_ml.models.statistics`) on every metric.

Baselines use only what was known before each test segment, on the same rows:
- direction: the class prior of the fold's training rows (probabilities), its majority class, and
  the previous bar's direction;
- volatility: yesterday's value (naive), the RiskMetrics EWMA and the historical (expanding) variance;
- regime: persistence (the rule label now, for the label ``horizon`` bars ahead) and the rules rolled
  forward on driftless random-walk paths (what the rules' mechanics alone predict).

Each task has one primary metric (direction: the daily cross-sectional rank IC, the skill a ranking
signal is used for, or, where no date has MIN_CROSS_SECTION symbols, the time-series rank IC: the
rank correlation of score and next return over all rows, from per-date sums so that it resamples
like the rest; volatility: RMSE; regime: forecast accuracy). ``skill`` is the improvement over
the best baseline on it, with its one-sided lower bound: the deploy gate promotes only when that
bound is above zero.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import confusion_matrix

from trading_ml.config import Settings
from trading_ml.data.calendars import bars_per_year
from trading_ml.errors import DataError
from trading_ml.features.targets import REGIMES, direction_labels
from trading_ml.models import metrics
from trading_ml.models.baselines import ewma_forecast, historical_forecast, naive_forecast
from trading_ml.models.splits import Split, out_of_sample_fold
from trading_ml.models.statistics import (
    bootstrap_t,
    improvement,
    interval,
    resample_dates,
)

DIRECTION_TARGET, VOLATILITY_TARGET = "target_direction", "target_volatility"
REGIME_NOW, REGIME_AHEAD = "target_regime", "target_regime_ahead"
RANDOM_WALK = "baseline_regime_random_walk"
CLASSES = metrics.DIRECTION_CLASSES
MIN_CROSS_SECTION = 3  # symbols a date needs for a cross-sectional rank IC
PROBABILITIES = ["p_down", "p_neutral", "p_up"]


@dataclass(frozen=True)
class Task:
    primary: str
    higher_is_better: bool
    plan_target: str
    metrics: dict[str, Callable[[pd.DataFrame, str], pd.Series]]


def _ratio(sums: pd.DataFrame, numerator: str, denominator: str) -> pd.Series:
    return sums[numerator] / sums[denominator].where(sums[denominator] > 0)


def _class_recalls(sums: pd.DataFrame, name: str, labels) -> pd.DataFrame:
    return pd.concat({str(k): _ratio(sums, f"{name}.correct_{k}", f"is_{k}") for k in labels}, axis=1)


def _rank_ic(sums: pd.DataFrame, name: str) -> pd.Series:
    """The mean daily cross-sectional rank IC, or the time-series one where the sums hold its parts."""
    if f"{name}.ts_xy" not in sums:
        return _ratio(sums, f"{name}.ic", "ic_days")
    spread = np.sqrt(sums[f"{name}.ts_xx"] * sums["ts_yy"])
    return (sums[f"{name}.ts_xy"] / spread.where(spread > 0)).fillna(0.0)  # a score that never varies ranks nothing


def _recall(label) -> Callable[[pd.DataFrame, str], pd.Series]:
    return lambda sums, name: _ratio(sums, f"{name}.correct_{label}", f"is_{label}")


def _classification(labels) -> dict:
    return {
        "accuracy": lambda s, c: _ratio(s, f"{c}.correct", "rows"),
        "balanced_accuracy": lambda s, c: _class_recalls(s, c, labels).mean(axis=1),
        **{f"recall_{k}": _recall(k) for k in labels},
    }


TASKS = {
    "direction": Task("rank_ic", True, "test accuracy > 55%", {
        "rank_ic": lambda s, c: _rank_ic(s, c),
        **_classification(CLASSES),
        "log_loss": lambda s, c: _ratio(s, f"{c}.log_loss", "rows"),
    }),
    "volatility": Task("rmse", False, "test RMSE below the naive forecast (yesterday's value)", {
        "rmse": lambda s, c: np.sqrt(_ratio(s, f"{c}.se", "rows")),
        "mae": lambda s, c: _ratio(s, f"{c}.ae", "rows"),
        "qlike": lambda s, c: _ratio(s, f"{c}.qlike", "rows"),
    }),
    "regime": Task("accuracy", True, "test accuracy > 70% (forecast, horizon bars ahead)", _classification(REGIMES)),
}


def evaluate(task: str, table: pd.DataFrame, folds: list[Split], predictions: pd.DataFrame, settings: Settings) -> dict:
    """Every metric of the model and its baselines on the pooled out-of-sample rows, with intervals,
    and its skill: the improvement over the best baseline on the primary metric."""
    spec = TASKS[task]
    candidates = {"model": predictions, **baselines(task, table, folds, settings)}
    rows = np.logical_and.reduce([out_of_sample_rows(task, table, folds, predictions), *(_complete(c) for c in candidates.values())])
    if not rows.any():
        raise DataError(f"{task}: no out-of-sample rows with a label and a prediction; the table is too short for {len(folds)} "
                        "walk-forward folds: use a longer lookback or fewer models.folds")
    resampled, model, others, skill = judge(task, table, rows, candidates, settings)
    result = {
        "task": task,
        "rows": int(rows.sum()),
        "days": resampled.days,
        "folds": [split.to_dict() for split in folds],
        "primary": {"metric": spec.primary, **model[spec.primary], "higher_is_better": spec.higher_is_better,
                    **({"kind": cross_section_kind(table.index[rows])} if task == "direction" else {})},
        "metrics": model,
        "baselines": others,
        "skill": skill,
        "plan_target": _plan_target(task, spec, model, others),
    }
    if task in ("direction", "regime"):
        result["confusion_matrix"] = confusion(task, table, rows, predictions)
    if task == "direction":
        result["metrics"]["rank_ic"]["t_stat"] = bootstrap_t(model["rank_ic"]["value"], _samples(spec, resampled, "model", "rank_ic"))
        score = predictions["p_up"] - predictions["p_down"]
        per_year = bars_per_year(settings.instrument(settings.features.benchmark).exchange, settings.models.timeframe,
                                 table.index.get_level_values("timestamp").max())
        result["backtest"] = metrics.long_short_backtest(score[rows], table["target_return"][rows], settings.models.long_short_share,
                                                         settings.models.costs_bps, per_year)
    return result


def judge(task: str, table: pd.DataFrame, rows: np.ndarray, candidates: dict[str, pd.DataFrame], settings: Settings):
    """(resampled sums, the model's metrics, each baseline's metrics, the model's skill over the best
    baseline) on the given rows; ``candidates`` holds "model" and the baselines."""
    spec = TASKS[task]
    resampled = _resample(task, table, rows, candidates, settings)
    scored = {name: _scored(spec, resampled, name, settings.models.confidence) for name in candidates}
    model, others = scored.pop("model"), scored
    best = max(others, key=lambda b: _oriented(spec, others[b][spec.primary]["value"]))
    skill = {"metric": spec.primary, "baseline": best, **_improvement(spec, resampled, "model", best, settings.models.confidence)}
    return resampled, model, others, skill


def versus(task: str, table: pd.DataFrame, folds: list[Split], challenger: pd.DataFrame, incumbent: pd.DataFrame, rows: np.ndarray, settings: Settings) -> dict:
    """The challenger's improvement over another model's predictions on the given rows (primary metric)."""
    spec = TASKS[task]
    rows = rows & out_of_sample_rows(task, table, folds, challenger) & _complete(incumbent)
    resampled = _resample(task, table, rows, {"model": challenger, "production": incumbent}, settings)
    return {"metric": spec.primary, "rows": int(rows.sum()), "days": resampled.days,
            **_improvement(spec, resampled, "model", "production", settings.models.confidence)}


def out_of_sample_rows(task: str, table: pd.DataFrame, folds: list[Split], predictions: pd.DataFrame) -> np.ndarray:
    """Rows in a fold's test segment with a label and a prediction."""
    target = {"direction": DIRECTION_TARGET, "volatility": VOLATILITY_TARGET, "regime": REGIME_AHEAD}[task]
    labelled = table[target].notna().to_numpy()
    if task == "regime":
        labelled = labelled & table[REGIME_NOW].notna().to_numpy()
    return (out_of_sample_fold(folds) >= 0) & labelled & _complete(predictions)


def baselines(task: str, table: pd.DataFrame, folds: list[Split], settings: Settings) -> dict[str, pd.DataFrame]:
    """Each baseline's predictions over the table, shaped like the model's."""
    if task == "direction":
        prior = class_prior(table, folds)
        majority = np.eye(3)[prior.to_numpy().argmax(axis=1)]
        previous = direction_labels(table["return_1"], settings.features.direction_threshold).fillna(0).to_numpy(dtype=int)
        return {
            "class_prior": prior,
            "majority_class": pd.DataFrame(majority, index=table.index, columns=PROBABILITIES),
            "previous_direction": pd.DataFrame(np.eye(3)[previous + 1], index=table.index, columns=PROBABILITIES),
        }
    if task == "volatility":
        window = settings.features.volatility_window
        return {"naive": naive_forecast(table, window).to_frame("volatility"),
                "ewma": ewma_forecast(table, window, settings.models.ewma_lambda).to_frame("volatility"),
                "historical": historical_forecast(table, window).to_frame("volatility")}
    regime = {"persistence": persistence(table)}
    if RANDOM_WALK in table:  # tables written before the baseline existed have no such column
        regime["random_walk"] = pd.DataFrame({"regime_ahead": table[RANDOM_WALK]}, index=table.index)
    return regime


def confusion(task: str, table: pd.DataFrame, rows: np.ndarray, predictions: pd.DataFrame) -> dict:
    """The model's confusion matrix on the out-of-sample rows (rows = truth)."""
    if task == "direction":
        labels = CLASSES
        truth = table[DIRECTION_TARGET].to_numpy()[rows].astype(int)
        predicted = np.array(CLASSES)[predictions[PROBABILITIES].to_numpy(dtype=float)[rows].argmax(axis=1)]
    else:
        labels = list(REGIMES)
        truth, predicted = table[REGIME_AHEAD].to_numpy()[rows].astype(str), predictions["regime_ahead"].to_numpy()[rows].astype(str)
    return {"labels": [str(label) for label in labels], "counts": confusion_matrix(truth, predicted, labels=labels).tolist()}


def persistence(table: pd.DataFrame) -> pd.DataFrame:
    """The regime forecast that the label stays what the rules say it is now."""
    return pd.DataFrame({"regime_ahead": table[REGIME_NOW]}, index=table.index)


def class_prior(table: pd.DataFrame, folds: list[Split]) -> pd.DataFrame:
    """Each row's class frequencies of its fold's training rows (the last fold's elsewhere)."""
    fold_of = out_of_sample_fold(folds)
    prior = np.empty((len(table), 3))
    for split in folds:
        labels = table[DIRECTION_TARGET][split.mask("train")].dropna().astype(int)
        frequencies = labels.value_counts(normalize=True).reindex(CLASSES, fill_value=0.0).to_numpy()
        prior[(fold_of == split.fold) | ((fold_of < 0) & (split is folds[-1]))] = frequencies
    return pd.DataFrame(prior, index=table.index, columns=PROBABILITIES)


def _complete(frame: pd.DataFrame) -> np.ndarray:
    return frame.notna().all(axis=1).to_numpy()


def _resample(task: str, table: pd.DataFrame, rows: np.ndarray, candidates: dict, settings: Settings):
    per_row, per_day = {"direction": _direction_rows, "volatility": _volatility_rows, "regime": _regime_rows}[task](table, rows, candidates)
    sums = per_row.groupby(level="timestamp").sum()
    if per_day is not None:
        sums = sums.join(per_day, how="outer").fillna(0.0)
    models = settings.models
    return resample_dates(sums, models.bootstrap_block_days, models.bootstrap_samples, models.seed)


def _direction_rows(table: pd.DataFrame, rows: np.ndarray, candidates: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    truth = table[DIRECTION_TARGET].to_numpy()[rows].astype(int)
    index = table.index[rows]
    columns = {"rows": np.ones(len(truth)), **{f"is_{k}": (truth == k).astype(float) for k in CLASSES}}
    scores = {}
    for name, frame in candidates.items():
        probabilities = frame[PROBABILITIES].to_numpy(dtype=float)[rows]
        probabilities = probabilities / probabilities.sum(axis=1, keepdims=True)
        predicted = np.array(CLASSES)[probabilities.argmax(axis=1)]
        columns[f"{name}.correct"] = (predicted == truth).astype(float)
        for k in CLASSES:
            columns[f"{name}.correct_{k}"] = ((predicted == truth) & (truth == k)).astype(float)
        if name in ("model", "class_prior", "production"):  # probabilistic; the others are one-hot
            columns[f"{name}.log_loss"] = -np.log(np.clip(probabilities[np.arange(len(truth)), truth + 1], 1e-7, 1))
        scores[f"{name}.ic"] = probabilities[:, 2] - probabilities[:, 0]
    scores, next_return = pd.DataFrame(scores, index=index), table["target_return"].to_numpy()[rows]
    if cross_section_kind(index) == "time-series":
        return pd.DataFrame({**columns, **time_series_rank_parts(scores, next_return)}, index=index), None
    return pd.DataFrame(columns, index=index), daily_rank_ic(scores, next_return)


def cross_section_kind(index: pd.MultiIndex) -> str:
    """'cross-sectional' when some date has MIN_CROSS_SECTION symbols, else 'time-series'."""
    per_day = pd.Series(index.get_level_values("timestamp")).value_counts()
    return "cross-sectional" if len(per_day) and per_day.max() >= MIN_CROSS_SECTION else "time-series"


def time_series_rank_parts(scores: pd.DataFrame, next_return: np.ndarray) -> dict[str, np.ndarray]:
    """Per-row products of demeaned ranks (over all rows) whose sums give each score's rank correlation."""
    def centred(values) -> np.ndarray:
        ranks = pd.Series(values).rank().to_numpy()
        return ranks - ranks.mean()

    y = centred(next_return)
    parts = {"ts_yy": y**2}
    for column in scores:
        x = centred(scores[column].to_numpy())
        name = column.removesuffix(".ic")
        parts.update({f"{name}.ts_xy": x * y, f"{name}.ts_xx": x**2})
    return parts


def daily_rank_ic(scores: pd.DataFrame, next_return: np.ndarray) -> pd.DataFrame:
    """Per date with at least 3 symbols: each score's Spearman correlation with the next return
    (0 for a score that does not vary that day), and an ``ic_days`` count of 1."""
    days = scores.index.get_level_values("timestamp")
    frame = scores.assign(_next=next_return)
    ranks = frame.groupby(days).rank()
    ranks = ranks - ranks.groupby(days).transform("mean")
    spread = np.sqrt((ranks**2).groupby(days).sum())
    covariance = ranks.drop(columns="_next").mul(ranks["_next"], axis=0).groupby(days).sum()
    correlation = covariance.div(spread.drop(columns="_next")).div(spread["_next"], axis=0)
    correlation = correlation.replace([np.inf, -np.inf], np.nan).fillna(0.0)
    enough = pd.Series(days).groupby(days).size() >= 3
    return correlation[enough.reindex(correlation.index).to_numpy()].assign(ic_days=1.0)


def _volatility_rows(table: pd.DataFrame, rows: np.ndarray, candidates: dict) -> tuple[pd.DataFrame, None]:
    truth = table[VOLATILITY_TARGET].to_numpy(dtype=float)[rows]
    columns = {"rows": np.ones(len(truth))}
    for name, frame in candidates.items():
        forecast = np.maximum(frame["volatility"].to_numpy(dtype=float)[rows], 1e-8)
        ratio = np.maximum(truth**2, metrics.QLIKE_FLOOR) / forecast**2
        columns.update({f"{name}.se": (truth - forecast) ** 2, f"{name}.ae": np.abs(truth - forecast),
                        f"{name}.qlike": ratio - np.log(ratio) - 1})
    return pd.DataFrame(columns, index=table.index[rows]), None


def _regime_rows(table: pd.DataFrame, rows: np.ndarray, candidates: dict) -> tuple[pd.DataFrame, None]:
    truth = table[REGIME_AHEAD].to_numpy()[rows].astype(str)
    columns = {"rows": np.ones(len(truth)), **{f"is_{k}": (truth == k).astype(float) for k in REGIMES}}
    for name, frame in candidates.items():
        predicted = frame["regime_ahead"].to_numpy()[rows].astype(str)
        columns[f"{name}.correct"] = (predicted == truth).astype(float)
        for k in REGIMES:
            columns[f"{name}.correct_{k}"] = ((predicted == truth) & (truth == k)).astype(float)
    return pd.DataFrame(columns, index=table.index[rows]), None


def _samples(spec: Task, resampled, name: str, metric: str) -> pd.Series:
    return spec.metrics[metric](resampled.samples, name)


def _scored(spec: Task, resampled, name: str, confidence: float) -> dict:
    """Every metric the candidate has (one-hot baselines have no log loss), with its interval."""
    point = resampled.point.to_frame().T
    return {metric: interval(float(fn(point, name).iloc[0]), fn(resampled.samples, name), confidence) for metric, fn in spec.metrics.items()
            if metric != "log_loss" or f"{name}.log_loss" in point}


def _oriented(spec: Task, value: float) -> float:
    value = value if np.isfinite(value) else -np.inf if spec.higher_is_better else np.inf
    return value if spec.higher_is_better else -value


def _improvement(spec: Task, resampled, name: str, other: str, confidence: float) -> dict:
    """``name`` minus ``other`` on the primary metric, signed so that positive is better."""
    fn, sign = spec.metrics[spec.primary], 1 if spec.higher_is_better else -1
    point = resampled.point.to_frame().T
    value = sign * float(fn(point, name).iloc[0] - fn(point, other).iloc[0])
    return improvement(value, sign * (fn(resampled.samples, name) - fn(resampled.samples, other)), confidence)


def _plan_target(task: str, spec: Task, model: dict, others: dict) -> dict:
    if task == "volatility":
        value = model["rmse"]["value"]
        return {"rule": spec.plan_target, "value": value, "naive": others["naive"]["rmse"]["value"], "met": value < others["naive"]["rmse"]["value"]}
    value = model["accuracy"]["value"]
    return {"rule": spec.plan_target, "value": value, "met": value > (0.55 if task == "direction" else 0.70)}


def summary(evaluation: dict) -> dict:
    """The few numbers a table row, the registry record or XCom needs."""
    return {key: evaluation[key] for key in ("task", "primary", "skill", "plan_target", "rows", "days")}
