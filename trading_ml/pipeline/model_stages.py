"""The model stages: train each model, evaluate them beside their baselines, deploy the winners.

This module imports torch, xgboost and arch; :mod:`trading_ml.pipeline` loads it on first use, so
the data stages (an Airflow ingestion task) start without them. The registry is addressed by
(model, run id): a stage finds this run's records wherever their versions stand.
"""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd

from trading_ml.errors import ConflictError, DataError
from trading_ml.io import atomic_write_bytes, read_json, write_json, write_parquet
from trading_ml.models import evaluation as judge
from trading_ml.models.dataset import TrainingData
from trading_ml.models.direction import average_probabilities
from trading_ml.models.volatility import GarchVolatility
from trading_ml.pipeline.data_stages import MODELS, StageResources, record_stage
from trading_ml.registry import ENSEMBLE, ENSEMBLE_MEMBERS, MODEL_CLASSES, ModelRegistry, config_hash
from trading_ml.report import write_report
from trading_ml.run import RunContext

log = logging.getLogger(__name__)

DEPLOY_ATTEMPTS = 5  # decisions re-made when another deploy changed production in between


def registry_of(ctx: RunContext, resources: StageResources) -> ModelRegistry:
    return ModelRegistry(resources.store, ctx.settings.data_dir)


def train(ctx: RunContext, model_name: str, dataset: dict, resources: StageResources | None = None) -> dict:
    """Fit one model on the run's training table, save it under models/ and register a candidate.

    ``dataset`` is the features stage's manifest. Returns the artifact paths, sha256, version and
    what training found (best iteration, epochs), never the model itself. A retried task of the
    same run rewrites the same files and keeps its version.
    """
    if model_name not in MODELS:
        raise DataError(f"unknown model {model_name!r}; train one of {', '.join(MODELS)}")
    resources = resources or StageResources.open(ctx)
    data = TrainingData.load(ctx, dataset)
    model = _fit(model_name, data, ctx)
    files = [atomic_write_bytes(ctx.layout.model_file(model_name, suffix), payload) for suffix, payload in model.to_files().items()]
    predictions = write_parquet(ctx.layout.predictions(model_name), model.predict(data.table))
    registry = registry_of(ctx, resources)
    record = registry.publish(_metadata(ctx, registry, model_name, files, data, model.feature_names))
    manifest = {
        "stage": "train",
        "run_id": ctx.run_id,
        "model_name": model_name,
        "version": record["version"],
        "artifacts": record["artifacts"],
        "predictions": ctx.layout.relative(predictions),
        "training_samples": record["training_samples"],
        "dataset": ctx.layout.relative(ctx.layout.features_manifest),
        "store": resources.store_choice.to_dict(),
    }
    write_json(ctx.layout.trained_manifest(model_name), manifest)
    return manifest


def _fit(model_name: str, data: TrainingData, ctx: RunContext):
    settings = ctx.settings.models
    if model_name == "volatility_garch":
        return GarchVolatility.fit(data.table, data.split, settings, ctx.settings.features.volatility_window)
    return MODEL_CLASSES[model_name].fit(data.table, data.split, data.feature_names, settings)


def _metadata(ctx: RunContext, registry: ModelRegistry, name: str, files, data: TrainingData, feature_names: list[str]) -> dict:
    """The plan's metadata (model_name ... timeframe) plus what makes the model traceable; the
    version comes from the registry when it is published."""
    target = {"direction": "target_direction", "volatility": "target_volatility", "regime": "target_regime"}[name.split("_")[0]]
    return {
        "model_name": name,
        "trained_date": dt.datetime.now(dt.UTC).date().isoformat(),
        "training_samples": int((data.split.mask("train") & data.table[target].notna().to_numpy()).sum()),
        "symbols": data.symbols,
        "feature_count": len(feature_names),
        "feature_names": list(feature_names),
        "timeframe": data.timeframe,
        "data_window": data.window(),
        "split": data.split.to_dict(),
        "run_id": ctx.run_id,
        "as_of": ctx.as_of.isoformat(),
        "config_hash": config_hash(ctx.settings),
        "artifacts": registry.artifacts(files),
    }


def evaluate(ctx: RunContext, trained: list[dict], resources: StageResources | None = None) -> dict:
    """Test-segment metrics of every trained model (and the direction ensemble) beside baselines.

    Writes models/evaluation.json (everything, equity curves included) and stores each model's
    summary in its registry record.
    """
    resources = resources or StageResources.open(ctx)
    registry = registry_of(ctx, resources)
    data = TrainingData.load(ctx, read_json(ctx.layout.features_manifest))
    predictions = {m["model_name"]: pd.read_parquet(ctx.layout.resolve(m["predictions"])) for m in trained}
    if set(ENSEMBLE_MEMBERS) <= set(predictions):
        predictions[ENSEMBLE] = _register_ensemble(ctx, registry, data, predictions)
    report, models = {}, {}
    for name, values in predictions.items():
        version = registry.record_for_run(name, ctx.run_id)["version"]
        report[name] = {"version": version, **judge.evaluate(name, data.table, data.split, values, ctx.settings)}
        models[name] = {"version": version, **judge.summary(report[name])}
        primary = report[name]["primary"]
        test_accuracy = primary["value"] if "accuracy" in primary["metric"] else None
        registry.update(name, ctx.run_id, test_metrics=models[name], test_accuracy=test_accuracy)
    write_json(ctx.layout.evaluation_report, {"run_id": ctx.run_id, "split": data.split.to_dict(), "models": report})
    manifest = {"stage": "evaluate", "run_id": ctx.run_id, "report": ctx.layout.relative(ctx.layout.evaluation_report), "models": models}
    write_json(ctx.layout.evaluate_manifest, manifest)
    record_stage(ctx, "evaluate", {name: m["primary"] for name, m in models.items()}, resources)
    return manifest


