"""The model stages: train each model, evaluate them beside their baselines, deploy the winners.

This module imports torch, xgboost and arch; :mod:`trading_ml.pipeline` loads it on first use, so
the data stages (an Airflow ingestion task) start without them.
"""

from __future__ import annotations

import datetime as dt
import logging

import pandas as pd

from trading_ml.config import RunContext
from trading_ml.errors import DataError
from trading_ml.io import read_json, write_json, write_parquet
from trading_ml.models import evaluation as judge
from trading_ml.models.dataset import TrainingData
from trading_ml.models.direction import average_probabilities
from trading_ml.models.volatility import GarchVolatility
from trading_ml.pipeline.data_stages import FEATURES_MANIFEST, MODELS, VALIDATE_MANIFEST, StageResources, record_stage
from trading_ml.registry import ENSEMBLE, MODEL_CLASSES, ModelRegistry, artifacts, config_hash
from trading_ml.report import write_report

log = logging.getLogger(__name__)

EVALUATION_REPORT = "models/evaluation.json"
EVALUATE_MANIFEST = "models/evaluated.json"
DEPLOY_MANIFEST = "models/deployed.json"


def trained_manifest_path(model_name: str) -> str:
    return f"models/{model_name}.trained.json"


def train(ctx: RunContext, model_name: str, dataset: dict, resources: StageResources | None = None) -> dict:
    """Fit one model on the run's training table, save it under models/ and register a candidate.

    ``dataset`` is the features stage's manifest. Returns the artifact paths, sha256, version and
    what training found (best iteration, epochs), never the model itself.
    """
    if model_name not in MODELS:
        raise DataError(f"unknown model {model_name!r}; train one of {', '.join(MODELS)}")
    resources = resources or StageResources.open(ctx)
    data = TrainingData.load(ctx, dataset)
    model = _fit(model_name, data, ctx)
    registry = ModelRegistry(resources.store)
    version = registry.version_for_run(model_name, ctx.run_id)
    stem = ctx.run_root / "models" / f"{model_name}_v{version}"
    files = model.save(stem)
    predictions = write_parquet(stem.with_name(stem.name + ".predictions.parquet"), model.predict(data.table))
    record = registry.register(_metadata(ctx, model_name, version, stem, files, data, model.feature_names))
    manifest = {
        "stage": "train",
        "run_id": ctx.run_id,
        "model_name": model_name,
        "version": version,
        "artifacts": record["artifacts"],
        "predictions": str(predictions.relative_to(ctx.run_root)),
        "training_samples": record["training_samples"],
        "dataset": FEATURES_MANIFEST,
    }
    write_json(ctx.run_root / trained_manifest_path(model_name), manifest)
    return manifest


def _fit(model_name: str, data: TrainingData, ctx: RunContext):
    settings = ctx.settings.models
    if model_name == "volatility_garch":
        return GarchVolatility.fit(data.table, data.split, settings, ctx.settings.features.volatility_window)
    return MODEL_CLASSES[model_name].fit(data.table, data.split, data.feature_names, settings)


def _metadata(ctx: RunContext, name: str, version: str, stem, files, data: TrainingData, feature_names: list[str]) -> dict:
    """The plan's metadata (model_name ... timeframe) plus what makes the model traceable."""
    target = {"direction": "target_direction", "volatility": "target_volatility", "regime": "target_regime"}[name.split("_")[0]]
    return {
        "model_name": name,
        "version": version,
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
        "stem": str(stem),
        "artifacts": artifacts(files),
        "status": "candidate",
    }


def evaluate(ctx: RunContext, trained: list[dict], resources: StageResources | None = None) -> dict:
    """Test-segment metrics of every trained model (and the direction ensemble) beside baselines.

    Writes models/evaluation.json (everything, equity curves included) and stores each model's
    summary in its registry record.
    """
    resources = resources or StageResources.open(ctx)
    registry = ModelRegistry(resources.store)
    data = TrainingData.load(ctx, read_json(ctx.run_root / FEATURES_MANIFEST))
    predictions = {m["model_name"]: (m["version"], pd.read_parquet(ctx.run_root / m["predictions"])) for m in trained}
    if {"direction_xgboost", "direction_lstm"} <= set(predictions):
        predictions[ENSEMBLE] = _register_ensemble(ctx, registry, data, predictions)
    report, models = {}, {}
    for name, (version, values) in predictions.items():
        report[name] = {"version": version, **judge.evaluate(name, data.table, data.split, values, ctx.settings)}
        models[name] = {"version": version, **judge.summary(report[name])}
        primary = report[name]["primary"]
        test_accuracy = primary["value"] if "accuracy" in primary["metric"] else None
        registry.update(name, version, test_metrics=models[name], test_accuracy=test_accuracy)
    write_json(ctx.run_root / EVALUATION_REPORT, {"run_id": ctx.run_id, "split": data.split.to_dict(), "models": report})
    manifest = {"stage": "evaluate", "run_id": ctx.run_id, "report": EVALUATION_REPORT, "models": models}
    write_json(ctx.run_root / EVALUATE_MANIFEST, manifest)
    record_stage(ctx, "evaluate", {name: m["primary"] for name, m in models.items()}, resources)
    return manifest


