"""The pipeline's stages in order, as a driver runs them, for tests that need a run up to a stage."""

from __future__ import annotations

import dataclasses
import json

from tests.conftest import AS_OF, SMALL_UNIVERSE
from trading_ml.models.catalogue import chosen_models
from trading_ml.pipeline import STAGES
from trading_ml.pipeline.deploy import deploy
from trading_ml.pipeline.evaluate import evaluate
from trading_ml.pipeline.features import build_features
from trading_ml.pipeline.ingest import ingest
from trading_ml.pipeline.report import report
from trading_ml.pipeline.resources import StageResources
from trading_ml.pipeline.train import combine, train
from trading_ml.pipeline.validate import validate
from trading_ml.run import RunContext


def run_through(ctx: RunContext, resources: StageResources, last: str = "deploy") -> dict:
    """Stage name -> what it returned, for ingest up to ``last``; train returns one manifest per model,
    the combinations (the direction ensemble) after the trained ones."""
    steps = {
        "ingest": lambda: ingest(ctx, resources=resources),
        "validate": lambda: validate(ctx, resources=resources),
        "features": lambda: build_features(ctx, resources=resources),
        "train": lambda: [
            *(train(ctx, name, resources=resources) for name in chosen_models(ctx.models)),
            *combine(ctx, resources)["combined"].values(),
        ],
        "evaluate": lambda: evaluate(ctx, resources=resources),
        "deploy": lambda: deploy(ctx, resources=resources),
        "report": lambda: report(ctx, resources=resources),
    }
    return {stage: steps[stage]() for stage in STAGES[: STAGES.index(last) + 1]}


def deploy_as_if_evaluated(ctx: RunContext, resources: StageResources, models: dict) -> dict:
    """deploy() reading an evaluate manifest with these model summaries (a gate test's crafted
    evidence); the run's own manifest is put back afterwards."""
    path = ctx.layout.evaluate_manifest
    original = path.read_bytes()
    path.write_text(json.dumps({**json.loads(original), "models": models}))
    try:
        return deploy(ctx, resources=resources)
    finally:
        path.write_bytes(original)


def context(settings, symbols=SMALL_UNIVERSE, timeframes=("1d", "1h"), as_of=AS_OF, run_id=None):
    """A synthetic run of these symbols and timeframes (a new run unless run_id names one)."""
    return RunContext.create(settings, as_of, list(symbols), list(timeframes), "synthetic", run_id)


def with_faults(settings, faults):
    """Settings whose synthetic market plants these faults (symbol -> fault names)."""
    sources = {**settings.sources, "synthetic": {**settings.sources["synthetic"], "faults": faults}}
    return dataclasses.replace(settings, sources=sources)


def run_both(ctx):
    """Ingest and validate the whole run: (ingest manifests, validate manifest, resources)."""
    resources = StageResources.open(ctx)
    manifests = ingest(ctx, resources=resources)
    return manifests, validate(ctx, resources=resources), resources


def run_to_features(ctx):
    """Ingest, validate and features: (validate manifest, features manifest, resources)."""
    _, validated, resources = run_both(ctx)
    return validated, build_features(ctx, resources=resources), resources


def market_trial(
    settings,
    data_dir,
    market: str,
    strength: float,
    seed: int,
    models: list[str],
    symbols: list[str],
    as_of: str = AS_OF,
) -> dict:
    """One whole run (1d) of these models on a synthetic market of this kind, signal strength and
    seed, in its own folder and fallback store: model -> (skill over the best baseline, deploy status)."""
    synthetic = {**settings.sources.get("synthetic", {}), "seed": seed, "signal_strength": strength, "market": market}
    settings = dataclasses.replace(settings, data_dir=data_dir, sources={**settings.sources, "synthetic": synthetic})
    ctx = RunContext.create(settings, as_of, symbols, ["1d"], "synthetic", models=chosen_models(models))
    with StageResources.open(ctx) as resources:
        done = run_through(ctx, resources, "deploy")
    evaluated, deployed = done["evaluate"]["models"], done["deploy"]["decisions"]
    return {name: {"skill": evaluated[name]["skill"], "status": deployed[name]["status"]} for name in evaluated}
