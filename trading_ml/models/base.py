"""The one model protocol, and what models share.

Every model class names its ``name``, ``task`` (direction, volatility, regime) and ``target``
column, declares its parameters as ``Params`` (a checked dataclass: its section of config.yaml,
`models.<name>`), and offers ``fit(dataset, params, seed)`` (a dataset is a table, one walk-forward
fold, the feature names and the volatility horizon; ``params`` its ``Params`` as configured),
``predict(table)``, ``save()`` and ``load(files)``. ``save`` turns the model into files (suffix ->
bytes: ``.config.json`` with feature names, settings and fitted scalers, plus one binary in a format
that cannot run code on load); ``load`` rebuilds it from exactly those bytes. A model never opens a
path: the pipeline writes the files where the run's layout says, and the registry reads them back
after checking their sha256. A combination of other models of its run (the catalogue names its
members: the direction ensemble) is not fitted: ``combine`` applies its rule to the members'
predictions, and ``load(files, members)`` gets the loaded members.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Protocol

import numpy as np
import pandas as pd

from trading_ml.config import STRICT, Rate, at_most, checked
from trading_ml.errors import DataError

if TYPE_CHECKING:
    from trading_ml.models.splits import Split

CONFIG = ".config.json"


class Dataset(Protocol):
    """What a model is fitted on: the training table, one fold of it, and the features it may use."""

    table: pd.DataFrame
    split: Split
    feature_names: list[str]
    volatility_horizon: int  # bars the volatility target looks ahead (features.forward_volatility_bars)
    direction_labels: str  # the label column direction models learn (models.direction_labels)
    threads: int  # the threads a fit may use (trading_ml.models.threads): XGBoost's, the forest's, torch's
    inputs: StoredInputs | None  # feature_names' values as the features stage stored them, or None: the table's


class StoredInputs(Protocol):
    """A run's model features stored once, float32, rows in :func:`symbol_grouped_order`
    (trading_ml.models.dataset.GroupedInputs)."""

    names: list[str]

    def rows(self, rows: np.ndarray) -> np.ndarray: ...

    def release(self) -> None: ...


class Model(Protocol):
    name: str
    task: str
    target: str
    FILES: tuple[str, ...]
    Params: type  # its parameters and their bounds (config.yaml `models.<name>`); none for a combination

    @classmethod
    def fit(cls, dataset: Dataset, params, seed: int) -> Model: ...
    def predict(self, table: pd.DataFrame) -> pd.DataFrame: ...
    def save(self) -> dict[str, bytes]: ...
    @classmethod
    def load(cls, files: Mapping[str, bytes]) -> Model: ...


def progress_due(done: int, total: int, steps: int = 10) -> bool:
    """Whether a loop ``done`` of ``total`` steps in logs its progress: about every tenth, and at the end."""
    return done == total or done % max(1, total // steps) == 0


def read_config(files: Mapping[str, bytes]) -> dict:
    return json.loads(files[CONFIG])


def feature_matrix(
    table: pd.DataFrame,
    names: list[str],
    model: str,
    rows: np.ndarray | None = None,
    extra_columns: tuple[np.ndarray, ...] = (),
) -> np.ndarray:
    """The named feature columns, then ``extra_columns`` (a value per table row each), of the table
    rows at positions ``rows`` in that order when given, as a float32 array of the caller's own; or a
    DataError naming what the table lacks. Filled a column at a time: no other copy of the matrix is
    made (at 500 symbols one is 0.3 GB)."""
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise DataError(f"{model} needs feature(s) {', '.join(missing[:5])} that this table lacks; rebuild features")
    columns = [*(table[name] for name in names), *extra_columns]
    matrix = np.empty((len(table) if rows is None else len(rows), len(columns)), dtype=np.float32)
    for position, column in enumerate(columns):
        values = column.to_numpy(dtype=np.float32, na_value=np.nan) if isinstance(column, pd.Series) else column
        matrix[:, position] = values if rows is None else values[rows]
    return matrix


def symbol_grouped_order(table: pd.DataFrame) -> np.ndarray:
    """The table's row positions grouped by symbol (symbols in order of first appearance, table
    order within): the order of the LSTMs' windows and of the stored model inputs."""
    codes, _ = pd.factorize(table.index.get_level_values("symbol"))
    return np.argsort(codes, kind="stable")


