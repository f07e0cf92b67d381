"""The same run through Airflow and through the CLI's stage calls; prints both and the ratio.

    .venv/bin/python benchmarks/bench_airflow.py [--symbols N] [--timeframes 1d] [--as-of YYYY-MM-DD]

Airflow runs the DAG with ``dag.test()`` in this process (SQLite metadata DB in a temp AIRFLOW_HOME):
every task goes through Airflow's task runner, XCom and state updates, but not through the
scheduler's polling or a worker process per task, which ``airflow standalone`` or Celery add on top.
Beyond 26 symbols the universe grows with synthetic equities (``benchmarks/universe.py``), so
``--symbols 200`` shows hundreds of mapped ingestion tasks going through the pool.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
HOME = tempfile.mkdtemp(prefix="bench-airflow-")
os.environ.update(
    AIRFLOW_HOME=HOME, AIRFLOW__CORE__LOAD_EXAMPLES="False", AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{HOME}/airflow.db", AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
)
os.environ.pop("AIRFLOW_CONN_MONGO_DEFAULT", None)

from benchmarks.universe import grow_universe  # noqa: E402
from tests.dags.conftest import write_config  # noqa: E402
from trading_ml.config import load_settings  # noqa: E402
from trading_ml.models import TRAINED_MODELS  # noqa: E402
from trading_ml.pipeline.deploy import deploy  # noqa: E402
from trading_ml.pipeline.evaluate import evaluate  # noqa: E402
from trading_ml.pipeline.features import build_features  # noqa: E402
from trading_ml.pipeline.ingest import ingest  # noqa: E402
from trading_ml.pipeline.resources import StageResources  # noqa: E402
from trading_ml.pipeline.train import train  # noqa: E402
from trading_ml.pipeline.validate import validate  # noqa: E402
from trading_ml.run import RunContext  # noqa: E402


def cli_run(config: Path, as_of: str, symbols: list[str], timeframes: list[str]) -> float:
    start = time.perf_counter()
    ctx = RunContext.create(load_settings(config), as_of, symbols, timeframes, "synthetic")
    resources = StageResources.open(ctx)
    ingest(ctx, resources=resources)
    validate(ctx, resources)
    build_features(ctx, resources)
    for name in TRAINED_MODELS:
        train(ctx, name, resources)
    evaluate(ctx, resources)
    deploy(ctx, resources)
    return time.perf_counter() - start


def airflow_run(config: Path, as_of: str, symbols: list[str], timeframes: list[str]) -> tuple[float, str, int]:
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    db.resetdb()
    os.environ["TRADING_ML_CONFIG"] = str(config)
    dag = DagBag(str(REPO / "dags")).get_dag("trading_ml_training")
    start = time.perf_counter()
    run = dag.test(run_conf={"as_of": as_of, "symbols": symbols, "timeframes": timeframes, "source": "synthetic"})
    return time.perf_counter() - start, run.state, len(run.get_task_instances())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--symbols", type=int, default=26, help="config.yaml's first N symbols, grown with synthetic equities past 26")
    parser.add_argument("--timeframes", default="1d")
    parser.add_argument("--as-of", default="2026-11-20")
    args = parser.parse_args()
    os.environ.pop("TRADING_ML_MONGO_URI", None)
    timeframes = args.timeframes.split(",")
    with tempfile.TemporaryDirectory() as folder:
        configs = []
        for name in ("cli", "airflow"):
            (Path(folder) / name).mkdir()
            configs.append(write_config(Path(folder) / name))
            grow_universe(configs[-1], args.symbols)
        symbols = load_settings(configs[0]).symbols[: args.symbols]
        cli_seconds = cli_run(configs[0], args.as_of, symbols, timeframes)
        airflow_seconds, state, tasks = airflow_run(configs[1], args.as_of, symbols, timeframes)
    print(f"== {len(symbols)} symbols, {args.timeframes}, as of {args.as_of}, synthetic, TinyDB ==")
    print(f"  CLI (stage calls in one process)   {cli_seconds:7.1f}s")
    print(f"  Airflow dag.test ({tasks} tasks, {state})  {airflow_seconds:7.1f}s")
    print(f"  orchestration overhead: Airflow / CLI = {airflow_seconds / cli_seconds:.2f}x "
          f"({(airflow_seconds - cli_seconds) / tasks:.2f}s per task)")


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(HOME, ignore_errors=True)
