"""A year of quarterly retraining as an operator runs it: `airflow backfill create` against `make
airflow` (scheduler, LocalExecutor). Three backfills cover four quarters, the third without JPM
(the conf of a backfill holds for all its runs); production moves whenever a quarter's model is
significant and not worse than production on the symbols both have. A backfill's runs start only
while the DAG is unpaused; the scheduler runs without its own schedule
(``[scheduler] use_job_schedule = False``), so unpausing adds no run of the latest quarter."""

from __future__ import annotations

import json
import time

from tests.conftest import QUICK_MODELS, write_config
from tests.dags.airflow_stacks import DAG_ID, StandaloneStack
from trading_ml.run import find_runs

UNIVERSE = ["^GSPC", "^VIX", "AAPL", "MSFT", "JPM", "XOM", "JNJ", "WMT"]
BACKFILLS = [  # (from, to, symbols): logical dates of the quarterly schedule, each run's as-of the next quarter start
    ("2025-10-01", "2026-03-31", UNIVERSE),  # as-of 2026-01-01 and 2026-04-01
    ("2026-04-01", "2026-04-30", [s for s in UNIVERSE if s != "JPM"]),  # as-of 2026-07-01, JPM dropped out
    ("2026-07-01", "2026-07-31", UNIVERSE),  # as-of 2026-10-01
]


def create_backfill(stack: StandaloneStack, start: str, end: str, conf: dict) -> None:
    """``airflow backfill create``, tried again when SQLite was locked by the scheduler meanwhile (the
    command is one transaction: a locked try created nothing)."""
    for attempt in range(5):
        try:
            stack.airflow(
                "backfill",
                "create",
                "--dag-id",
                DAG_ID,
                "--from-date",
                start,
                "--to-date",
                end,
                "--max-active-runs",
                "1",
                "--dag-run-conf",
                json.dumps(conf),
            )
            return
        except RuntimeError as error:
            if "database is locked" not in str(error) or attempt == 4:
                raise
            time.sleep(2)


def test_quarterly_backfills_with_a_symbol_dropping_out_keep_production_moving(tmp_path):
    synthetic = {"seed": 42, "epoch": "2000-01-03", "signal_strength": 0.3}
    stack = StandaloneStack(write_config(tmp_path, models=QUICK_MODELS, sources={"synthetic": synthetic}))
    stack.env["AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE"] = (
        "False"  # backfills only: unpausing starts no run of the latest quarter
    )
    stack.start()
    try:
        stack.wait_for(
            "the DAG parsed into the database", lambda: stack.query("SELECT 1 FROM dag WHERE dag_id = %s", DAG_ID), 300
        )
        stack.airflow("dags", "unpause", DAG_ID)  # the runs of a backfill start only while its DAG is unpaused
        expected = 0
        for start, end, symbols in BACKFILLS:
            conf = {"symbols": symbols, "timeframes": ["1d"], "source": "synthetic", "models": ["direction_xgboost"]}
            create_backfill(stack, start, end, conf)
            expected += len([d for d in ("2025-10-01", "2026-01-01", "2026-04-01", "2026-07-01") if start <= d <= end])

            def finished(count=expected):
                """The runs' states once all ended and the scheduler marked the backfill complete (every
                30 s; only then may the next backfill of the DAG be created)."""
                states = [state for (state,) in stack.query("SELECT state FROM dag_run WHERE dag_id = %s", DAG_ID)]
                open_backfills = stack.query("SELECT id FROM backfill WHERE completed_at IS NULL")
                done = len(states) == count and all(s in ("success", "failed") for s in states) and not open_backfills
                return states if done else None

            states = stack.wait_for(f"{expected} backfilled runs", finished, 900, every=2)
            assert set(states) == {"success"}, states
        runs = sorted(find_runs(stack.root / "data"), key=lambda r: r.as_of)
        assert [r.as_of.isoformat() for r in runs] == ["2026-01-01", "2026-04-01", "2026-07-01", "2026-10-01"]
        assert all(r.run_id.startswith("backfill__") for r in runs)
        decisions = [json.loads(r.layout.deploy_manifest.read_text())["decisions"]["direction_xgboost"] for r in runs]
        assert not [d for d in decisions if "cannot be scored" in d["reason"]], [d["reason"] for d in decisions]
        assert decisions[2]["evidence"]["versus_production"]["symbols"]["only_production"] == ["JPM"]
        for decision in decisions:
            significant = decision["evidence"]["skill"]["better"]
            worse = decision["evidence"].get("versus_production", {}).get("worse", False)
            assert (decision["status"] == "production") == (significant and not worse), decision["reason"]
        assert sum(d["status"] == "production" for d in decisions) >= 3, [d["reason"] for d in decisions]
    finally:
        stack.stop()
