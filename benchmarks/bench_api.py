"""POST /signals/generate under concurrent load, over HTTP on loopback: p50/p95/p99 and 5xx counts.

    .venv/bin/python benchmarks/bench_api.py [--clients 16] [--seconds 30] [--data-dir DIR]

Without --data-dir it first runs the pipeline on the 26-symbol synthetic universe into a temp folder
(TinyDB) and promotes the direction ensemble and regime forest if deploy did not. The first request
builds the signal table of every stored bar (verification of the production models, features,
every model's predictions): its time is the cost of a first request after new data or a new
production version. Then four scenarios, each with --clients threads sending requests back to back
for --seconds (every as-of is a lookup in that one build):
  (a) one as_of (the newest bar);            target p95 <= 100 ms
  (b) four as_of values, each client cycling; target p95 <= 250 ms
  (c) (b) with 20% bad requests (unknown symbol, empty list, as_of 9999-12-31, broken JSON);
      target p95 <= 250 ms
  (d) 24 as_of values a week apart (more than the api.cached_as_of = 8 tables a per-as-of build
      kept); target p95 <= 250 ms, and no request told 503 busy. Every scenario: zero 5xx.
"""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import make_settings, train_and_promote  # noqa: E402
from tests.test_serving import free_port  # noqa: E402
from trading_ml.config.loader import ENV_DATA_DIR  # noqa: E402
from trading_ml.drivers import load_settings  # noqa: E402
from trading_ml.serving import create_app  # noqa: E402

TARGETS = {"a": 100.0, "b": 250.0, "c": 250.0, "d": 250.0}


def prepare(folder: Path):
    ctx, resources = train_and_promote(make_settings(folder))
    resources.store.close()
    return ctx.settings, ctx.as_of


def requests_for(scenario: str, symbols: list[str], dates: list[str]) -> list[tuple[str, dict | bytes, int]]:
    """The cycle of (kind, body, expected status) one client sends."""
    if scenario == "d":
        return [("cold", {"symbols": symbols, "as_of": day}, 200) for day in dates]
    good = [("good", {"symbols": symbols, "as_of": day}, 200) for day in (dates[:1] if scenario == "a" else dates)]
    if scenario != "c":
        return good
    bad = [
        ("bad", {"symbols": ["AAPL", "ZZZZ"]}, 404),
        ("bad", {"symbols": []}, 422),
        ("bad", {"symbols": ["AAPL"], "as_of": "9999-12-31"}, 422),
        ("bad", b"{not json", 422),
    ]
    return [*good, bad[0], *good, bad[1], *good[:2], bad[2], *good[2:], bad[3]]  # 16 good, 4 bad: 20%


def load(port: int, plan: list, clients: int, seconds: float) -> dict:
    latencies, statuses, unexpected, lock = [], [], [], threading.Lock()
    stop = time.monotonic() + seconds

    def client(offset: int) -> None:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            for kind, body, expected in itertools.islice(itertools.cycle(plan), offset, None):
                if time.monotonic() > stop:
                    return
                start = time.perf_counter()
                if isinstance(body, bytes):
                    answer = http.post("/signals/generate", content=body, headers={"content-type": "application/json"})
                else:
                    answer = http.post("/signals/generate", json=body)
                elapsed = (time.perf_counter() - start) * 1000
                busy = kind == "cold" and answer.status_code == 503 and "retry-after" in answer.headers
                with lock:
                    statuses.append("busy" if busy else answer.status_code)
                    if not busy:
                        latencies.append(elapsed)
                    if answer.status_code != expected and not busy:
                        unexpected.append((kind, answer.status_code, answer.text[:120]))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    values = np.array(latencies)
    return {
        "requests": len(values),
        "p50": np.percentile(values, 50),
        "p95": np.percentile(values, 95),
        "p99": np.percentile(values, 99),
        "5xx": sum(s != "busy" and s >= 500 for s in statuses),
        "busy": statuses.count("busy"),
        "unexpected": unexpected,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=30)
    parser.add_argument("--data-dir", help="an existing data dir with production models (default: train one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        if args.data_dir:
            settings, as_of = load_settings(env={ENV_DATA_DIR: args.data_dir}), dt.date.today()
        else:
            settings, as_of = prepare(Path(folder))
        dates = [(as_of - dt.timedelta(days=days)).isoformat() for days in (1, 8, 15, 22)]
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="error"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        print(
            f"== POST /signals/generate, {len(settings.symbols)} symbols, {args.clients} clients, {args.seconds:g} s "
            "each =="
        )
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as http:
            for number, day in enumerate(dates):
                start = time.perf_counter()
                assert (
                    http.post("/signals/generate", json={"symbols": settings.symbols, "as_of": day}).status_code == 200
                )
                what = (
                    "first request: verification, features of every stored bar, every model's predictions"
                    if number == 0
                    else "a lookup"
                )
                print(f"  as_of {day}: {(time.perf_counter() - start) * 1000:7.0f} ms ({what})")
        for scenario, title in (
            ("a", "one as_of"),
            ("b", "four as_of values"),
            ("c", "four as_of values, 20% bad requests"),
        ):
            result = load(port, requests_for(scenario, settings.symbols, dates), args.clients, args.seconds)
            met = result["p95"] <= TARGETS[scenario] and result["5xx"] == 0
            print(
                f"  ({scenario}) {title:<38} {result['requests']:6,} requests  p50 {result['p50']:6.1f} ms  "
                f"p95 {result['p95']:6.1f} ms  p99 {result['p99']:6.1f} ms  5xx {result['5xx']}  "
                f"target p95 <= {TARGETS[scenario]:.0f} ms: {'met' if met else 'NOT met'}"
            )
        adversarial = [(as_of - dt.timedelta(days=days)).isoformat() for days in range(29, 29 + 24 * 7, 7)]
        result = load(port, requests_for("d", settings.symbols, adversarial), args.clients, args.seconds)
        met = result["p95"] <= TARGETS["d"] and result["5xx"] == 0 and result["busy"] == 0
        print(
            f"  (d) 24 as_of values a week apart           {result['requests']:6,} answered  p50 "
            f"{result['p50']:6.1f} ms  "
            f"p95 {result['p95']:6.1f} ms  p99 {result['p99']:6.1f} ms  busy 503 {result['busy']}  other 5xx "
            f"{result['5xx']}  "
            f"target p95 <= {TARGETS['d']:.0f} ms: {'met' if met else 'NOT met'}"
        )
        for kind, status, text in result["unexpected"][:3]:
            print(f"      unexpected {kind} -> {status}: {text}")
        server.should_exit = True
        thread.join()


if __name__ == "__main__":
    main()
