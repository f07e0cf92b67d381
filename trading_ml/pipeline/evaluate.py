"""Stage 5, evaluate: every trained model (and every combination of them, the direction ensemble)
out of sample, beside its baselines, with block-bootstrap intervals and its skill over the best
baseline."""

from __future__ import annotations

import pandas as pd

from trading_ml.errors import StageFailed
from trading_ml.io import atomic_write_bytes, read_parquet, write_json, write_parquet
from trading_ml.models import evaluation
from trading_ml.models.catalogue import chosen_models, combinations_of, members_of, model_class, task_of
from trading_ml.models.dataset import TrainingData
from trading_ml.pipeline.resources import StageResources
from trading_ml.pipeline.run_manifest import stage, trained_manifests
from trading_ml.pipeline.train import model_metadata
from trading_ml.registry import ModelRegistry
from trading_ml.run import RunContext

NOT_TRAINED = "its task train_{model} failed or did not finish (see that task's log), or `trading-ml train` stopped before it"


@stage("evaluate", summarize=lambda manifest: {name: m["primary"] for name, m in manifest["models"].items()})
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
    registry = resources.registry(ctx)
    data = TrainingData.load(ctx, ctx.stage_manifest("features"))
    predictions = {name: read_parquet(ctx.layout.resolve(m["predictions"])) for name, m in trained.items()}
    for name in combinations_of(predictions):
        predictions[name] = _register_combination(ctx, registry, name, data, predictions)
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
    return manifest


def planted_signal(ctx: RunContext) -> float | None:
    """The information coefficient the synthetic market planted (None for real data)."""
    if ctx.source != "synthetic":
        return None
    from trading_ml.data.synthetic import configured_strength

    return configured_strength(ctx.settings.source_options("synthetic"))


def _register_combination(ctx: RunContext, registry: ModelRegistry, name: str, data: TrainingData, predictions: dict) -> pd.DataFrame:
    """Register a combination (the direction ensemble) of this run's members; its out-of-sample
    predictions: its rule applied to the members' own."""
    cls, members = model_class(name), {m: registry.record_for_run(m, ctx.run_id) for m in members_of(name)}
    paths = [atomic_write_bytes(ctx.layout.model_file(name, suffix), payload) for suffix, payload in cls.spec_files(list(members)).items()]
    names = sorted({n for record in members.values() for n in record["feature_names"]})
    components = {member: record["version"] for member, record in members.items()}
    registry.publish({**model_metadata(ctx, registry, name, paths, data, names), "components": components})
    combined = cls.combine([predictions[member] for member in members])
    write_parquet(ctx.layout.predictions(name), combined)
    return combined
