"""The run manifest (run_manifest.json and the store's pipeline_runs document): each stage's summary
and when it finished."""

from __future__ import annotations

import datetime as dt

from trading_ml.io import read_json, write_json
from trading_ml.pipeline.resources import StageResources
from trading_ml.run import RunContext


def recorded_stages(ctx: RunContext) -> dict:
    """The stages run_manifest.json records as finished for this run."""
    path = ctx.layout.run_manifest
    return read_json(path).get("stages", {}) if path.exists() else {}


def record_stage(ctx: RunContext, stage: str, summary: dict, resources: StageResources) -> dict:
    """Update the run's run_manifest.json and the store's pipeline_runs document."""
    path = ctx.layout.run_manifest
    run = read_json(path) if path.exists() else {"run_id": ctx.run_id, "stages": {}}
    run.update(ctx.to_dict())
    run["calendars"] = {symbol: ctx.settings.calendar_source(symbol) for symbol in ctx.symbols}
    run["stages"][stage] = {**summary, "finished_at": dt.datetime.now(dt.UTC).isoformat()}
    run["store"] = resources.store_choice.to_dict()
    write_json(path, run)
    resources.store.upsert_many("pipeline_runs", [run])
    return run
