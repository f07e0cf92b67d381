"""The three prediction tasks, each one object that owns what the task means.

A :class:`Task` owns its target and labels, the columns its models predict (what the API serves),
its metrics and primary metric, the baselines its models are judged against, the baseline the API
serves when no model of it is in production, the plan's target, and its report section. Models
declare their task by name (:mod:`trading_ml.models.catalogue`); evaluation, deploy, serving,
history and the report look the task up in :data:`TASKS` instead of branching on its name.

Metrics are computed from per-date sums (``row_sums``) so that a block bootstrap over dates
resamples every metric of the model and its baselines on the same dates.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trading_ml.errors import ConfigError
from trading_ml.features.targets import DIRECTIONS, REGIMES, direction_labels
from trading_ml.models.baselines import (
    PLAN_TARGET,
    TARGET,
    ewma_forecast,
    historical_forecast,
    naive_forecast,
    plan_forecast,
    plan_naive_forecast,
)
from trading_ml.models.splits import Split, out_of_sample_fold

PROBABILITIES = ["p_down", "p_neutral", "p_up"]  # a direction model's output columns, in class order
DIRECTION_CLASSES = sorted(DIRECTIONS)  # -1, 0, 1
RANDOM_WALK = "baseline_regime_random_walk"  # the training table's column of the regime's random-walk baseline
MIN_CROSS_SECTION = 3  # symbols a date needs for a cross-sectional rank IC
QLIKE_FLOOR = 1e-12
PROBABILITY_TOLERANCE = 1e-3  # how far a row of probabilities may sum from 1
MAX_VOLATILITY = 1.0  # a plausible volatility forecast: at most 100% standard deviation per bar

Metric = Callable[[pd.DataFrame, str], pd.Series]


@dataclass(frozen=True, kw_only=True)
class Task:
    """What every task offers; the subclasses fill in its knowledge."""

    name: str
    target: str  # the training table's label column
    predictions: tuple[str, ...]  # the columns a model of this task predicts
    primary: str  # the metric the deploy gate judges
    higher_is_better: bool
    metrics: dict[str, Metric]
    plan_rule: str  # the seed plan's success target, as text
    served_baseline: str  # the baseline the API serves without a production model
    served_baseline_text: str
    plan_threshold: float = 0.0  # the plan's accuracy target (classification tasks)
    labels: tuple[str, ...] = ()  # further columns a row needs to be judged
    probabilistic: frozenset[str] = field(default_factory=frozenset)  # candidates with probabilities (log loss)
    t_statistic: bool = False  # report the primary metric's bootstrap t-statistic too
    report_plot: str | None = None  # the report section's plot of each model's out-of-sample predictions (report.PLOTS)

    def labelled(self, table: pd.DataFrame) -> np.ndarray:
        """Rows with every label the task is judged on."""
        return np.logical_and.reduce([table[column].notna().to_numpy() for column in (self.target, *self.labels)])

    def baselines(self, table: pd.DataFrame, folds: list[Split], settings) -> dict[str, pd.DataFrame]:
        """Each baseline's predictions over the table, shaped like a model's."""
        raise NotImplementedError

    def row_sums(
        self, table: pd.DataFrame, rows: np.ndarray, candidates: dict
    ) -> tuple[pd.DataFrame, pd.DataFrame | None]:
        """Per-row columns to sum by date, and per-date values (None when there are none)."""
        raise NotImplementedError

    def plan_target(self, model: dict, baselines: dict, details: dict) -> dict:
        """The plan's target, met or not, as the metrics came out (here: accuracy above the threshold)."""
        value = model["accuracy"]["value"]
        return {"rule": self.plan_rule, "value": value, "met": value > self.plan_threshold}

    def primary_details(self, index: pd.MultiIndex) -> dict:
        """What the primary metric needs said about the judged rows (e.g. which rank IC)."""
        return {}

    def details(self, table: pd.DataFrame, rows: np.ndarray, predictions: pd.DataFrame, settings) -> dict:
        """What the evaluation adds beyond metrics (confusion matrix, backtest, ...)."""
        return {}

    def serve(self, table: pd.DataFrame, model, settings) -> pd.DataFrame:
        """The served columns for every row: the model's prediction, or the served baseline (model None)."""
        raise NotImplementedError

    def signal(self, row, settings) -> dict:
        """One symbol's answer in the API's response, from its served row (a mapping of the served columns)."""
        raise NotImplementedError

    def valid_rows(self, predicted: pd.DataFrame) -> np.ndarray:
        """Which rows hold a prediction in the task's range (finite, probabilities summing to 1, ...)."""
        raise NotImplementedError

    valid_text = ""  # what a valid row holds, for messages

    def invalid(self, predicted: pd.DataFrame) -> str | None:
        """What is wrong with predictions that must all be there, in a few words; None when nothing is."""
        ok = self.valid_rows(predicted)
        if ok.all() and len(ok):
            return None
        example = predicted[~ok].iloc[0].tolist() if len(ok) else "no rows"
        return f"{int((~ok).sum())} of {len(ok)} rows {self.valid_text}, e.g. {example}"


