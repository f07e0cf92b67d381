"""Stage 4, train: fit one model walk-forward on the run's training table, save it and its
out-of-sample predictions under models/, register it as a candidate; then (:func:`combine`, once the
models trained) build each combination of them, the direction ensemble, the same way."""

from __future__ import annotations

import datetime as dt
import logging
import time
from typing import Any

import pandas as pd

from trading_ml.config import shorten
from trading_ml.errors import DataError
from trading_ml.io import atomic_write_bytes, read_parquet, write_json, write_parquet
from trading_ml.models.catalogue import chosen_models, combinations_of, entry, members_of, model_class
from trading_ml.models.dataset import TrainingData
from trading_ml.pipeline.resources import OWN_RESOURCES, StageResources
from trading_ml.pipeline.run_manifest import stage, trained_manifests
from trading_ml.registry import ModelRegistry, config_hash
from trading_ml.run import RunContext

log = logging.getLogger(__name__)


@stage("train")
def train(ctx: RunContext, model_name: str, resources: StageResources = OWN_RESOURCES) -> dict:
    """Fit one model on every walk-forward fold of the features stage's training table, save the
    last fold's model under models/ with the pooled out-of-sample predictions of all folds, and
    register it as a candidate.

    Returns the artifact paths, sha256, version and
    what training found, never the model itself. A retried task of the same run rewrites the same
    files and keeps its version.
    """
    if model_name not in chosen_models(ctx.models):
        raise DataError(
            f"model {shorten(model_name)} is not one of run {ctx.run_id}'s models; train one of "
            f"{', '.join(chosen_models(ctx.models))}"
        )
    started = time.perf_counter()
    data = TrainingData.load(ctx, ctx.stage_manifest("features"))
    log.info(
        "%s: %s training table of %d rows, %d symbols, %d features; %d walk-forward folds",
        model_name,
        data.timeframe,
        len(data.table),
        len(data.symbols),
        len(data.feature_names),
        len(data.folds),
    )
    model, out_of_sample = fit_walk_forward(model_class(model_name), data, ctx)
    files = [
        atomic_write_bytes(ctx.layout.model_file(model_name, suffix), payload)
        for suffix, payload in model.save().items()
    ]
    predictions = write_parquet(ctx.layout.predictions(model_name), out_of_sample)
    registry = resources.registry(ctx)
    record = registry.publish(model_metadata(ctx, registry, model_name, files, data, model.feature_names))
    manifest = write_trained_manifest(ctx, resources, record, predictions, data)
    log.info(
        "%s: registered version %s as a candidate (%.1f s)",
        model_name,
        record["version"],
        time.perf_counter() - started,
    )
    return manifest


@stage("train")
def combine(ctx: RunContext, resources: StageResources = OWN_RESOURCES) -> dict:
    """The fan-in after the trainings: register each combination (the direction ensemble) whose
    members all trained in this run, with its files, its out-of-sample predictions (its rule applied
    to the members' own) and a train manifest like a trained model's. Re-running rewrites the same."""
    trained = {name: m for name, m in trained_manifests(ctx).items() if not members_of(name)}
    names = combinations_of(trained)
    data = TrainingData.load(ctx, ctx.stage_manifest("features")) if names else None
    combined = {name: _register_combination(ctx, resources, name, data, trained) for name in names if data is not None}
    return {"stage": "train", "run_id": ctx.run_id, "combined": combined}


def _register_combination(
    ctx: RunContext, resources: StageResources, name: str, data: TrainingData, trained: dict
) -> dict:
    registry = resources.registry(ctx)
    cls, members = model_class(name), {m: registry.record_for_run(m, ctx.run_id) for m in members_of(name)}
    paths = [
        atomic_write_bytes(ctx.layout.model_file(name, suffix), payload)
        for suffix, payload in cls.spec_files(list(members)).items()
    ]
    names = sorted({n for record in members.values() for n in record["feature_names"]})
    components = {member: record["version"] for member, record in members.items()}
    record = registry.publish({**model_metadata(ctx, registry, name, paths, data, names), "components": components})
    combined = cls.combine([read_parquet(ctx.layout.resolve(trained[member]["predictions"])) for member in members])
    predictions = write_parquet(ctx.layout.predictions(name), combined)
    log.info(
        "%s: registered version %s as a candidate, built from %s",
        name,
        record["version"],
        ", ".join(f"{member} v{version}" for member, version in components.items()),
    )
    return write_trained_manifest(ctx, resources, record, predictions, data, components=components)


def write_trained_manifest(
    ctx: RunContext, resources: StageResources, record: dict, predictions, data: TrainingData, **extra
) -> dict:
    """A model's train manifest (``models/<name>.trained.json``): what evaluate reads."""
    manifest = {
        "stage": "train",
        "run_id": ctx.run_id,
        "model_name": record["model_name"],
        "version": record["version"],
        "artifacts": record["artifacts"],
        "predictions": ctx.layout.relative(predictions),
        "training_samples": record["training_samples"],
        "folds": len(data.folds),
        "dataset": ctx.layout.relative(ctx.layout.features_manifest),
        "store": resources.store_choice.to_dict(),
        **extra,
    }
    write_json(ctx.layout.trained_manifest(record["model_name"]), manifest)
    return manifest


def fit_walk_forward(cls, data: TrainingData, ctx: RunContext) -> tuple[Any, pd.DataFrame]:
    """The model of the last fold, and every fold's predictions of its own test segment (NaN on
    rows no fold tested), with a ``fold`` column."""
    pooled = None
    for split in data.folds:
        log.info(
            "%s: fold %d of %d: %d training, %d validation and %d test rows, test from %s",
            cls.name,
            split.fold + 1,
            len(data.folds),
            *(int(split.mask(segment).sum()) for segment in ("train", "validation", "test")),
            split.test_start.date(),
        )
        model = cls.fit(data.for_fold(split), ctx.settings.models.params.get(cls.name), ctx.settings.models.seed)
        predictions = model.predict(data.table)
        if pooled is None:
            pooled = pd.DataFrame(float("nan"), index=predictions.index, columns=predictions.columns).astype(
                predictions.dtypes
            )
            pooled["fold"] = -1
        tested = split.mask("test")
        pooled.loc[tested, predictions.columns] = predictions[tested]
        pooled.loc[tested, "fold"] = split.fold
    return model, pooled


def model_metadata(
    ctx: RunContext, registry: ModelRegistry, name: str, files, data: TrainingData, feature_names: list[str]
) -> dict:
    """The plan's metadata (model_name ... timeframe) plus what makes the model traceable; the
    version comes from the registry when it is published."""
    target = entry(name).target
    return {
        "model_name": name,
        "task": entry(name).task,
        "target": target,
        "trained_date": dt.datetime.now(dt.UTC).date().isoformat(),
        "training_samples": int((data.split.mask("train") & data.table[target].notna().to_numpy()).sum()),
        "symbols": data.symbols,
        "feature_count": len(feature_names),
        "feature_names": list(feature_names),
        "timeframe": data.timeframe,
        "data_window": data.window(),
        "split": data.split.to_dict(),
        "walk_forward": [split.to_dict() for split in data.folds],
        "trained_until": data.split.test_start.isoformat(),  # the registered model saw no row from here on
        "run_id": ctx.run_id,
        "as_of": ctx.as_of.isoformat(),
        "config_hash": config_hash(ctx.settings),
        "artifacts": registry.artifacts(files),
    }
