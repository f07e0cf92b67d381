"""Ingest and validate wall time, and store write throughput; prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_ingest.py [--as-of YYYY-MM-DD]

- the 26-symbol synthetic universe, 1d (5 years) and 1h (6 months), into TinyDB;
- the sample source (real S&P 500, NASDAQ, VIX from `arch`);
- store writes for TinyDB and for MongoDB (a SecantusDB server started here on 127.0.0.1).
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import make_settings  # noqa: E402
from trading_ml.data.synthetic import SyntheticMarket  # noqa: E402
from trading_ml.pipeline.ingest import ingest  # noqa: E402
from trading_ml.pipeline.resources import StageResources  # noqa: E402
from trading_ml.pipeline.validate import validate  # noqa: E402
from trading_ml.run import RunContext  # noqa: E402
from trading_ml.storage import MongoStore, TinyStore, bars_to_documents  # noqa: E402


def timed(action):
    start = time.perf_counter()
    result = action()
    return result, time.perf_counter() - start


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_pipeline(label: str, ctx: RunContext) -> None:
    resources = StageResources.open(ctx)
    manifests, ingest_s = timed(lambda: ingest(ctx, resources=resources))
    result, validate_s = timed(lambda: validate(ctx, resources))
    bars = sum(m.get("rows", 0) for m in manifests)
    print(
        f"{label:<34} pairs {len(ctx.pairs):>3}  bars {bars:>7,}  ingest {ingest_s:6.2f}s  "
        f"validate {validate_s:6.2f}s  passed {len(result['passed'])}/{len(ctx.pairs)}"
    )


def bench_store_writes(label: str, store, documents: list[dict]) -> None:
    _, seconds = timed(lambda: store.upsert_many("market_data", documents))
    _, again = timed(lambda: store.upsert_many("market_data", documents))
    print(
        f"{label:<34} {len(documents):>7,} docs  first write {seconds:6.2f}s ({len(documents) / seconds:>9,.0f}/s)"
        f"  re-upsert {again:6.2f}s  count {store.count('market_data'):,}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--as-of", default="2026-11-20")
    parser.add_argument("--mongo-docs", type=int, default=6000, help="documents for the MongoDB write test")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        settings = make_settings(root / "synthetic")
        print("== stages (TinyDB) ==")
        for timeframes in (["1d"], ["1h"], ["1d", "1h"]):
            ctx = RunContext.create(settings, args.as_of, None, timeframes, "synthetic")
            bench_pipeline(f"synthetic 26 symbols {'+'.join(timeframes)}", ctx)
        sample = RunContext.create(
            make_settings(root / "sample"), "2019-01-01", ["^GSPC", "^IXIC", "^VIX"], ["1d"], "sample"
        )
        bench_pipeline("sample (arch.data) 3 symbols 1d", sample)

        print("== store writes ==")
        market = SyntheticMarket()
        ctx = RunContext.create(settings, args.as_of, None, ["1d"], "synthetic")
        start, end = ctx.window("1d")
        documents = [
            doc
            for symbol in ctx.symbols
            for doc in bars_to_documents(
                symbol, "1d", market.bars(settings.instrument(symbol), "1d", start, end), "synthetic"
            )
        ]
        bench_store_writes("TinyDB, 26 symbols x 5y daily", TinyStore(root / "tiny"), documents)
        from secantus import SecantusDBServer

        with SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(root / "secantus")) as server:
            store = MongoStore.connect(server.uri, "bench")
            bench_store_writes("MongoDB (SecantusDB on loopback)", store, documents[: args.mongo_docs])
            store.close()
    print(f"peak memory (max RSS) {peak_rss_mb():,.0f} MB")


if __name__ == "__main__":
    main()
