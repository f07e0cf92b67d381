"""Feature-stage wall time and peak memory; prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_features.py [--as-of YYYY-MM-DD]

For the 26-symbol synthetic universe, 1d over 5 years and 1h over 6 months: the pure feature
build (indicators, market-wide features, targets; cold = first call in the process, with the
exchange calendars still to build) and the whole stage (reading validated CSVs,
writing per-symbol CSVs and the parquet training table). Peak memory is the process's max RSS
and, separately, the Python heap peak that tracemalloc sees during the daily build.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import make_settings  # noqa: E402
from trading_ml.features.build import build_timeframe  # noqa: E402
from trading_ml.features.indicators import symbol_features  # noqa: E402
from trading_ml.pipeline.features import build_features  # noqa: E402
from trading_ml.pipeline.ingest import ingest  # noqa: E402
from trading_ml.pipeline.resources import StageResources  # noqa: E402
from trading_ml.pipeline.validate import validate  # noqa: E402
from trading_ml.run import RunContext  # noqa: E402
from trading_ml.sources import make_source  # noqa: E402


def timed(action):
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def fetch(ctx: RunContext, timeframe: str) -> dict:
    source = make_source("synthetic", ctx.settings)
    start, end = ctx.window(timeframe)
    return {s: source.fetch(ctx.settings.instrument(s), timeframe, start, end) for s in ctx.symbols}


def bench_build(ctx: RunContext, timeframe: str) -> None:
    bars = fetch(ctx, timeframe)
    instruments = {s: ctx.settings.instrument(s) for s in bars}
    _, cold = timed(lambda: build_timeframe(bars, instruments, timeframe, ctx.settings.features))
    built, seconds = timed(lambda: build_timeframe(bars, instruments, timeframe, ctx.settings.features))
    rows = sum(len(s.table) for s in built.symbols.values())
    columns = max(len(s.feature_names) for s in built.symbols.values())
    _, one = timed(lambda: symbol_features(bars["AAPL"]))
    print(
        f"build {timeframe}: {len(bars)} symbols, {sum(map(len, bars.values())):,} bars -> {rows:,} rows x "
        f"{columns} features in {seconds:5.2f}s warm, {cold:5.2f}s cold ({one * 1000:.0f} ms of indicators per symbol)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--as-of", default="2026-11-20")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = make_settings(Path(folder))
        ctx = RunContext.create(settings, args.as_of, None, ["1d", "1h"], "synthetic")
        symbol_features(
            fetch(RunContext.create(settings, args.as_of, ["AAPL"], ["1d"], "synthetic"), "1d")["AAPL"]
        )  # numba's first compile
        print("== feature build (in memory) ==")
        bench_build(ctx, "1d")
        bench_build(ctx, "1h")
        bars = fetch(ctx, "1d")
        instruments = {s: settings.instrument(s) for s in bars}
        tracemalloc.start()  # a separate pass: tracing slows the build several times over
        build_timeframe(bars, instruments, "1d", settings.features)
        heap_peak = tracemalloc.get_traced_memory()[1] / 2**20
        tracemalloc.stop()
        print(f"python heap peak during a 1d build: {heap_peak:,.0f} MB")

        print("== features stage (validated CSVs in, feature CSVs + parquet out) ==")
        resources = StageResources.open(ctx)
        ingest(ctx, resources=resources)
        validate(ctx, resources)
        manifest, seconds = timed(lambda: build_features(ctx, resources))
        files = sorted(ctx.layout.features_manifest.parent.iterdir())
        size = sum(p.stat().st_size for p in files) / 2**20
        rows = {tf: e["training_table"]["rows"] for tf, e in manifest["timeframes"].items()}
        print(f"stage 1d+1h: {seconds:5.2f}s; training rows {rows}; {len(files)} files, {size:,.0f} MB on disk")
    print(f"peak memory (max RSS) {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MB")


if __name__ == "__main__":
    main()