def _register_ensemble(ctx: RunContext, registry: ModelRegistry, data: TrainingData, predictions: dict) -> pd.DataFrame:
    """Register the 'direction' ensemble of this run's XGBoost and LSTM; its predictions."""
    members = {name: registry.record_for_run(name, ctx.run_id) for name in ENSEMBLE_MEMBERS}
    spec = {"members": list(ENSEMBLE_MEMBERS), "rule": "mean of member probabilities", "run_id": ctx.run_id}
    path = write_json(ctx.layout.model_file(ENSEMBLE, ".json"), spec)
    names = sorted({n for record in members.values() for n in record["feature_names"]})
    components = {name: record["version"] for name, record in members.items()}
    registry.publish({**_metadata(ctx, registry, ENSEMBLE, [path], data, names), "components": components})
    return average_probabilities([predictions[name] for name in ENSEMBLE_MEMBERS])


def deploy(ctx: RunContext, evaluated: dict, resources: StageResources | None = None) -> dict:
    """Promote each candidate that beats its baselines on test and does no worse there than the
    current production version; otherwise it stays a candidate. Every decision and its reason is
    logged and stored in the model's registry record. A promotion is a compare-and-set against the
    production version the decision was made on: if another deploy changed it meanwhile, decide again."""
    resources = resources or StageResources.open(ctx)
    registry = registry_of(ctx, resources)
    data = TrainingData.load(ctx, read_json(ctx.layout.features_manifest))
    decisions = {}
    for name, summary in evaluated["models"].items():
        version = registry.record_for_run(name, ctx.run_id)["version"]
        status, reason = _deploy_one(ctx, registry, data, name, summary)
        log.info("deploy %s %s: %s", name, version, reason)
        decisions[name] = {"version": version, "status": status, "reason": reason}
    manifest = {"stage": "deploy", "run_id": ctx.run_id, "decisions": decisions, "store": resources.store_choice.to_dict()}
    write_json(ctx.layout.deploy_manifest, manifest)
    record_stage(ctx, "deploy", {n: d["status"] for n, d in decisions.items()}, resources)
    return manifest


def _deploy_one(ctx: RunContext, registry: ModelRegistry, data: TrainingData, name: str, summary: dict) -> tuple[str, str]:
    """(status, reason) after deciding, and promoting if the decision says so."""
    for _ in range(DEPLOY_ATTEMPTS):
        incumbent = registry.production(name)
        promote, reason = _deploy_decision(ctx, registry, data, name, summary, incumbent)
        already = bool(incumbent) and incumbent["run_id"] == ctx.run_id  # a re-run of this deploy
        if not promote or already:
            return registry.update(name, ctx.run_id, deploy_decision=reason)["status"], reason
        if registry.promote(name, ctx.run_id, reason, expected=incumbent["run_id"] if incumbent else None):
            return "production", reason
    raise ConflictError(f"deploy {name}: production changed {DEPLOY_ATTEMPTS} times while deciding; re-run deploy")


def _deploy_decision(ctx: RunContext, registry: ModelRegistry, data: TrainingData, name: str, summary: dict, incumbent: dict | None) -> tuple[bool, str]:
    primary = summary["primary"]
    if not summary["beats_baselines"]:
        return False, f"stays candidate: test {primary['metric']} {primary['value']:.5g} does not beat its baselines"
    if incumbent is None or incumbent["run_id"] == ctx.run_id:
        return True, f"promoted: beats its baselines (test {primary['metric']} {primary['value']:.5g}); no other production version"
    record = registry.record_for_run(name, incumbent["run_id"])
    seen_until = record.get("split", {}).get("test_start")  # the incumbent trained and early-stopped on data before this
    if seen_until and pd.Timestamp(seen_until) > data.split.test_start:
        return False, (f"stays candidate: production {record['version']} was fitted on data up to {seen_until[:10]}, inside this "
                       f"run's test segment (from {data.split.test_start.date()}); an older run does not replace a newer model")
    try:
        model = registry.load_record(record)
        theirs = judge.evaluate(name, data.table, data.split, model.predict(data.table), ctx.settings)["primary"]["value"]
    except DataError as error:
        return True, f"promoted on baselines: production {record['version']} cannot be scored on this run's data ({error})"
    better = primary["value"] >= theirs if primary["higher_is_better"] else primary["value"] <= theirs
    verdict = f"test {primary['metric']} {primary['value']:.5g} vs production {record['version']} {theirs:.5g} on the same segment"
    return (True, f"promoted: {verdict}") if better else (False, f"stays candidate: worse than production: {verdict}")


def report(ctx: RunContext, resources: StageResources | None = None) -> dict:
    """The run's performance report: report.html (plots inline) and report.json in the run folder,
    with each model's numbers and status as the registry holds them."""
    resources = resources or StageResources.open(ctx)
    written = write_report(ctx, registry_of(ctx, resources))
    manifest = {"stage": "report", "run_id": ctx.run_id, **written}
    record_stage(ctx, "report", {"html": written["html"], "figures": len(written["figures"])}, resources)
    return manifest
