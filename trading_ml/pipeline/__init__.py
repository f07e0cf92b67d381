"""The pipeline's stages, one module each, in run order: :mod:`.ingest`, :mod:`.validate`,
:mod:`.features`, :mod:`.train`, :mod:`.evaluate`, :mod:`.deploy`, :mod:`.report`.

Both drivers (the CLI and the Airflow DAG) plan a run with :func:`.planning.plan_run` and call each
stage as ``stage(ctx, resources)``: a stage finds its inputs through the run (the manifests the
stages before it left in the run folder, :meth:`trading_ml.run.RunContext.stage_manifest`), writes
its outputs there, records itself in the run manifest (:mod:`.run_manifest`) and returns a small
JSON-able manifest (paths relative to the run folder, row counts, sha256, metrics). Re-running a
stage of the same run rewrites the same files and upserts the same documents.

The data stages import pandas and the exchange calendars only; the model stages (train, evaluate,
deploy, report) import torch, xgboost and arch, so a driver imports those when it runs them.
"""

from collections.abc import Sequence

STAGES = ("ingest", "validate", "features", "train", "evaluate", "deploy", "report")


def before_stage(stage: str, stages: Sequence[str]) -> None:
    """What a process that runs ``stages`` in turn (the CLI's run) starts as ``stage`` begins: while
    evaluate runs, deploy's verifier helper (:func:`trading_ml.verify.start_helper`) imports the model
    libraries beside it (about 5 s on one core) instead of before deploy can verify anything."""
    if stage == "evaluate" and "deploy" in stages:
        from trading_ml.verify import start_helper

        start_helper()
