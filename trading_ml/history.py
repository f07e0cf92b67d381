"""The deployment history: what production actually served, judged out of sample over a series of runs.

For runs R1 .. Rn of one model (a backfill of quarters, say) in as-of order, the days from Ri's as-of
up to R(i+1)'s were served by whatever was in production after Ri's deploy (the baseline before the
first promotion). Each such period is scored on R(i+1)'s training table, which holds those days with
their labels and which none of the models judged there was trained on (each was trained on data
before its own as-of). Beside what was served: always promoting the latest run's model (Ri's), and
the task's baselines, on the same rows; every figure with its block-bootstrap interval over dates.
This says whether the deploy gate earns its keep.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_ml.config import Settings
from trading_ml.errors import ConfigError, DataError, one_line
from trading_ml.io import read_json
from trading_ml.models import evaluation
from trading_ml.models.catalogue import task_of
from trading_ml.models.dataset import TrainingData
from trading_ml.models.tasks import TASKS
from trading_ml.pipeline.planning import RunRequest, plan_run
from trading_ml.registry import ModelRegistry
from trading_ml.run import RunInfo, find_runs
from trading_ml.verify import Verifier


def deployment_history(settings: Settings, registry: ModelRegistry, model: str) -> dict:
    """Periods (from, to, served, latest, rows scored, or why one was skipped) and the pooled metrics of
    served, latest and the baselines over the rows every one of them predicted."""
    task = task_of(model)
    runs = _deployed_runs(settings, model)
    if len(runs) < 2:
        raise ConfigError(
            f"history of {model} needs at least 2 runs that trained it; {len(runs)} found under {settings.data_dir}"
        )
    verifier, production, periods, tables, candidates = Verifier(registry, settings), None, [], [], []
    for earlier, later in zip(runs, runs[1:], strict=False):
        production = _production_after(earlier, model, production)
        gate = _gate_baseline(earlier, model, task)
        period = {
            "from": earlier.as_of.isoformat(),
            "to": later.as_of.isoformat(),
            "latest": _version(registry, model, earlier.run_id),
            "served": _version(registry, model, production) if production else f"baseline ({gate})",
        }
        try:
            table, scored = _period(settings, verifier, registry, model, task, earlier, later, production, gate)
        except DataError as error:
            periods.append({**period, "rows": 0, "skipped": one_line(error)})
            continue
        rows = TASKS[task].labelled(table) & np.logical_and.reduce(
            [frame.notna().all(axis=1).to_numpy() for frame in scored.values()]
        )
        periods.append(
            {
                **period,
                "rows": int(rows.sum()),
                **({} if rows.any() else {"skipped": "no labelled row with every prediction"}),
            }
        )
        tables.append(table[rows])
        candidates.append({name: frame[rows] for name, frame in scored.items()})
    if not any(p["rows"] for p in periods):
        raise DataError(
            f"history of {model}: no period could be scored: "
            + "; ".join(f"{p['from']}..{p['to']}: {p['skipped']}" for p in periods)
        )
    table = pd.concat(tables)
    pooled = {name: pd.concat([c[name] for c in candidates]) for name in candidates[0]}
    rows = np.ones(len(table), dtype=bool)
    _, served, others, _ = evaluation.judge(task, table, rows, pooled, settings)
    *_, advantage = evaluation.judge(
        task, table, rows, {"model": pooled["model"], "latest": pooled["latest"]}, settings
    )
    return {
        "model": model,
        "task": task,
        "metric": TASKS[task].primary,
        "lower_is_better": not TASKS[task].higher_is_better,
        "periods": periods,
        "rows": int(rows.sum()),
        "served": served,
        "latest": others.pop("latest"),
        "baselines": others,
        "served_advantage": advantage,
    }


def _deployed_runs(settings: Settings, model: str) -> list[RunInfo]:
    """The newest run of each as-of date that trained the model, oldest first."""
    by_date: dict = {}
    for run in find_runs(settings.data_dir):
        if run.layout.evaluate_manifest.is_file() and model in read_json(run.layout.evaluate_manifest).get(
            "models", {}
        ):
            by_date[run.as_of] = run
    return [by_date[day] for day in sorted(by_date)]


def _production_after(run: RunInfo, model: str, before: str | None) -> str | None:
    """The production run id after this run's deploy (unchanged when it did not deploy or promote)."""
    if not run.layout.deploy_manifest.is_file():
        return before
    decision = read_json(run.layout.deploy_manifest)["decisions"].get(model, {})
    return run.run_id if decision.get("status") == "production" else before


def _gate_baseline(run: RunInfo, model: str, task: str) -> str:
    """The baseline the run's gate judged the model against (what serving without a promoted version
    means for it); the task's served baseline when the run's evaluation does not say."""
    result = (
        read_json(run.layout.evaluation_report)["models"].get(model, {})
        if run.layout.evaluation_report.is_file()
        else {}
    )
    return (result.get("skill") or {}).get("baseline") or TASKS[task].served_baseline


def _period(
    settings, verifier, registry, model, task, earlier: RunInfo, later: RunInfo, production: str | None, gate: str
):
    """The later run's rows from the earlier as-of on, and each candidate's predictions on them (before
    any promotion, ``gate``'s baseline stands for what was served); a
    DataError naming the version that cannot predict them (a feature its table lacks, say)."""
    ctx = plan_run(settings, RunRequest(run_id=later.run_id, continues=True))
    data = TrainingData.load(ctx, ctx.stage_manifest("features"))
    stamps = data.table.index.get_level_values("timestamp")
    inside = np.asarray(
        (stamps >= pd.Timestamp(earlier.as_of, tz="UTC")) & (stamps < pd.Timestamp(later.as_of, tz="UTC"))
    )
    baselines = TASKS[task].baselines(data.table, data.folds, settings)
    latest = _predictions(verifier, registry, model, earlier.run_id, data.table)
    served = (
        baselines.get(gate, baselines[TASKS[task].served_baseline])
        if production is None
        else _predictions(verifier, registry, model, production, data.table)
    )
    candidates = {"model": served, "latest": latest, **baselines}
    return data.table[inside], {name: frame[inside] for name, frame in candidates.items()}


def _predictions(
    verifier: Verifier, registry: ModelRegistry, model: str, run_id: str, table: pd.DataFrame
) -> pd.DataFrame:
    record = registry.record_for_run(model, run_id)
    known = table.index.get_level_values("symbol").isin(record.get("symbols") or [])
    try:
        return verifier.load(record).predict(table[known]).reindex(table.index)
    except DataError as error:
        raise DataError(f"{model} {record['version']} cannot predict this period's rows: {error}") from error


def _version(registry: ModelRegistry, model: str, run_id: str) -> str:
    return registry.record_for_run(model, run_id)["version"]