def ratio(sums: pd.DataFrame, numerator: str, denominator: str) -> pd.Series:
    return sums[numerator] / sums[denominator].where(sums[denominator] > 0)


def classification_metrics(labels) -> dict[str, Metric]:
    def recall(label) -> Metric:
        return lambda sums, name: ratio(sums, f"{name}.correct_{label}", f"is_{label}")

    def balanced(sums: pd.DataFrame, name: str) -> pd.Series:
        return pd.concat({str(k): ratio(sums, f"{name}.correct_{k}", f"is_{k}") for k in labels}, axis=1).mean(axis=1)

    return {
        "accuracy": lambda s, c: ratio(s, f"{c}.correct", "rows"),
        "balanced_accuracy": balanced,
        **{f"recall_{k}": recall(k) for k in labels},
    }


def classification_rows(truth: np.ndarray, predicted: dict[str, np.ndarray], labels) -> dict[str, np.ndarray]:
    """Row count, class indicators and each candidate's hits (overall and per class)."""
    columns = {"rows": np.ones(len(truth)), **{f"is_{k}": (truth == k).astype(float) for k in labels}}
    for name, guess in predicted.items():
        columns[f"{name}.correct"] = (guess == truth).astype(float)
        for k in labels:
            columns[f"{name}.correct_{k}"] = ((guess == truth) & (truth == k)).astype(float)
    return columns


# direction ------------------------------------------------------------------------------------------


def rank_ic(sums: pd.DataFrame, name: str) -> pd.Series:
    """The mean daily cross-sectional rank IC, or the time-series one where the sums hold its parts."""
    if f"{name}.ts_xy" not in sums:
        return ratio(sums, f"{name}.ic", "ic_days")
    spread = np.sqrt(sums[f"{name}.ts_xx"] * sums["ts_yy"])
    return (sums[f"{name}.ts_xy"] / spread.where(spread > 0)).fillna(0.0)  # a score that never varies ranks nothing


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
    enough = pd.Series(days).groupby(days).size() >= MIN_CROSS_SECTION
    return correlation[enough.reindex(correlation.index).to_numpy()].assign(ic_days=1.0)


def class_prior(table: pd.DataFrame, folds: list[Split], target: str = "target_direction") -> pd.DataFrame:
    """Each row's class frequencies of its fold's training rows (the last fold's elsewhere)."""
    fold_of = out_of_sample_fold(folds)
    prior = np.empty((len(table), 3))
    for split in folds:
        labels = table[target][split.mask("train")].dropna().astype(int)
        frequencies = labels.value_counts(normalize=True).reindex(DIRECTION_CLASSES, fill_value=0.0).to_numpy()
        prior[(fold_of == split.fold) | ((fold_of < 0) & (split is folds[-1]))] = frequencies
    return pd.DataFrame(prior, index=table.index, columns=PROBABILITIES)


