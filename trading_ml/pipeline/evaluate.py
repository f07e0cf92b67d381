"""Stage 5, evaluate: every trained model (and every combination of them, the direction ensemble)
out of sample, beside its baselines, with block-bootstrap intervals and its skill over the best
baseline. It reads models' predictions and writes metrics only: no model file, no new version."""

from __future__ import annotations

from trading_ml.errors import StageFailed
from trading_ml.io import read_parquet, write_json
from trading_ml.models import evaluation
from trading_ml.models.catalogue import chosen_models, combinations_of, task_of
from trading_ml.models.dataset import TrainingData
from trading_ml.models.tasks import TASKS
from trading_ml.pipeline.resources import OWN_RESOURCES, StageResources
from trading_ml.pipeline.run_manifest import stage, trained_manifests
from trading_ml.pipeline.workers import SPREAD_FROM_SYMBOLS, Workers, kept_for_run
from trading_ml.run import RunContext

NOT_TRAINED = (
    "its task train_{model} failed or did not finish (see that task's log), or `trading-ml train` stopped before it"
)
NOT_COMBINED = (
    "its members trained but the task combine failed or did not run (see its log; `trading-ml train` runs it)"
)


@stage("evaluate", summarize=lambda manifest: {name: m["primary"] for name, m in manifest["models"].items()})
def evaluate(ctx: RunContext, resources: StageResources = OWN_RESOURCES) -> dict:
    """Every model of the run that trained (and the direction ensemble) on the pooled out-of-sample
    rows, beside its baselines, with block-bootstrap intervals and its skill over the best baseline.
    A model whose training did not finish is named in the report; the rest go on.

    Writes models/evaluation.json (everything, equity curves included) and stores each model's
    summary in its registry record.
    """
    trained = trained_manifests(ctx)
    missing = {name: NOT_TRAINED.format(model=name) for name in chosen_models(ctx.models) if name not in trained}
    if not trained:
        raise StageFailed(
            f"evaluate: no model of run {ctx.run_id} trained, nothing to evaluate "
            f"({'; '.join(f'{n}: {w}' for n, w in missing.items())})"
        )
    missing |= {name: NOT_COMBINED for name in combinations_of(trained) if name not in trained}
    registry = resources.registry(ctx)
    by_task: dict[str, dict[str, str]] = {}
    for name, manifest in trained.items():
        by_task.setdefault(task_of(name), {})[name] = manifest["predictions"]
    calls = [(ctx, task, predictions) for task, predictions in by_task.items()]
    evaluated: dict[str, dict] = {}
    with Workers(ctx.settings.models.cores) as workers:  # at scale, a task's models per worker (one core: here)
        if len(ctx.symbols) >= SPREAD_FROM_SYMBOLS and workers.processes > 1:
            judged = workers.map(evaluate_task_in_worker, calls, min_calls=1)
        else:
            judged = (evaluate_task(*call) for call in calls)
        for results in judged:
            evaluated |= results
    report, models = {}, {}
    for name in trained:
        version = registry.record_for_run(name, ctx.run_id)["version"]
        report[name] = {"version": version, **evaluated[name]}
        models[name] = {"version": version, **evaluation.summary(report[name])}
        accuracy = report[name]["metrics"].get("accuracy", {}).get("value")
        registry.update(name, ctx.run_id, test_metrics=models[name], test_accuracy=accuracy)
    write_json(
        ctx.layout.evaluation_report,
        {
            "run_id": ctx.run_id,
            "folds": next(iter(evaluated.values()))["folds"],  # the same for every model: one table
            "planted_signal": planted_signal(ctx),
            "models": report,
            "not_trained": missing,
        },
    )
    manifest = {
        "stage": "evaluate",
        "run_id": ctx.run_id,
        "report": ctx.layout.relative(ctx.layout.evaluation_report),
        "models": models,
        "not_trained": missing,
    }
    write_json(ctx.layout.evaluate_manifest, manifest)
    return manifest


def evaluate_task(
    ctx: RunContext, task: str, predictions: dict[str, str], data: TrainingData | None = None
) -> dict[str, dict]:
    """Each model of one task (name -> its predictions' path in the run) judged on the run's training
    table (``data``; None: loaded here), the task's baselines made once for all of them."""
    data = data or TrainingData.of_run(ctx)
    baselines = TASKS[task].baselines(data.table, data.folds, ctx.settings)
    return {
        name: evaluation.evaluate(
            task, data.table, data.folds, read_parquet(ctx.layout.resolve(path)), ctx.settings, baselines
        )
        for name, path in predictions.items()
    }


def evaluate_task_in_worker(ctx: RunContext, task: str, predictions: dict[str, str]) -> dict[str, dict]:
    """:func:`evaluate_task` in a worker process, which loads the run's training table (checked) once
    for all the tasks it judges (2 s each at 500 symbols)."""
    data = kept_for_run("training table", ctx.run_id, lambda: TrainingData.of_run(ctx))
    return evaluate_task(ctx, task, predictions, data)


def planted_signal(ctx: RunContext) -> float | None:
    """The information coefficient the synthetic market planted (None for real data)."""
    if ctx.source != "synthetic":
        return None
    from trading_ml.data.synthetic import configured_strength

    return configured_strength(ctx.settings.source_options("synthetic"))
