"""Feature-stage wall time and peak memory; prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_features.py [--as-of YYYY-MM-DD]

For the 26-symbol synthetic universe, 1d over 5 years and 1h over 6 months: the pure feature
build (indicators, market-wide features, targets; cold = first call in the process, with the
exchange calendars still to build) and the whole stage (reading validated CSVs,
writing per-symbol CSVs and the parquet training table). Peak memory is the process's max RSS
and, separately, the Python heap peak that tracemalloc sees during the daily build.

Against TA-Lib (when the ``talib`` package is installed; it says so when it is not): on the same 20
symbols' daily bars, warm, the time per column per symbol of ``each_symbol_features`` (the symbols
stacked, as the stage computes them; and ``symbol_features`` one symbol at a time) beside TA-Lib
computing a comparable set of indicator columns into a frame, symbol by symbol, and their ratio.
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
from trading_ml.features.indicators import each_symbol_features, symbol_features  # noqa: E402
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


def talib_columns(bars, talib) -> dict:
    """A comparable indicator set from TA-Lib: moving averages, oscillators, bands, ranges, volume."""
    o, h, low, c, v = (bars[k].to_numpy(dtype=float) for k in ("open", "high", "low", "close", "volume"))
    out = {}
    for n in (5, 10, 20, 50, 100, 200):
        out[f"sma_{n}"], out[f"ema_{n}"] = talib.SMA(c, n), talib.EMA(c, n)
    for n in (7, 14, 21):
        out[f"rsi_{n}"], out[f"willr_{n}"], out[f"cci_{n}"] = (
            talib.RSI(c, n),
            talib.WILLR(h, low, c, n),
            talib.CCI(h, low, c, n),
        )
    for n in (1, 5, 10, 20):
        out[f"roc_{n}"], out[f"mom_{n}"] = talib.ROC(c, n), talib.MOM(c, n)
    for n in (5, 10, 20, 60):
        out[f"stddev_{n}"], out[f"slope_{n}"] = talib.STDDEV(c, n), talib.LINEARREG_SLOPE(c, n)
    out["macd"], out["macd_signal"], out["macd_hist"] = talib.MACD(c)
    out["bb_upper"], out["bb_middle"], out["bb_lower"] = talib.BBANDS(c, 20)
    out["stoch_k"], out["stoch_d"] = talib.STOCH(h, low, c)
    out["stochrsi_k"], out["stochrsi_d"] = talib.STOCHRSI(c)
    out["aroon_down"], out["aroon_up"] = talib.AROON(h, low, 14)
    for name in ("ATR", "NATR", "ADX", "PLUS_DI", "MINUS_DI", "MFI"):
        args = (h, low, c, v) if name == "MFI" else (h, low, c)
        out[name.lower()] = getattr(talib, name)(*args, 14)
    out["trange"], out["obv"], out["ad"] = talib.TRANGE(h, low, c), talib.OBV(c, v), talib.AD(h, low, c, v)
    out["adosc"], out["bop"], out["ultosc"] = (
        talib.ADOSC(h, low, c, v),
        talib.BOP(o, h, low, c),
        talib.ULTOSC(h, low, c),
    )
    out["trix"], out["kama"], out["tema"], out["dema"] = talib.TRIX(c), talib.KAMA(c), talib.TEMA(c), talib.DEMA(c)
    out["cmo"], out["ppo"], out["apo"] = talib.CMO(c), talib.PPO(c), talib.APO(c)
    out["var_20"], out["tsf_20"], out["correl_20"] = talib.VAR(c, 20), talib.TSF(c, 20), talib.CORREL(h, low, 20)
    return out


def bench_against_talib(ctx: RunContext) -> None:
    """Our feature code and TA-Lib per column per symbol on the same 20 symbols' daily bars, warm."""
    try:
        import talib
    except ImportError:
        print("TA-Lib: not installed (pip install ta-lib), so no ratio against it")
        return
    import pandas as pd

    bars = dict(list(fetch(ctx, "1d").items())[:20])
    has_volume = dict.fromkeys(bars, True)

    def all_symbols():  # what the feature stage calls: the symbols stacked, a frame per symbol out
        return [frame for _, frame in each_symbol_features(bars, has_volume)]

    ours = all_symbols()  # warm both
    talib_columns(next(iter(bars.values())), talib)
    ours, our_seconds = timed(all_symbols)
    _, one_by_one = timed(lambda: [symbol_features(b) for b in bars.values()])
    theirs, their_seconds = timed(lambda: [pd.DataFrame(talib_columns(b, talib), index=b.index) for b in bars.values()])
    per_ours = our_seconds / len(bars) / ours[0].shape[1] * 1000
    per_theirs = their_seconds / len(bars) / theirs[0].shape[1] * 1000
    per_one_by_one = one_by_one / len(bars) / ours[0].shape[1] * 1000
    print(
        f"against TA-Lib {talib.__version__}, {len(bars)} symbols x {len(ours[0]):,} daily bars, warm: "
        f"ours {ours[0].shape[1]} columns in {our_seconds:.2f}s ({per_ours:.3f} ms per column per symbol), "
        f"TA-Lib {theirs[0].shape[1]} columns in {their_seconds:.3f}s ({per_theirs:.4f} ms): "
        f"{per_ours / per_theirs:.1f}x TA-Lib per column "
        f"(a symbol at a time: {per_one_by_one:.3f} ms, {per_one_by_one / per_theirs:.1f}x)"
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
        bench_against_talib(ctx)
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