class DirectionTask(Task):
    def baselines(self, table, folds, settings):
        prior = class_prior(table, folds, self.target)
        majority = np.eye(3)[prior.to_numpy().argmax(axis=1)]
        previous = (
            direction_labels(table["return_1"], settings.features.direction_threshold).fillna(0).to_numpy(dtype=int)
        )
        return {
            "class_prior": prior,
            "majority_class": pd.DataFrame(majority, index=table.index, columns=PROBABILITIES),
            "previous_direction": pd.DataFrame(np.eye(3)[previous + 1], index=table.index, columns=PROBABILITIES),
        }

    def row_sums(self, table, rows, candidates):
        truth = table[self.target].to_numpy()[rows].astype(int)
        index = table.index[rows]
        probabilities = {
            name: normalized(frame[PROBABILITIES].to_numpy(dtype=float)[rows]) for name, frame in candidates.items()
        }
        columns = classification_rows(
            truth,
            {n: np.array(DIRECTION_CLASSES)[p.argmax(axis=1)] for n, p in probabilities.items()},
            DIRECTION_CLASSES,
        )
        for name, p in probabilities.items():
            if name in self.probabilistic:  # the others are one-hot
                columns[f"{name}.log_loss"] = -np.log(np.clip(p[np.arange(len(truth)), truth + 1], 1e-7, 1))
        scores = pd.DataFrame({f"{name}.ic": p[:, 2] - p[:, 0] for name, p in probabilities.items()}, index=index)
        next_return = table["target_return"].to_numpy()[rows]
        if cross_section_kind(index) == "time-series":
            return pd.DataFrame({**columns, **time_series_rank_parts(scores, next_return)}, index=index), None
        return pd.DataFrame(columns, index=index), daily_rank_ic(scores, next_return)

    def primary_details(self, index):
        return {"kind": cross_section_kind(index)}

    def details(self, table, rows, predictions, settings):
        from trading_ml.data.calendars import bars_per_year
        from trading_ml.models.backtest import Resampling, long_short_backtest

        truth = table[self.target].to_numpy()[rows].astype(int)
        predicted = np.array(DIRECTION_CLASSES)[predictions[PROBABILITIES].to_numpy(dtype=float)[rows].argmax(axis=1)]
        score = predictions["p_up"] - predictions["p_down"]
        per_year = bars_per_year(
            settings.instrument(settings.features.benchmark).exchange,
            settings.models.timeframe,
            table.index.get_level_values("timestamp").max(),
        )
        models = settings.models
        resampling = Resampling(models.bootstrap_block_days, models.bootstrap_samples, models.seed, models.confidence)
        details = {
            "confusion_matrix": confusion(truth, predicted, DIRECTION_CLASSES),
            "backtest": long_short_backtest(
                score[rows],
                table["target_return"][rows],
                models.long_short_share,
                models.costs_bps,
                per_year,
                resampling,
            ),
        }
        daily = daily_rank_ic(score[rows].to_frame("model"), table["target_return"].to_numpy()[rows])["model"]
        if len(daily):  # the dates with a cross-section (a time-series IC has no date-by-date value)
            details["ic_by_date"] = {
                "timestamps": [t.isoformat() for t in daily.index],
                "ic": daily.round(6).tolist(),
                "cumulative": daily.cumsum().round(6).tolist(),
            }
        return details

    def serve(self, table, model, settings):
        if model is not None:
            return model.predict(table)[PROBABILITIES]
        return known_prior(table, self.target)

    valid_text = "with probabilities that are not finite, outside [0, 1] or not summing to 1"

    def valid_rows(self, predicted):
        values = predicted[PROBABILITIES].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            return (
                np.isfinite(values).all(axis=1)
                & (values >= 0).all(axis=1)
                & (values <= 1).all(axis=1)
                & (np.abs(values.sum(axis=1) - 1) <= PROBABILITY_TOLERANCE)
            )

    def signal(self, row, settings):
        probabilities = {
            DIRECTIONS[k]: float(row[column]) for k, column in zip(DIRECTION_CLASSES, PROBABILITIES, strict=True)
        }
        return {
            "probabilities": probabilities,
            "class": max(probabilities, key=probabilities.get),
            "score": probabilities["up"] - probabilities["down"],
        }  # what the rank IC judges: rank symbols by it


