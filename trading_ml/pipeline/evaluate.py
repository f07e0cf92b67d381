"""Stage 5, evaluate: every trained model (and the direction ensemble) out of sample, beside its
baselines, with block-bootstrap intervals and its skill over the best baseline."""

from __future__ import annotations

import pandas as pd

from trading_ml.errors import StageFailed
from trading_ml.io import write_json, write_parquet
from trading_ml.models import evaluation
from trading_ml.models.catalogue import (
    ENSEMBLE,
    ENSEMBLE_MEMBERS,
    chosen_models,
    task_of,
)
from trading_ml.models.dataset import TrainingData
from trading_ml.models.direction import PROBABILITY_COLUMNS, average_probabilities
from trading_ml.pipeline.resources import StageResources, resources_for
from trading_ml.pipeline.run_manifest import record_stage
from trading_ml.pipeline.train import model_metadata
from trading_ml.registry import ModelRegistry
from trading_ml.run import RunContext, read_stage_manifest

NOT_TRAINED = "its task train_{model} failed or did not finish (see that task's log), or `trading-ml train` stopped before it"


def evaluate(ctx: RunContext, resources: StageResources | None = None) -> dict:
    """Every model of the run that trained (and the direction ensemble) on the pooled out-of-sample
    rows, beside its baselines, with block-bootstrap intervals and its skill over the best baseline.
    A model whose training did not finish is named in the report; the rest go on.

    Writes models/evaluation.json (everything, equity curves included) and stores each model's
    summary in its registry record.
    """
    trained = trained_manifests(ctx)
    missing = {name: NOT_TRAINED.format(model=name) for name in chosen_models(ctx.models) if name not in trained}
    if not trained:
        raise StageFailed(f"evaluate: no model of run {ctx.run_id} trained, nothing to evaluate ({'; '.join(f'{n}: {w}' for n, w in missing.items())})")
    resources = resources_for(ctx, resources)
    record_stage(ctx, "train", {"trained": {name: m["version"] for name, m in trained.items()}, "not_trained": missing}, resources)
    registry = resources.registry(ctx)
    data = TrainingData.load(ctx, ctx.stage_manifest("features"))
    predictions = {name: pd.read_parquet(ctx.layout.resolve(m["predictions"])) for name, m in trained.items()}
    if set(ENSEMBLE_MEMBERS) <= set(predictions):
        predictions[ENSEMBLE] = _register_ensemble(ctx, registry, data, predictions)
    report, models = {}, {}
    for name, values in predictions.items():
        version = registry.record_for_run(name, ctx.run_id)["version"]
        report[name] = {"version": version, **evaluation.evaluate(task_of(name), data.table, data.folds, values, ctx.settings)}
        models[name] = {"version": version, **evaluation.summary(report[name])}
        accuracy = report[name]["metrics"].get("accuracy", {}).get("value")
        registry.update(name, ctx.run_id, test_metrics=models[name], test_accuracy=accuracy)
    folds = [split.to_dict() for split in data.folds]
    write_json(ctx.layout.evaluation_report, {"run_id": ctx.run_id, "folds": folds, "planted_signal": planted_signal(ctx),
                                              "models": report, "not_trained": missing})
    manifest = {"stage": "evaluate", "run_id": ctx.run_id, "report": ctx.layout.relative(ctx.layout.evaluation_report),
                "models": models, "not_trained": missing}
    write_json(ctx.layout.evaluate_manifest, manifest)
    record_stage(ctx, "evaluate", {name: m["primary"] for name, m in models.items()}, resources)
    return manifest


def trained_manifests(ctx: RunContext) -> dict[str, dict]:
    """Model name -> train manifest, for the run's models whose training finished."""
    paths = {name: ctx.layout.trained_manifest(name) for name in chosen_models(ctx.models)}
    return {name: read_stage_manifest(path) for name, path in paths.items() if path.is_file()}


def planted_signal(ctx: RunContext) -> float | None:
    """The information coefficient the synthetic market planted (None for real data)."""
    if ctx.source != "synthetic":
        return None
    from trading_ml.data.synthetic import configured_strength

    return configured_strength(ctx.settings.source_options("synthetic"))


def _register_ensemble(ctx: RunContext, registry: ModelRegistry, data: TrainingData, predictions: dict) -> pd.DataFrame:
    """Register the 'direction' ensemble of this run's XGBoost and LSTM; its out-of-sample predictions."""
    members = {name: registry.record_for_run(name, ctx.run_id) for name in ENSEMBLE_MEMBERS}
    spec = {"members": list(ENSEMBLE_MEMBERS), "rule": "mean of member probabilities", "run_id": ctx.run_id}
    path = write_json(ctx.layout.model_file(ENSEMBLE, ".json"), spec)
    names = sorted({n for record in members.values() for n in record["feature_names"]})
    components = {name: record["version"] for name, record in members.items()}
    registry.publish({**model_metadata(ctx, registry, ENSEMBLE, [path], data, names), "components": components})
    averaged = average_probabilities([predictions[name][PROBABILITY_COLUMNS] for name in ENSEMBLE_MEMBERS])
    write_parquet(ctx.layout.predictions(ENSEMBLE), averaged)
    return averaged
