"""Stage 4, train: fit one model walk-forward on the run's training table, save it and its
out-of-sample predictions under models/, register it as a candidate; then (:func:`combine`, once the
models trained) build each combination of them, the direction ensemble, the same way."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from trading_ml.config import shorten
from trading_ml.errors import DataError
from trading_ml.io import atomic_write_bytes, read_parquet, write_json, write_parquet
from trading_ml.models.base import release_inputs, stored_inputs_of
from trading_ml.models.catalogue import chosen_models, combinations_of, entry, longest_first, members_of, model_class
from trading_ml.models.dataset import GroupedInputs, TrainingData
from trading_ml.models.splits import rows_with_context
from trading_ml.models.threads import fit_threads, limited_threads
from trading_ml.pipeline.resources import OWN_RESOURCES, StageResources
from trading_ml.pipeline.run_manifest import stage, trained_manifests
from trading_ml.pipeline.workers import SPREAD_FROM_SYMBOLS, Workers, kept_for_run
from trading_ml.registry import ModelRegistry, config_hash
from trading_ml.run import RunContext

log = logging.getLogger(__name__)


@stage("train")
def train(
    ctx: RunContext,
    model_name: str,
    resources: StageResources = OWN_RESOURCES,
    sharing: int = 1,
    data: TrainingData | None = None,
) -> dict:
    """Fit one model on every walk-forward fold of the features stage's training table, save the
    last fold's model under models/ with the pooled out-of-sample predictions of all folds, and
    register it as a candidate. ``sharing``: the trainings running at once on these cores (the DAG's
    parallel tasks); the fit gets models.cores / sharing threads. ``data``: the run's training
    table when this process already loaded it for another training (else it is loaded and checked).

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
    data = data or TrainingData.of_run(ctx)
    data = replace(data, threads=fit_threads(ctx.settings.models.cores, sharing))
    log.info(
        "%s: %s training table of %d rows, %d symbols, %d features; %d walk-forward folds; %d thread(s)",
        model_name,
        data.timeframe,
        len(data.table),
        len(data.symbols),
        len(data.feature_names),
        len(data.folds),
        data.threads,
    )
    with limited_threads(data.threads):
        model, out_of_sample = fit_walk_forward(model_class(model_name), data, ctx)
    files = [
        atomic_write_bytes(ctx.layout.model_file(model_name, suffix), payload)
        for suffix, payload in model.save().items()
    ]
    predictions = write_parquet(ctx.layout.predictions(model_name), out_of_sample)
    registry = resources.registry(ctx)
    table = table_metadata(model_name, data)
    record = registry.publish(model_metadata(ctx, registry, model_name, files, table, model.feature_names))
    manifest = write_trained_manifest(ctx, resources, record, predictions, threads=data.threads)
    log.info(
        "%s: registered version %s as a candidate (%.1f s)",
        model_name,
        record["version"],
        time.perf_counter() - started,
    )
    return manifest


# Trainings that load torch run one after the other in one worker's call: one process holds torch
# (0.5 GB at 500 symbols: its libraries' pages and 0.26 GB of its own) instead of every worker.
ONE_WORKER = ("direction_lstm", "volatility_lstm")


def worker_calls(models: list[str]) -> list[tuple[str, ...]]:
    """The trainings of ``models`` as worker calls, longest first: each alone, but ONE_WORKER's together
    (where the first of them would go)."""
    ordered = longest_first(models)
    together = tuple(name for name in ordered if name in ONE_WORKER)
    calls: list[tuple[str, ...]] = []
    for name in ordered:
        if name not in ONE_WORKER:
            calls.append((name,))
        elif name == together[0]:
            calls.append(together)
    return calls


def train_models(
    ctx: RunContext, resources: StageResources, on_trained: Callable[[dict, float], None] = lambda manifest, s: None
) -> list[dict]:
    """Every model the run chose, trained; their manifests in training order, each also handed to
    ``on_trained`` with its seconds as it arrives. A run of SPREAD_FROM_SYMBOLS symbols or more
    trains each in a worker process, models.parallel_trainings at once (0: one per core), each fit
    with models.cores / that many threads, as Airflow's parallel training tasks do: the caller never
    loads torch or holds a model's memory. A smaller run trains here, one model after the other
    with every core."""
    models = chosen_models(ctx.models)
    if len(ctx.symbols) < SPREAD_FROM_SYMBOLS:
        return [_reported(*timed_train(ctx, name, resources), on_trained) for name in models]
    at_once = ctx.settings.models.parallel_trainings or fit_threads(ctx.settings.models.cores, 1)
    calls = worker_calls(models)
    trained = {}
    with Workers(ctx.settings.models.cores, processes=min(at_once, len(calls))) as workers:
        done = workers.map(train_in_worker, [(ctx, names, at_once) for names in calls], min_calls=1)
        for names, results in zip(calls, done):
            for name, (manifest, seconds) in zip(names, results, strict=True):
                trained[name] = _reported(manifest, seconds, on_trained)
    return [trained[name] for name in models]


