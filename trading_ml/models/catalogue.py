"""Which models exist: each model's class says its name, task, target and parameters (``Params``,
its section of config.yaml); this module lists the classes once and answers questions about them.

The model modules import torch, xgboost, arch and scikit-learn only when a model is fitted or
loaded, so code that lists or reports models (the DAG file, the Airflow plugin, the report, the
config schema) never loads them.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from trading_ml.errors import UnknownModel
from trading_ml.models.direction import DirectionEnsemble, LSTMDirection, XGBoostDirection
from trading_ml.models.regime import RegimeForest
from trading_ml.models.volatility import GarchVolatility, HarVolatility, LSTMVolatility

# Every model, in training order; a combination (``members``) after the models it is built from.
MODELS = (
    XGBoostDirection,
    LSTMDirection,
    GarchVolatility,
    LSTMVolatility,
    HarVolatility,
    RegimeForest,
    DirectionEnsemble,
)


@dataclass(frozen=True)
class Entry:
    name: str
    task: str  # direction | volatility | regime
    target: str  # the training table's column it predicts
    model: Any  # the model's class
    members: tuple[str, ...] = ()  # the models a combination is built from (none for a model of its own)

    @classmethod
    def of(cls, model: Any) -> Entry:
        return cls(model.name, model.task, model.target, model, tuple(getattr(model, "MEMBERS", ())))


CATALOGUE = {model.name: Entry.of(model) for model in MODELS}
ENSEMBLE = DirectionEnsemble.name
TRAINED_MODELS = tuple(
    name for name, found in CATALOGUE.items() if not found.members
)  # in training order; combinations are built after them (combine)
MODEL_NAMES = tuple(CATALOGUE)
# The trained models, longest training first at 500 symbols with one thread each (XGBoost 105 s,
# direction LSTM 54, forest 50, volatility LSTM 42, GARCH 27, HAR-RV 6 on 2026-12-07): parallel
# trainings (the CLI's workers, Airflow's training pool) start with these so that they end together.
LONGEST_FIRST = (
    "direction_xgboost",
    "direction_lstm",
    "regime_rf",
    "volatility_lstm",
    "volatility_garch",
    "volatility_har",
)


def longest_first(models: Iterable[str]) -> list[str]:
    """``models`` ordered by LONGEST_FIRST; a model not listed goes last."""
    return sorted(models, key=lambda name: LONGEST_FIRST.index(name) if name in LONGEST_FIRST else len(LONGEST_FIRST))


def entry(name: str) -> Entry:
    """The catalogue's entry of a model name; UnknownModel for any other name."""
    if not isinstance(name, str) or name not in CATALOGUE:
        raise UnknownModel(f"unknown model {str(name)[:40]!r}; models are {', '.join(MODEL_NAMES)}")
    return CATALOGUE[name]


def chosen_models(names: Sequence[str] | None) -> list[str]:
    """The trained models a run chose, in training order; all of them when it chose none."""
    if names is None:
        return list(TRAINED_MODELS)
    for name in names:
        if members_of(entry(name).name):
            raise UnknownModel(
                f"{name} is built from {' and '.join(members_of(name))} once they trained, not trained itself; "
                f"choose from {', '.join(TRAINED_MODELS)}"
            )
    return [name for name in TRAINED_MODELS if name in names]


def model_params() -> dict[str, type]:
    """Each configurable model's name and its class's ``Params`` (its section of config.yaml)."""
    return {name: found.model.Params for name, found in CATALOGUE.items() if hasattr(found.model, "Params")}


def model_class(name: str) -> Any:
    """The class of a model name."""
    return entry(name).model


def task_of(name: str) -> str:
    return entry(name).task


def models_of(task: str) -> tuple[str, ...]:
    return tuple(name for name, found in CATALOGUE.items() if found.task == task)


def members_of(name: str) -> tuple[str, ...]:
    """The models a combination is built from (none for any other name, known or not)."""
    found = CATALOGUE.get(name)
    return found.members if found else ()


def combinations_of(trained: Iterable[str]) -> list[str]:
    """The combinations whose members all trained, in catalogue order."""
    return [name for name, found in CATALOGUE.items() if found.members and set(found.members) <= set(trained)]


def served_models(task: str) -> tuple[str, ...]:
    """The task's models in the order serving prefers them: a combination before the models it is
    built from, then catalogue order; the first one in production serves."""
    return tuple(sorted(models_of(task), key=lambda name: -len(CATALOGUE[name].members)))
