"""Simulated out-of-sample prediction streams with a known skill, to measure the deploy gate.

A stream is what the evaluation sees for a direction model: ``days`` x ``symbols`` next returns
(a common market move plus each symbol's own move) and the model's probabilities. The model's
score is ``strength`` times the symbol's standardized own next move plus noise that persists from
day to day (as features do), so ``strength`` is about the model's information coefficient on the
own move; 0 is a model with no skill at all. Baselines are the class prior and the previous bar's
direction, as in the pipeline. :func:`promotion_rate` runs the same judge as the deploy stage.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd

from trading_ml.config import Settings
from trading_ml.features.targets import direction_labels
from trading_ml.models.evaluation import judge
from trading_ml.models.tasks import PROBABILITIES

MARKET_VOL, OWN_VOL = 0.010, 0.015
NOISE_PERSISTENCE = 0.9  # day-to-day autocorrelation of the score's noise


def direction_stream(
    strength: float, days: int, symbols: int, seed: int, threshold: float = 0.001
) -> tuple[pd.DataFrame, dict]:
    """(table, candidates) of one simulated out-of-sample period."""
    rng = np.random.default_rng(seed)
    market = rng.standard_normal(days + 1)[:, None] * MARKET_VOL
    own = rng.standard_normal((days + 1, symbols))
    returns = market + own * OWN_VOL
    noise = np.empty((days + 1, symbols))
    noise[0] = rng.standard_normal(symbols)
    for day in range(1, days + 1):
        noise[day] = NOISE_PERSISTENCE * noise[day - 1] + np.sqrt(1 - NOISE_PERSISTENCE**2) * rng.standard_normal(
            symbols
        )
    score = strength * own + np.sqrt(1 - strength**2) * noise  # known the evening before the move
    index = pd.MultiIndex.from_product(
        [pd.date_range("2020-01-01", periods=days, freq="B", tz="UTC"), [f"S{i}" for i in range(symbols)]],
        names=["timestamp", "symbol"],
    )
    table = pd.DataFrame({"target_return": returns[1:].ravel(), "return_1": returns[:-1].ravel()}, index=index)
    table["target_direction"] = direction_labels(table["target_return"], threshold)
    up = 1 / (1 + np.exp(-2 * score[1:].ravel()))
    model = np.column_stack([0.96 * (1 - up), np.full(len(up), 0.04), 0.96 * up])
    prior = (
        table["target_direction"].astype(int).value_counts(normalize=True).reindex([-1, 0, 1], fill_value=0).to_numpy()
    )
    previous = direction_labels(table["return_1"], threshold).astype(int).to_numpy() + 1
    candidates = {
        "model": pd.DataFrame(model, index=index, columns=PROBABILITIES),
        "class_prior": pd.DataFrame(np.tile(prior, (len(table), 1)), index=index, columns=PROBABILITIES),
        "previous_direction": pd.DataFrame(np.eye(3)[previous], index=index, columns=PROBABILITIES),
    }
    return table, candidates


def promotion_rate(
    settings: Settings, strength: float, trials: int, days: int = 420, symbols: int = 25, seed: int = 0
) -> dict:
    """How often the gate finds significant skill in ``trials`` streams of the given strength."""
    promoted, lower_bounds = 0, []
    for trial in range(trials):
        table, candidates = direction_stream(strength, days, symbols, seed + trial)
        trial_settings = dataclasses.replace(settings, models=dataclasses.replace(settings.models, seed=seed + trial))
        *_, skill = judge("direction", table, np.ones(len(table), dtype=bool), candidates, trial_settings)
        promoted += skill["better"]
        lower_bounds.append(skill["lower_bound"])
    return {
        "strength": strength,
        "trials": trials,
        "promoted": promoted,
        "rate": promoted / trials,
        "median_lower_bound": float(np.median(lower_bounds)),
    }
