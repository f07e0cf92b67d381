"""The run manifest (run_manifest.json and the store's pipeline_runs document): each stage's summary
and when it finished, and the envelope every stage runs in (:func:`stage`).

Each stage records only itself. The two stages that fan out, one task per item (ingest: a pair each;
train: a model each), are recorded from their items' own manifests (``raw/*.manifest.json``,
``models/*.trained.json``) whenever the run manifest is written, so tasks of one stage running side
by side never lose each other's record.
"""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Callable
from typing import Any

from trading_ml.io import read_json, write_json
from trading_ml.pipeline.memory import release_freed_memory
from trading_ml.pipeline.resources import StageResources
from trading_ml.run import RunContext, pair_name, read_stage_manifest


def record_stage(ctx: RunContext, stage: str, summary: dict | None, resources: StageResources) -> dict:
    """Update the run's run_manifest.json and the store's pipeline_runs document with this stage's
    summary (None for a fan-out stage: its items' manifests say it) and what the fan-out stages'
    items say now."""
    path = ctx.layout.run_manifest
    run: dict[str, Any] = read_json(path) if path.exists() else {"run_id": ctx.run_id, "stages": {}}
    run.update(ctx.to_dict())
    run["calendars"] = {symbol: ctx.settings.calendar_source(symbol) for symbol in ctx.symbols}
    now = dt.datetime.now(dt.UTC).isoformat()
    if summary is not None:
        run["stages"][stage] = {**summary, "finished_at": now}
    for name, summarize in FANNED_OUT.items():
        items = summarize(ctx)
        if items is not None:
            finished = now if name == stage else run["stages"].get(name, {}).get("finished_at", now)
            run["stages"][name] = {**items, "finished_at": finished}
    run["store"] = resources.store_choice.to_dict()
    write_json(path, run)
    resources.store.upsert_many("pipeline_runs", [run])
    return run


def summarize_ingest(manifests: list[dict]) -> dict:
    ok = [m for m in manifests if m.get("status") == "ok"]
    return {
        "pairs": len(manifests),
        "ok": len(ok),
        "failed": {pair_name(m["symbol"], m["timeframe"]): m["error"] for m in manifests if m.get("status") != "ok"},
        "rows": sum(m["rows"] for m in ok),
        "stores": sorted({m["store"]["kind"] for m in ok}),
    }


def _ingested(ctx: RunContext) -> dict | None:
    manifests = ctx.ingest_manifests()
    return summarize_ingest(manifests) if manifests else None


def trained_manifests(ctx: RunContext) -> dict[str, dict]:
    """Model name -> train manifest, for the run's models whose training finished and the
    combinations of them that were built."""
    from trading_ml.models.catalogue import chosen_models, combinations_of

    names = chosen_models(ctx.models)
    paths = {name: ctx.layout.trained_manifest(name) for name in [*names, *combinations_of(names)]}
    return {name: read_stage_manifest(path) for name, path in paths.items() if path.is_file()}


def _trained(ctx: RunContext) -> dict | None:
    trained = trained_manifests(ctx)
    return {"trained": {name: m["version"] for name, m in trained.items()}} if trained else None


FANNED_OUT: dict[str, Callable[[RunContext], dict | None]] = {"ingest": _ingested, "train": _trained}


def stage(
    name: str,
    summarize: Callable[[dict], dict | None] = lambda manifest: None,
    check: Callable[[RunContext, dict], None] = lambda ctx, manifest: None,
):
    """The envelope every stage shares, written once: its resources (the caller's, else opened for
    the stage and closed after it), the stage's work, its record in the run manifest
    (``summarize(manifest)``; None for a fan-out stage), then ``check``, which may raise
    StageFailed once everything the stage wrote is recorded. What the stage freed is handed back to
    the system as it ends (:mod:`trading_ml.pipeline.memory`). The stage is called as it is written,
    ``stage(ctx, ..., resources=None)``."""

    def wrap(work: Callable[..., dict]) -> Callable[..., dict]:
        signature = inspect.signature(work)

        @functools.wraps(work)
        def run(*args, **kwargs) -> dict:
            bound = signature.bind(*args, **kwargs)
            ctx, given = bound.arguments["ctx"], bound.arguments.get("resources")
            owned = given is None
            resources = StageResources.open(ctx) if given is None else given
            bound.arguments["resources"] = resources
            try:
                manifest = work(*bound.args, **bound.kwargs)
                record_stage(ctx, name, summarize(manifest), resources)
            finally:
                if owned:
                    resources.close()
                release_freed_memory()  # the next stage in this process starts from what is live, not this one's peak
            check(ctx, manifest)
            return manifest

        return run

    return wrap
