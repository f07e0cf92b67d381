"""The TinyDB fallback's write paths, timed: median of --repeat rounds; prints figures, asserts nothing.

    .venv/bin/python benchmarks/bench_tinydb.py [--symbols 100] [--repeat 5]

One batch of every symbol's 5 years of daily bars (a CLI ingest), the same batch again (a re-run:
every document replaced), one write per symbol (Airflow's ingest tasks), and the registry's small
writes (a version claim, a field update, a compare-and-set) against a table of 500 records.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from trading_ml.data.synthetic import SyntheticMarket  # noqa: E402
from trading_ml.drivers import load_settings  # noqa: E402
from trading_ml.storage import TinyStore, bars_to_documents  # noqa: E402


def bars_by_symbol(count: int) -> dict[str, list[dict]]:
    import pandas as pd

    settings, market = load_settings(), SyntheticMarket()
    start, end = pd.Timestamp("2021-11-20", tz="UTC"), pd.Timestamp("2026-11-20", tz="UTC")
    template = settings.instrument("AAPL")
    return {
        f"SYN{n:04d}": bars_to_documents(f"SYN{n:04d}", "1d", market.bars(template, "1d", start, end), "synthetic")
        for n in range(count)
    }


def one_round(documents: dict[str, list[dict]]) -> dict[str, float]:
    figures = {}
    with tempfile.TemporaryDirectory() as folder:
        batch, per_pair = TinyStore(Path(folder) / "batch"), TinyStore(Path(folder) / "pairs")
        everything = [doc for docs in documents.values() for doc in docs]
        for label, action in (
            ("batch write (CLI ingest)", lambda: batch.upsert_many("market_data", everything)),
            ("batch re-write (re-run)", lambda: batch.upsert_many("market_data", everything)),
            (
                "a write per pair (Airflow)",
                lambda: [per_pair.upsert_many("market_data", docs) for docs in documents.values()],
            ),
            (
                "500 version claims",
                lambda: [
                    batch.insert_new("model_versions", {"model_name": "m", "version": f"{n}.0", "run_id": f"r{n}"})
                    for n in range(500)
                ],
            ),
            (
                "500 field updates",
                lambda: [
                    batch.update_fields("model_versions", {"model_name": "m", "version": f"{n}.0"}, {"note": n})
                    for n in range(500)
                ],
            ),
            (
                "500 compare-and-sets",
                lambda: [
                    batch.replace_if(
                        "model_production", {"model_name": "m", "run_id": f"r{n}", "revision": n + 1}, n or None
                    )
                    for n in range(500)
                ],
            ),
        ):
            start = time.perf_counter()
            action()
            figures[label] = time.perf_counter() - start
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    documents = bars_by_symbol(args.symbols)
    rounds = [one_round(documents) for _ in range(args.repeat)]
    print(
        f"== TinyDB, {args.symbols} symbols x {len(next(iter(documents.values()))):,} daily bars, median of "
        f"{args.repeat} =="
    )
    for label in rounds[0]:
        print(f"  {label:<28} {statistics.median(r[label] for r in rounds):7.3f}s")


if __name__ == "__main__":
    main()