def model_inputs(dataset: Dataset, rows: np.ndarray, model: str) -> np.ndarray:
    """The dataset's ``feature_names`` at table rows ``rows``, in that order, float32: from the
    stored inputs when the dataset has them for these features (read-only when ``rows`` is their
    own order: the mapped file itself, no copy), else from the table (:func:`feature_matrix`)."""
    stored = stored_inputs_of(dataset.inputs, dataset.feature_names)
    if stored is not None:
        return stored.rows(rows)
    return feature_matrix(dataset.table, dataset.feature_names, model, rows)


def stored_inputs_of(inputs: StoredInputs | None, names: list[str]) -> StoredInputs | None:
    """``inputs`` when they hold exactly the features ``names``, in that order; else None (read the table)."""
    return inputs if inputs is not None and list(inputs.names) == list(names) else None


def release_inputs(dataset: Dataset) -> None:
    """Let go of the stored inputs' pages this process read (a model calls it once it has copied
    what it needs of them: they are the largest file a training maps)."""
    if dataset.inputs is not None:
        dataset.inputs.release()


def column_blocks(count: int, size: int = 16) -> list[slice]:
    """``count`` columns in blocks of ``size``, the last merged into the one before if it would be one column."""
    starts = list(range(0, count, size))
    if len(starts) > 1 and count - starts[-1] == 1:
        starts.pop()
    ends = [*starts[1:], count] if starts else []
    return [slice(start, end) for start, end in zip(starts, ends, strict=True)]


class Standardizer:
    """Column means and deviations fitted on the training segment only."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray):
        self.mean, self.scale = np.asarray(mean, dtype=np.float32), np.asarray(scale, dtype=np.float32)

    @classmethod
    def fit(cls, values: np.ndarray, rows: np.ndarray | None = None) -> Standardizer:
        """Fitted on ``values``, or on its rows at positions ``rows`` (in that order) without copying
        them all: a block of columns at a time, which numpy reduces row by row as it does the whole
        matrix, so the numbers are the same bit for bit (a lone column would be summed pairwise)."""
        means, scales = [], []
        for columns in column_blocks(values.shape[1]):
            block = np.ascontiguousarray(values[:, columns]) if rows is None else values[rows, columns]
            means.append(block.mean(axis=0))
            scales.append(block.std(axis=0))
        scale = np.concatenate(scales) if scales else np.zeros(0, dtype=values.dtype)
        return cls(np.concatenate(means) if means else scale, np.where(scale > 0, scale, 1.0))

    def transform_in_place(self, values: np.ndarray) -> np.ndarray:
        """(values - mean) / scale written over float32 ``values`` (no copy of a large matrix)."""
        if values.dtype != np.float32:
            raise TypeError(f"transform_in_place needs float32 values, not {values.dtype}")
        values -= self.mean
        values /= self.scale
        return values

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Standardizer:
        return cls(np.array(data["mean"]), np.array(data["scale"]))


@checked(frozen=True, config=STRICT)
class LSTMParams:
    """An LSTM model's parameters (config.yaml `models.direction_lstm`, `models.volatility_lstm`)."""

    sequence_length: at_most(1_000) = 20  # input: this many bars of the symbol
    hidden: at_most(4_096) = 32
    epochs: at_most(10_000) = 8
    batch: at_most(1_000_000) = 256
    learning_rate: Rate = 0.001
    sequences_per_epoch: at_most(100_000_000) = 50_000  # training sequences each epoch draws afresh (all when fewer)
    patience: at_most(10_000) = 3  # stop after this many epochs without a better validation loss
    validation_sequences: at_most(100_000_000) = 20_000  # judged each epoch: a fixed draw (all when fewer)
