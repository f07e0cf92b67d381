"""The training table a run's models learn from, its walk-forward folds, and the features they may use."""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from trading_ml.errors import ConfigError, DataError
from trading_ml.features.catalogue import model_features
from trading_ml.io import StoredMatrix, open_checked, read_mapped_table, read_parquet
from trading_ml.models.base import symbol_grouped_order
from trading_ml.models.splits import Split, walk_forward
from trading_ml.models.threads import fit_threads
from trading_ml.run import RunContext

DIRECTION_LABELS = {  # models.direction_labels -> the training table's column
    "absolute": "target_direction",
    "cross_sectional": "target_direction_cross_section",
}


def _recorded_file(entry, ctx: RunContext) -> dict:
    """A file the features manifest records ({"path": ..., "sha256": ...}), or a DataError saying the
    manifest was altered."""
    if not (isinstance(entry, dict) and isinstance(entry.get("path"), str) and isinstance(entry.get("sha256"), str)):
        raise DataError(
            f"the features manifest of run {ctx.run_id} records a training table without a path and a sha256 "
            f"(it was altered); re-run `trading-ml features --run-id {ctx.run_id}`"
        )
    return entry


def _changed(path: Path, run_id: str) -> DataError:
    return DataError(
        f"{path} is missing or changed since the features stage wrote it; re-run `trading-ml features "
        f"--run-id {run_id}`"
    )


class GroupedInputs:
    """The model features of a training table as the features stage stored them: float32, rows in
    :func:`symbol_grouped_order`, one file (a :class:`StoredMatrix`). The LSTM's windows are rows
    of the whole matrix, mapped, whose pages the processes mapping it share; any other set of rows
    (XGBoost's batches, a fold's test rows) is read into memory of its own, mapping none of the
    file. The file is checked against its sha256 as it is opened, once however many folds share
    this object."""

    def __init__(self, path: Path, sha256: str, names: list[str], table: pd.DataFrame, run_id: str):
        self.path, self.sha256, self.names, self.run_id = path, sha256, names, run_id
        self._table = table
        self._stored: StoredMatrix | None = None
        self._order: np.ndarray | None = None
        self._position_of_row: np.ndarray | None = None

    def stored(self) -> StoredMatrix:
        """The checked file, opened on first use; a DataError saying to rebuild the features when it
        is missing, changed or of another shape than the table's rows and the model features."""
        if self._stored is None:
            stored = StoredMatrix.open(self.path, self.sha256)
            if stored is None:
                raise _changed(self.path, self.run_id)
            if stored.shape != (len(self._table), len(self.names)):
                raise DataError(
                    f"{self.path} holds a {stored.shape} matrix, not {len(self._table)} rows of {len(self.names)} "
                    f"features; re-run `trading-ml features --run-id {self.run_id}`"
                )
            self._stored = stored
        return self._stored

    def grouped(self) -> np.ndarray:
        """The whole matrix, read-only (the file's pages)."""
        return self.stored().mapped()

    def rows(self, rows: np.ndarray) -> np.ndarray:
        """The table rows at positions ``rows``, in that order: read into a copy, or the mapped
        matrix itself when ``rows`` is its own order."""
        if self._order is None or self._position_of_row is None:
            order = symbol_grouped_order(self._table)
            position_of_row = np.empty_like(order)
            position_of_row[order] = np.arange(len(order))
            self._order, self._position_of_row = order, position_of_row
        if len(rows) == len(self._order) and np.array_equal(rows, self._order):
            return self.grouped()
        return self.stored().rows(self._position_of_row[rows])

    def release(self) -> None:
        """Let go of the mapped pages this process read: a training calls it once it has what it
        needs of them, so they do not count against its process while it computes; a later read
        maps them in again (no new check: the file stays open)."""
        if self._stored is not None:
            self._stored.release()


@dataclass
class TrainingData:
    table: pd.DataFrame
    folds: list[Split]  # oldest first
    split: Split  # the fold a model is fitted on (the last one unless for_fold says otherwise)
    feature_names: list[str]  # the scale-free features of the table
    timeframe: str
    path: str  # relative to the run folder
    volatility_horizon: int  # bars the volatility target looks ahead (features.forward_volatility_bars)
    direction_labels: str = "target_direction"  # the column direction models learn (models.direction_labels)
    threads: int = 1  # a fit's threads: models.cores over the trainings that share them (trading_ml.models.threads)
    inputs: GroupedInputs | None = None  # the stored model features (a run's mapped table), else None

    @classmethod
    def load(cls, ctx: RunContext, features_manifest: dict, mapped: bool = False) -> TrainingData:
        """The run's training table for models.timeframe, checked against the features manifest.
        ``mapped``: the memory-mapped copy the features stage wrote beside it, whose pages the
        processes reading it share (the parquet file when the manifest has none: an older run)."""
        timeframe = ctx.settings.models.timeframe
        entry = features_manifest["timeframes"].get(timeframe, {})
        if "training_table" not in entry:
            raise ConfigError(
                f"run {ctx.run_id} has no {timeframe} training table (models.timeframe); "
                f"run `trading-ml features --run-id {ctx.run_id} --timeframes {timeframe}` first"
            )
        recorded = _recorded_file(entry["training_table"], ctx)
        stored = _recorded_file(recorded["mapped"], ctx) if mapped and "mapped" in recorded else None
        path = recorded["path"]
        resolved = ctx.layout.resolve(stored["path"] if stored else path)
        handle = open_checked(resolved, (stored or recorded)["sha256"])  # read through the file it checked
        if handle is None:
            raise _changed(resolved, ctx.run_id)
        with handle:
            table = read_mapped_table(resolved, handle) if stored else read_parquet(resolved, handle)
        folds = walk_forward(table, ctx.settings.models, ctx.settings.features)
        names = model_features(entry["feature_names"])
        inputs = None
        if stored and "inputs" in recorded:
            written = _recorded_file(recorded["inputs"], ctx)
            inputs = GroupedInputs(ctx.layout.resolve(written["path"]), written["sha256"], names, table, ctx.run_id)
        return cls(
            table,
            folds,
            folds[-1],
            names,
            timeframe,
            path,
            ctx.settings.features.forward_volatility_bars,
            DIRECTION_LABELS[ctx.settings.models.direction_labels],
            fit_threads(ctx.settings.models.cores, 1),
            inputs,
        )

    @classmethod
    def of_run(cls, ctx: RunContext) -> TrainingData:
        """The run's training table as the train and evaluate stages read it: memory-mapped."""
        return cls.load(ctx, ctx.stage_manifest("features"), mapped=True)

    def for_fold(self, split: Split) -> TrainingData:
        return replace(self, split=split)

    def window(self) -> list[str]:
        stamps = self.table.index.get_level_values("timestamp")
        return [stamps.min().isoformat(), stamps.max().isoformat()]

    @property
    def symbols(self) -> list[str]:
        return sorted(self.table.index.get_level_values("symbol").unique())
