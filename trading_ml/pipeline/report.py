"""Stage 7, report: the run's HTML performance report (plots inline) and its JSON twin."""

from __future__ import annotations

from trading_ml.pipeline.resources import StageResources, resources_for
from trading_ml.pipeline.run_manifest import record_stage
from trading_ml.report import write_report
from trading_ml.run import RunContext


def report(ctx: RunContext, resources: StageResources | None = None) -> dict:
    """The run's performance report: report.html (plots inline) and report.json in the run folder,
    with each model's numbers and status as the registry holds them."""
    resources = resources_for(ctx, resources)
    written = write_report(ctx, resources.registry(ctx))
    manifest = {"stage": "report", "run_id": ctx.run_id, **written}
    record_stage(ctx, "report", {"html": written["html"], "figures": len(written["figures"])}, resources)
    return manifest
