"""The stage functions both drivers (CLI and Airflow DAG) call.

A stage reads its inputs from files in the run's folder and the store, writes its outputs, and
returns a small JSON-able manifest (paths relative to the run folder, row counts, sha256). Re-running
a stage of the same run rewrites the same files and upserts the same documents.

The data stages (plan, ingest, validate, features) live in :mod:`.data_stages`; the model stages (train,
evaluate, deploy, report) in :mod:`.model_stages`, which imports torch, xgboost and arch and is loaded on first
use: an Airflow ingestion task then starts in about a second instead of five.
"""

from trading_ml.pipeline.data_stages import (
    MODELS,
    StageResources,
    as_of_for_run,
    build_features,
    ingest,
    ingest_all,
    plan_run,
    record_stage,
    summarize_ingest,
    validate,
)

MODEL_STAGES = ("train", "evaluate", "deploy", "report")

__all__ = [
    "MODELS", "StageResources", "as_of_for_run", "build_features", "ingest", "ingest_all", "plan_run", "record_stage",
    "summarize_ingest", "validate", *MODEL_STAGES,
]


def __getattr__(name: str):
    """The model stages, imported on first use (PEP 562)."""
    if name in MODEL_STAGES:
        from trading_ml.pipeline import model_stages

        return getattr(model_stages, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