def timed_train(
    ctx: RunContext, name: str, resources: StageResources, sharing: int = 1, data: TrainingData | None = None
) -> tuple[dict, float]:
    """:func:`train` and its seconds (kept out of the manifest, which a re-run rewrites byte for byte)."""
    started = time.perf_counter()
    manifest = train(ctx, name, resources, sharing, data)
    return manifest, time.perf_counter() - started


def train_in_worker(ctx: RunContext, names: tuple[str, ...], sharing: int) -> list[tuple[dict, float]]:
    """:func:`timed_train` of each of ``names`` in turn, in a worker process, which loads the run's
    training table (checked) once for all the trainings it runs (2 s each at 500 symbols)."""
    data = kept_for_run("training table", ctx.run_id, lambda: TrainingData.of_run(ctx))
    results = []
    for name in names:
        results.append(timed_train(ctx, name, OWN_RESOURCES, sharing, data))
        release_inputs(data)  # the next training may not read them: their pages would count until exit
    return results


def _reported(manifest: dict, seconds: float, on_trained: Callable[[dict, float], None]) -> dict:
    on_trained(manifest, seconds)
    return manifest


@stage("train")
def combine(ctx: RunContext, resources: StageResources = OWN_RESOURCES) -> dict:
    """The fan-in after the trainings: register each combination (the direction ensemble) whose
    members all trained in this run, with its files, its out-of-sample predictions (its rule applied
    to the members' own) and a train manifest like a trained model's. The members learned from the
    same table and folds: what a record says of them comes from the members' records, so the
    training table is not read again. Re-running rewrites the same."""
    trained = {name: m for name, m in trained_manifests(ctx).items() if not members_of(name)}
    combined = {name: _register_combination(ctx, resources, name, trained) for name in combinations_of(trained)}
    return {"stage": "train", "run_id": ctx.run_id, "combined": combined}


def _register_combination(ctx: RunContext, resources: StageResources, name: str, trained: dict) -> dict:
    registry = resources.registry(ctx)
    cls, members = model_class(name), {m: registry.record_for_run(m, ctx.run_id) for m in members_of(name)}
    paths = [
        atomic_write_bytes(ctx.layout.model_file(name, suffix), payload)
        for suffix, payload in cls.spec_files(list(members)).items()
    ]
    names = sorted({n for record in members.values() for n in record["feature_names"]})
    components = {member: record["version"] for member, record in members.items()}
    table = _shared_table_metadata(name, members)
    record = registry.publish({**model_metadata(ctx, registry, name, paths, table, names), "components": components})
    combined = cls.combine([read_parquet(ctx.layout.resolve(trained[member]["predictions"])) for member in members])
    predictions = write_parquet(ctx.layout.predictions(name), combined)
    log.info(
        "%s: registered version %s as a candidate, built from %s",
        name,
        record["version"],
        ", ".join(f"{member} v{version}" for member, version in components.items()),
    )
    return write_trained_manifest(ctx, resources, record, predictions, components=components)


def _shared_table_metadata(name: str, members: dict[str, dict]) -> dict:
    """What the members' records say of the table and folds they learned from (the same for all of
    them); a DataError naming the member whose record lacks it."""
    first_name, first = next(iter(members.items()))
    missing = [key for key in TABLE_FIELDS if key not in first]
    if missing or first.get("target") != entry(name).target:
        raise DataError(
            f"{name}: the record of its member {first_name} lacks {', '.join(missing) or 'its target'}; "
            f"re-run train_{first_name}, then combine"
        )
    return {key: first[key] for key in TABLE_FIELDS}


