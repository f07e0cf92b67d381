"""Latency of POST /signals/generate for the 26 symbols (p50, p95), over HTTP on loopback.

    .venv/bin/python benchmarks/bench_api.py [--requests 50] [--data-dir DIR]

Without --data-dir it first runs the pipeline on the 26-symbol synthetic universe into a temp folder
(TinyDB) and promotes the direction ensemble and regime forest if deploy did not. The first request
builds the universe's features and loads the models (cold); the rest are served from the cache until
new bars or a new production version arrive (warm).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.conftest import make_settings, train_and_promote  # noqa: E402
from tests.test_serving import free_port  # noqa: E402
from trading_ml.config import ENV_DATA_DIR, load_settings  # noqa: E402
from trading_ml.serving import create_app  # noqa: E402


def prepare(folder: Path):
    ctx, resources = train_and_promote(make_settings(folder))
    resources.store.close()
    return ctx.settings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=50)
    parser.add_argument("--data-dir", help="an existing data dir with production models (default: train one)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        settings = load_settings(env={ENV_DATA_DIR: args.data_dir}) if args.data_dir else prepare(Path(folder))
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        body = {"symbols": settings.symbols}
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=300) as client:
            start = time.perf_counter()
            assert client.post("/signals/generate", json=body).status_code == 200
            cold = time.perf_counter() - start
            times = []
            for _ in range(args.requests):
                start = time.perf_counter()
                assert client.post("/signals/generate", json=body).status_code == 200
                times.append((time.perf_counter() - start) * 1000)
        server.should_exit = True
        thread.join()
    times.sort()
    p95 = times[min(len(times) - 1, int(round(0.95 * len(times))) - 1)]
    print(f"== POST /signals/generate, {len(body['symbols'])} symbols, {args.requests} requests ==")
    print(f"  cold (features of the universe + model load)  {cold * 1000:8.0f} ms")
    print(f"  warm p50 {statistics.median(times):6.1f} ms   p95 {p95:6.1f} ms   max {times[-1]:6.1f} ms")


if __name__ == "__main__":
    main()