def known_prior(table: pd.DataFrame, target: str) -> pd.DataFrame:
    """Each row's class frequencies over the labels known at its bar (those of earlier dates: a
    label is the next bar's direction); equal thirds before any is known."""
    stamps = table.index.get_level_values("timestamp")
    labels = table[target].to_numpy()
    counts = (
        pd.DataFrame({k: (labels == k).astype(float) for k in DIRECTION_CLASSES}, index=table.index)
        .groupby(stamps)
        .sum()
    )
    known = counts.cumsum().shift(1, fill_value=0.0)
    total = known.sum(axis=1)
    frequencies = known.div(total.where(total > 0), axis=0).fillna(1 / len(DIRECTION_CLASSES))
    return pd.DataFrame(frequencies.reindex(stamps).to_numpy(), index=table.index, columns=PROBABILITIES)


def normalized(probabilities: np.ndarray) -> np.ndarray:
    return probabilities / probabilities.sum(axis=1, keepdims=True)


def confusion(truth: np.ndarray, predicted: np.ndarray, labels) -> dict:
    """The confusion matrix of out-of-sample rows (rows = truth)."""
    from sklearn.metrics import confusion_matrix

    return {
        "labels": [str(label) for label in labels],
        "counts": confusion_matrix(truth, predicted, labels=labels).tolist(),
    }


# volatility -----------------------------------------------------------------------------------------


class VolatilityTask(Task):
    def baselines(self, table, folds, settings):
        return {
            "naive": naive_forecast(table, settings.features.forward_volatility_bars).to_frame("volatility"),
            "ewma": ewma_forecast(table, settings.models.ewma_lambda).to_frame("volatility"),
            "historical": historical_forecast(table).to_frame("volatility"),
        }

    def row_sums(self, table, rows, candidates):
        truth = table[self.target].to_numpy(dtype=float)[rows]
        columns = {"rows": np.ones(len(truth))}
        for name, frame in candidates.items():
            forecast = np.maximum(frame["volatility"].to_numpy(dtype=float)[rows], 1e-8)
            qlike_ratio = np.maximum(truth**2, QLIKE_FLOOR) / forecast**2
            columns.update(
                {
                    f"{name}.se": (truth - forecast) ** 2,
                    f"{name}.ae": np.abs(truth - forecast),
                    f"{name}.qlike": qlike_ratio - np.log(qlike_ratio) - 1,
                }
            )
        return pd.DataFrame(columns, index=table.index[rows]), None

    def details(self, table, rows, predictions, settings):
        """The plan's target beside the task's: the model's forecast taken as the next bar's variance,
        against the plan's naive forecast (today's window-bar std), on the judged rows that have it."""
        window = settings.features.volatility_window
        model = plan_forecast(table, predictions["volatility"], window).to_numpy()
        naive = plan_naive_forecast(table, window).to_numpy()
        truth = table[PLAN_TARGET].to_numpy(dtype=float)
        judged = rows & np.isfinite(truth) & np.isfinite(model) & np.isfinite(naive)

        def rmse(forecast: np.ndarray) -> float | None:
            return round(float(np.sqrt(np.mean((truth[judged] - forecast[judged]) ** 2))), 8) if judged.any() else None

        return {
            "plan_target_rmse": {
                "target": f"{window}-bar rolling std of returns, one bar ahead",
                "rows": int(judged.sum()),
                "model": rmse(model),
                "naive": rmse(naive),
            }
        }

    def plan_target(self, model, baselines, details):
        plan = details["plan_target_rmse"]
        value, naive = plan["model"], plan["naive"]
        return {
            "rule": self.plan_rule,
            "value": value,
            "naive": naive,
            "met": value is not None and naive is not None and value < naive,
        }

    def serve(self, table, model, settings):
        if model is not None:
            return model.predict(table)[["volatility"]]
        return ewma_forecast(table, settings.models.ewma_lambda).to_frame("volatility")

    valid_text = (
        f"with a volatility that is not finite or outside (0, {MAX_VOLATILITY:g}] "
        "(a root mean square of returns per bar)"
    )

    def valid_rows(self, predicted):
        values = predicted["volatility"].to_numpy(dtype=float)
        with np.errstate(invalid="ignore"):
            return np.isfinite(values) & (values > 0) & (values <= MAX_VOLATILITY)

    def signal(self, row, settings):
        return {
            "forecast": float(row["volatility"]),
            "unit": "realized volatility: root mean square of one bar's return over the next horizon_bars bars",
            "horizon_bars": settings.features.forward_volatility_bars,
        }


# regime ---------------------------------------------------------------------------------------------


