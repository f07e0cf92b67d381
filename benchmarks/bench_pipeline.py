"""End-to-end wall time per stage and per model, and peak memory; prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_pipeline.py [--as-of YYYY-MM-DD] [--timeframes 1d,1h] [--folds 4,1]

The 26-symbol synthetic universe into TinyDB: ingest, validate, features, each model's training,
evaluate, deploy; once per fold count, so walk-forward (4 folds) shows beside a single split (1).
The plan budgets 45 minutes end to end; issue 16 keeps the README's run within 3x of 41 s.
"""

from __future__ import annotations

import argparse
import dataclasses
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import make_settings  # noqa: E402
from trading_ml.models import TRAINED_MODELS  # noqa: E402
from trading_ml.pipeline.features import build_features  # noqa: E402
from trading_ml.pipeline.ingest import ingest  # noqa: E402
from trading_ml.pipeline.resources import StageResources  # noqa: E402
from trading_ml.pipeline.validate import validate  # noqa: E402
from trading_ml.run import RunContext  # noqa: E402


def timed(label: str, action, times: dict):
    start = time.perf_counter()
    result = action()
    times[label] = time.perf_counter() - start
    print(f"  {label:<22} {times[label]:7.2f}s")
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--as-of", default="2026-11-20")
    parser.add_argument("--timeframes", default="1d")
    parser.add_argument("--folds", default="4,1", help="walk-forward fold counts to compare")
    args = parser.parse_args()
    totals = {}
    for folds in (int(f) for f in args.folds.split(",")):
        totals[folds] = run_once(args, folds)
    print("  ".join(f"{folds} fold(s): {total:.1f}s" for folds, total in totals.items()))
    print(f"peak memory (max RSS) {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


def run_once(args, folds: int) -> float:
    times: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as folder:
        settings = make_settings(Path(folder))
        settings = dataclasses.replace(settings, models=dataclasses.replace(settings.models, folds=folds))
        ctx = RunContext.create(settings, args.as_of, None, args.timeframes.split(","), "synthetic")
        print(f"== 26 symbols, {args.timeframes}, as of {args.as_of}, TinyDB, {folds} walk-forward fold(s) ==")
        resources = StageResources.open(ctx)
        timed("ingest", lambda: ingest(ctx, resources=resources), times)
        timed("validate", lambda: validate(ctx, resources), times)
        timed("features", lambda: build_features(ctx, resources), times)
        from trading_ml.pipeline.deploy import deploy  # the model stages load torch: imported when training starts,
        from trading_ml.pipeline.evaluate import evaluate  # as in a training task (the first run's first model pays it)
        from trading_ml.pipeline.train import combine, train

        for name in TRAINED_MODELS:
            timed(f"train {name}", lambda n=name: train(ctx, n, resources), times)
        timed("combine", lambda: combine(ctx, resources), times)
        timed("evaluate", lambda: evaluate(ctx, resources), times)
        timed("deploy", lambda: deploy(ctx, resources), times)
    print(
        f"end to end {sum(times.values()):.1f}s (training "
        f"{sum(v for k, v in times.items() if k.startswith('train')):.1f}s)"
    )
    return sum(times.values())


if __name__ == "__main__":
    main()
