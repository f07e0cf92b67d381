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
from trading_ml.errors import ConfigError, DataError
from trading_ml.io import read_json
from trading_ml.models import evaluation
from trading_ml.models.catalogue import task_of
from trading_ml.models.dataset import TrainingData
from trading_ml.pipeline.planning import RunRequest, plan_run
from trading_ml.registry import ModelRegistry
from trading_ml.run import RunInfo, find_runs
from trading_ml.verify import Verifier
from trading_ml.models.tasks import TASKS


def deployment_history(settings: Settings, registry: ModelRegistry, model: str) -> dict:
    """Periods (from, to, served, latest, rows) and the pooled metrics of served, latest and baselines."""
    task = task_of(model)
    runs = _deployed_runs(settings, model)
    if len(runs) < 2:
        raise ConfigError(f"history of {model} needs at least 2 runs that trained it; {len(runs)} found under {settings.data_dir}")
    verifier, production, periods, tables, candidates = Verifier(registry, settings), None, [], [], []
    for earlier, later in zip(runs, runs[1:], strict=False):
        production = _production_after(earlier, model, production)
        table, scored = _period(settings, verifier, registry, model, task, earlier, later, production)
        periods.append({"from": earlier.as_of.isoformat(), "to": later.as_of.isoformat(), "rows": len(table),
                        "served": _version(registry, model, production), "latest": _version(registry, model, earlier.run_id)})
        tables.append(table)
        candidates.append(scored)
    table = pd.concat(tables)
    pooled = {name: pd.concat([c[name] for c in candidates]) for name in candidates[0]}
    rows = TASKS[task].labelled(table) & np.logical_and.reduce([frame.notna().all(axis=1).to_numpy() for frame in pooled.values()])
    if not rows.any():
        raise DataError(f"history of {model}: no labelled rows in the periods between runs")
    _, served, others, _ = evaluation.judge(task, table, rows, pooled, settings)
    *_, versus_latest = evaluation.judge(task, table, rows, {"model": pooled["model"], "latest": pooled["latest"]}, settings)
    return {"model": model, "task": task, "metric": TASKS[task].primary, "periods": periods, "rows": int(rows.sum()),
            "served": served, "latest": others.pop("latest"), "baselines": others, "served_minus_latest": versus_latest}


def _deployed_runs(settings: Settings, model: str) -> list[RunInfo]:
    """The newest run of each as-of date that trained the model, oldest first."""
    by_date: dict = {}
    for run in find_runs(settings.data_dir):
        if run.layout.evaluate_manifest.is_file() and model in read_json(run.layout.evaluate_manifest).get("models", {}):
            by_date[run.as_of] = run
    return [by_date[day] for day in sorted(by_date)]


def _production_after(run: RunInfo, model: str, before: str | None) -> str | None:
    """The production run id after this run's deploy (unchanged when it did not deploy or promote)."""
    if not run.layout.deploy_manifest.is_file():
        return before
    decision = read_json(run.layout.deploy_manifest)["decisions"].get(model, {})
    return run.run_id if decision.get("status") == "production" else before


def _period(settings, verifier, registry, model, task, earlier: RunInfo, later: RunInfo, production: str | None):
    """The later run's rows from the earlier as-of on, and each candidate's predictions on them."""
    ctx = plan_run(settings, RunRequest(run_id=later.run_id, continues=True))
    data = TrainingData.load(ctx, ctx.stage_manifest("features"))
    stamps = data.table.index.get_level_values("timestamp")
    inside = np.asarray((stamps >= pd.Timestamp(earlier.as_of, tz="UTC")) & (stamps < pd.Timestamp(later.as_of, tz="UTC")))
    baselines = TASKS[task].baselines(data.table, data.folds, settings)
    latest = _predictions(verifier, registry, model, earlier.run_id, data.table)
    served = baselines[TASKS[task].served_baseline] if production is None else _predictions(verifier, registry, model, production, data.table)
    candidates = {"model": served, "latest": latest, **baselines}
    return data.table[inside], {name: frame[inside] for name, frame in candidates.items()}


def _predictions(verifier: Verifier, registry: ModelRegistry, model: str, run_id: str, table: pd.DataFrame) -> pd.DataFrame:
    record = registry.record_for_run(model, run_id)
    known = table.index.get_level_values("symbol").isin(record.get("symbols") or [])
    return verifier.load(record).predict(table[known]).reindex(table.index)


def _version(registry: ModelRegistry, model: str, run_id: str | None) -> str:
    return f"baseline ({TASKS[task_of(model)].served_baseline})" if run_id is None else registry.record_for_run(model, run_id)["version"]