def write_trained_manifest(ctx: RunContext, resources: StageResources, record: dict, predictions, **extra) -> dict:
    """A model's train manifest (``models/<name>.trained.json``): what evaluate reads."""
    manifest = {
        "stage": "train",
        "run_id": ctx.run_id,
        "model_name": record["model_name"],
        "version": record["version"],
        "artifacts": record["artifacts"],
        "predictions": ctx.layout.relative(predictions),
        "training_samples": record["training_samples"],
        "folds": len(record["walk_forward"]),
        "dataset": ctx.layout.relative(ctx.layout.features_manifest),
        "store": resources.store_choice.to_dict(),
        **extra,
    }
    write_json(ctx.layout.trained_manifest(record["model_name"]), manifest)
    return manifest


def fit_walk_forward(cls, data: TrainingData, ctx: RunContext) -> tuple[Any, pd.DataFrame]:
    """The model of the last fold, and every fold's predictions of its own test segment (NaN on
    rows no fold tested), with a ``fold`` column; each fold predicts only its test rows
    (:func:`fold_predictions`)."""
    pooled, model = None, None
    for split in data.folds:
        model = None  # the previous fold's model (a forest can be large) is not kept while the next one fits
        log.info(
            "%s: fold %d of %d: %d training, %d validation and %d test rows, test from %s",
            cls.name,
            split.fold + 1,
            len(data.folds),
            *(int(split.mask(segment).sum()) for segment in ("train", "validation", "test")),
            split.test_start.date(),
        )
        model = cls.fit(data.for_fold(split), ctx.settings.models.params.get(cls.name), ctx.settings.models.seed)
        tested = split.mask("test")
        predictions = fold_predictions(model, data.table, tested, data.inputs)
        if pooled is None:
            pooled = pd.DataFrame(float("nan"), index=data.table.index, columns=predictions.columns).astype(
                predictions.dtypes
            )
            pooled["fold"] = -1
        pooled.loc[tested, predictions.columns] = predictions
        pooled.loc[tested, "fold"] = split.fold
    return model, pooled


def fold_predictions(
    model, table: pd.DataFrame, tested: np.ndarray, inputs: GroupedInputs | None = None
) -> pd.DataFrame:
    """The model's predictions of the ``tested`` rows (a mask), in table order. A model with
    ``predict_rows`` reads the whole table and predicts those rows only; one with ``context_bars``
    reads only its ``feature_names`` and is given only those columns of the rows it reads (no copy
    of every row, nor of the table's other columns), from the run's stored ``inputs`` when they are
    its features; any other predicts every row."""
    if hasattr(model, "predict_rows"):
        return model.predict_rows(table, tested)
    needed = rows_with_context(table, np.flatnonzero(tested), getattr(model, "context_bars", None))
    if needed.all():
        return model.predict(table)[tested]
    rows, names = np.flatnonzero(needed), list(model.feature_names)
    stored = stored_inputs_of(inputs, names)
    if stored is not None:  # the same values, read from the run's stored inputs (a copy of our own: not copied again)
        columns = pd.DataFrame(stored.rows(rows), index=table.index[rows], columns=names, copy=False)
        stored.release()
    else:
        columns = table.loc[needed, names]
    return model.predict(columns)[tested[needed]]


# what a model's record says of the table and folds it learned from
TABLE_FIELDS = ("training_samples", "symbols", "timeframe", "data_window", "split", "walk_forward", "trained_until")


def table_metadata(name: str, data: TrainingData) -> dict:
    """The TABLE_FIELDS of a model fitted on ``data``."""
    target = entry(name).target
    return {
        "training_samples": int((data.split.mask("train") & data.table[target].notna().to_numpy()).sum()),
        "symbols": data.symbols,
        "timeframe": data.timeframe,
        "data_window": data.window(),
        "split": data.split.to_dict(),
        "walk_forward": [split.to_dict() for split in data.folds],
        "trained_until": data.split.test_start.isoformat(),  # the registered model saw no row from here on
    }


def model_metadata(
    ctx: RunContext, registry: ModelRegistry, name: str, files, table: dict, feature_names: list[str]
) -> dict:
    """The plan's metadata (model_name ... timeframe) plus what makes the model traceable; the
    version comes from the registry when it is published."""
    return {
        "model_name": name,
        "task": entry(name).task,
        "target": entry(name).target,
        "trained_date": dt.datetime.now(dt.UTC).date().isoformat(),
        **table,
        "feature_count": len(feature_names),
        "feature_names": list(feature_names),
        "run_id": ctx.run_id,
        "as_of": ctx.as_of.isoformat(),
        "config_hash": config_hash(ctx.settings),
        "artifacts": registry.artifacts(files),
    }
