"""Stage 7, report: the run's HTML performance report (plots inline) and its JSON twin."""

from __future__ import annotations

from trading_ml.pipeline.resources import OWN_RESOURCES, StageResources
from trading_ml.pipeline.run_manifest import stage
from trading_ml.report import write_report
from trading_ml.run import RunContext


@stage("report", summarize=lambda manifest: {"html": manifest["html"], "figures": len(manifest["figures"])})
def report(ctx: RunContext, resources: StageResources = OWN_RESOURCES) -> dict:
    """The run's performance report: report.html (plots inline) and report.json in the run folder,
    with each model's numbers and status as the registry holds them."""
    written = write_report(ctx, resources.registry(ctx))
    return {"stage": "report", "run_id": ctx.run_id, **written}