def _register_ensemble(ctx: RunContext, registry: ModelRegistry, data: TrainingData, predictions: dict) -> tuple[str, pd.DataFrame]:
    """Register the 'direction' ensemble of this run's XGBoost and LSTM versions; its predictions."""
    components = {name: predictions[name][0] for name in ("direction_xgboost", "direction_lstm")}
    version = registry.version_for_run(ENSEMBLE, ctx.run_id)
    stem = ctx.run_root / "models" / f"{ENSEMBLE}_v{version}"
    path = write_json(stem.with_name(stem.name + ".json"), {"components": components, "rule": "mean of member probabilities"})
    names = sorted({n for name in components for n in registry.record(name, components[name])["feature_names"]})
    registry.register({**_metadata(ctx, ENSEMBLE, version, stem, [path], data, names), "components": components})
    return version, average_probabilities([predictions[name][1] for name in components])


def deploy(ctx: RunContext, evaluated: dict, resources: StageResources | None = None) -> dict:
    """Promote each candidate that beats its baselines on test and does no worse there than the
    current production version; otherwise it stays a candidate. Every decision and its reason is
    logged and stored in the model's registry record."""
    resources = resources or StageResources.open(ctx)
    registry = ModelRegistry(resources.store)
    data = TrainingData.load(ctx, read_json(ctx.run_root / FEATURES_MANIFEST))
    decisions = {}
    for name, summary in evaluated["models"].items():
        promote, reason = _deploy_decision(ctx, registry, data, name, summary)
        if promote:
            record = registry.promote(name, summary["version"], reason)
        else:
            record = registry.update(name, summary["version"], deploy_decision=reason)
        log.info("deploy %s %s: %s", name, summary["version"], reason)
        decisions[name] = {"version": summary["version"], "status": record["status"], "reason": reason}
    manifest = {"stage": "deploy", "run_id": ctx.run_id, "decisions": decisions, "store": resources.store_choice.to_dict()}
    write_json(ctx.run_root / DEPLOY_MANIFEST, manifest)
    record_stage(ctx, "deploy", {n: d["status"] for n, d in decisions.items()}, resources)
    return manifest


def _deploy_decision(ctx: RunContext, registry: ModelRegistry, data: TrainingData, name: str, summary: dict) -> tuple[bool, str]:
    primary = summary["primary"]
    if not summary["beats_baselines"]:
        return False, f"stays candidate: test {primary['metric']} {primary['value']:.5g} does not beat its baselines"
    current = [r for r in registry.records(name) if r["status"] == "production"]
    if not current or current[-1]["version"] == summary["version"]:
        return True, f"promoted: beats its baselines (test {primary['metric']} {primary['value']:.5g}); no other production version"
    incumbent = current[-1]
    seen_until = incumbent.get("split", {}).get("test_start")  # the incumbent trained and early-stopped on data before this
    if seen_until and pd.Timestamp(seen_until) > data.split.test_start:
        return False, (f"stays candidate: production {incumbent['version']} was fitted on data up to {seen_until[:10]}, inside this "
                       f"run's test segment (from {data.split.test_start.date()}); an older run does not replace a newer model")
    try:
        model = registry.load_model(name, incumbent["version"])
        theirs = judge.evaluate(name, data.table, data.split, model.predict(data.table), ctx.settings)["primary"]["value"]
    except DataError as error:
        return True, f"promoted on baselines: production {incumbent['version']} cannot be scored on this run's data ({error})"
    better = primary["value"] >= theirs if primary["higher_is_better"] else primary["value"] <= theirs
    verdict = f"test {primary['metric']} {primary['value']:.5g} vs production {incumbent['version']} {theirs:.5g} on the same segment"
    return (True, f"promoted: {verdict}") if better else (False, f"stays candidate: worse than production: {verdict}")


def report(ctx: RunContext, resources: StageResources | None = None) -> dict:
    """The run's performance report: report.html (plots inline) and report.json under the run root,
    with each model's numbers and status as the registry holds them."""
    resources = resources or StageResources.open(ctx)
    paths = {"validate": VALIDATE_MANIFEST, "features": FEATURES_MANIFEST, "evaluation": EVALUATION_REPORT}
    written = write_report(ctx, ModelRegistry(resources.store), paths)
    manifest = {"stage": "report", "run_id": ctx.run_id, **written}
    record_stage(ctx, "report", {"html": written["html"], "figures": len(written["figures"])}, resources)
    return manifest
