"""The training table a run's models learn from, its walk-forward folds, and the features they may use."""

from __future__ import annotations

from dataclasses import dataclass, replace

import pandas as pd

from trading_ml.errors import ConfigError, DataError
from trading_ml.features.catalogue import model_features
from trading_ml.io import intact, read_mapped_table, read_parquet
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
        if not intact(resolved, (stored or recorded)["sha256"]):
            raise DataError(
                f"{resolved} is missing or changed since the features stage wrote it; re-run `trading-ml features "
                f"--run-id {ctx.run_id}`"
            )
        table = read_mapped_table(resolved) if stored else read_parquet(resolved)
        folds = walk_forward(table, ctx.settings.models, ctx.settings.features)
        return cls(
            table,
            folds,
            folds[-1],
            model_features(entry["feature_names"]),
            timeframe,
            path,
            ctx.settings.features.forward_volatility_bars,
            DIRECTION_LABELS[ctx.settings.models.direction_labels],
            fit_threads(ctx.settings.models.cores, 1),
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
