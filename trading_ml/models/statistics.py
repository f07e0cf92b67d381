"""Confidence intervals by a circular block bootstrap over dates (``arch.bootstrap``).

Out-of-sample rows are summed per date first (every symbol of a day moves together, so a day is
the unit), then whole blocks of consecutive dates are resampled, which keeps the serial correlation
of overlapping labels and volatility clusters inside a block. Every metric here is a function of
column sums, so one set of resampled sums gives every metric of every candidate, paired: the model
and its baselines are always resampled on the same dates.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from arch.bootstrap import CircularBlockBootstrap


@dataclass(frozen=True)
class Resampled:
    """Column sums over all dates (``point``) and over each bootstrap sample (``samples``)."""

    point: pd.Series
    samples: pd.DataFrame
    days: int


def resample_dates(per_day: pd.DataFrame, block_days: int, samples: int, seed: int) -> Resampled:
    """Sums of per-date values over the dates and over ``samples`` circular block resamples of them."""
    values = per_day.to_numpy(dtype=float)
    block = max(1, min(block_days, len(values)))
    bootstrap = CircularBlockBootstrap(block, values, seed=np.random.default_rng(seed))
    sums = bootstrap.apply(lambda resampled: resampled.sum(axis=0), samples)
    return Resampled(per_day.sum(), pd.DataFrame(sums, columns=per_day.columns), len(values))


def interval(point: float, samples: np.ndarray | pd.Series, confidence: float) -> dict:
    """The point value and its two-sided percentile interval."""
    tail = (1 - confidence) / 2
    finite = np.asarray(samples, dtype=float)
    finite = finite[np.isfinite(finite)]
    low, high = np.quantile(finite, [tail, 1 - tail]) if len(finite) else (np.nan, np.nan)
    return {"value": _number(point), "low": _number(low), "high": _number(high)}


def improvement(point: float, samples: np.ndarray | pd.Series, confidence: float) -> dict:
    """An improvement (positive = better) with its interval and its one-sided bounds at ``confidence``:
    ``lower_bound`` above zero means significantly better, ``upper_bound`` below zero significantly worse."""
    finite = np.asarray(samples, dtype=float)
    finite = finite[np.isfinite(finite)]
    lower, upper = np.quantile(finite, [1 - confidence, confidence]) if len(finite) else (np.nan, np.nan)
    return {
        **interval(point, finite, confidence),
        "lower_bound": _number(lower),
        "upper_bound": _number(upper),
        "confidence": confidence,
        "better": bool(lower > 0),
        "worse": bool(upper < 0),
    }


def bootstrap_t(point: float, samples: np.ndarray | pd.Series) -> float:
    """The point value over its bootstrap standard error."""
    finite = np.asarray(samples, dtype=float)
    finite = finite[np.isfinite(finite)]
    spread = float(finite.std(ddof=1)) if len(finite) > 1 else 0.0
    return _number(point / spread) if spread > 0 else float("nan")


def _number(value) -> float:
    return float(value) if np.isfinite(value) else float("nan")