class RegimeTask(Task):
    now = "target_regime"  # the rules' regime of the bar itself: persistence, and what serving calls "now"

    def baselines(self, table, folds, settings):
        regime = {"persistence": persistence(table)}
        if RANDOM_WALK in table:  # tables written before the baseline existed have no such column
            regime["random_walk"] = pd.DataFrame({"regime_ahead": table[RANDOM_WALK]}, index=table.index)
        return regime

    def row_sums(self, table, rows, candidates):
        truth = table[self.target].to_numpy()[rows].astype(str)
        predicted = {name: frame["regime_ahead"].to_numpy()[rows].astype(str) for name, frame in candidates.items()}
        return pd.DataFrame(classification_rows(truth, predicted, REGIMES), index=table.index[rows]), None

    def details(self, table, rows, predictions, settings):
        truth = table[self.target].to_numpy()[rows].astype(str)
        return {
            "confusion_matrix": confusion(
                truth, predictions["regime_ahead"].to_numpy()[rows].astype(str), list(REGIMES)
            )
        }

    def serve(self, table, model, settings):
        now = table[self.now].rename("regime_now")
        ahead = model.predict(table)["regime_ahead"] if model is not None else now.rename("regime_ahead")
        return pd.concat([now, ahead], axis=1)

    valid_text = f"with a regime that is not one of {', '.join(REGIMES)}"

    def valid_rows(self, predicted):
        return predicted["regime_ahead"].isin(REGIMES).to_numpy()

    def signal(self, row, settings):
        return {
            "now": str(row["regime_now"]),
            "ahead": str(row["regime_ahead"]),
            "horizon_bars": settings.features.regime.horizon,
        }


def persistence(table: pd.DataFrame) -> pd.DataFrame:
    """The regime forecast that the label stays what the rules say it is now."""
    return pd.DataFrame({"regime_ahead": table[RegimeTask.now]}, index=table.index)


DIRECTION = DirectionTask(
    name="direction",
    target="target_direction",
    predictions=tuple(PROBABILITIES),
    primary="rank_ic",
    higher_is_better=True,
    metrics={
        "rank_ic": rank_ic,
        **classification_metrics(DIRECTION_CLASSES),
        "log_loss": lambda s, c: ratio(s, f"{c}.log_loss", "rows"),
    },
    plan_rule="test accuracy > 55%",
    plan_threshold=0.55,
    served_baseline="class_prior",
    served_baseline_text="the frequencies of down, neutral and up over the stored history",
    probabilistic=frozenset({"model", "class_prior", "production"}),
    t_statistic=True,
)
VOLATILITY = VolatilityTask(
    name="volatility",
    target=TARGET,
    predictions=("volatility",),
    primary="qlike",  # Patton's robust loss: ranks forecasts as their true variance would, and with far more power
    # than RMSE, which the largest realized moves dominate (see bench_gate); RMSE and MAE are reported too
    higher_is_better=False,
    metrics={
        "rmse": lambda s, c: np.sqrt(ratio(s, f"{c}.se", "rows")),
        "mae": lambda s, c: ratio(s, f"{c}.ae", "rows"),
        "qlike": lambda s, c: ratio(s, f"{c}.qlike", "rows"),
    },
    plan_rule="test RMSE below the naive forecast (yesterday's value) on the plan's target (20-bar std, one bar ahead)",
    served_baseline="ewma",
    served_baseline_text="the RiskMetrics EWMA of squared returns",
    report_plot="volatility",
)
REGIME = RegimeTask(
    name="regime",
    target="target_regime_ahead",
    predictions=("regime_ahead",),
    primary="accuracy",
    higher_is_better=True,
    metrics=classification_metrics(REGIMES),
    plan_rule="test accuracy > 70% (forecast, horizon bars ahead)",
    plan_threshold=0.70,
    served_baseline="persistence",
    served_baseline_text="the regime ahead is the rules' regime now",
    labels=("target_regime",),
    report_plot="regime_timeline",
)
TASKS: dict[str, Task] = {task.name: task for task in (DIRECTION, VOLATILITY, REGIME)}


def task(name: str) -> Task:
    if name not in TASKS:
        raise ConfigError(f"unknown task {name!r}; tasks are {', '.join(TASKS)}")
    return TASKS[name]
