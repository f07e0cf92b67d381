"""airflow.approve_promotions on `make airflow` (scripts/airflow-standalone): deploy proposes, Airflow's
human-in-the-loop task asks with the evidence, a person answers through the REST call the Required
Actions page makes, and the registry records who, when and why. Its own module: the stack of
test_standalone.py is stopped before this one starts."""

from __future__ import annotations

import time
import urllib.parse

from tests.dags.airflow_stacks import DAG_ID, Operator, StandaloneStack

# A person reads the evidence before answering. Airflow 3.3.2 fails the task when the answer comes
# within about a second of it pausing (the executor then reports the pausing process's success for a
# task already re-queued by the answer; Airflow retries it, which asks again).
ANSWER_AFTER_SECONDS = 5


def test_with_approve_promotions_a_person_approves_in_the_ui_and_the_registry_records_who_when_and_why(tmp_path):
    """airflow.approve_promotions: deploy proposes (nothing is promoted), Airflow's human-in-the-loop
    task shows the evidence, a person answers through the same REST call the Required Actions page
    makes, and only then is the version production, with the approval in its history."""
    from tests.conftest import QUICK_MODELS, write_config
    from trading_ml.drivers import load_settings
    from trading_ml.registry import ModelRegistry
    from trading_ml.storage import TinyStore

    config = write_config(
        tmp_path,
        models=QUICK_MODELS,
        airflow={"approve_promotions": True},
        sources={"synthetic": {"seed": 42, "epoch": "2000-01-03", "signal_strength": 0.3}},
    )
    stack = StandaloneStack(config)
    try:
        stack.start()
        stack.wait_for(
            "the DAG parsed into the database", lambda: stack.query("SELECT 1 FROM dag WHERE dag_id = %s", DAG_ID), 300
        )
        operator = Operator(stack)
        operator.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
        conf = {
            "symbols": ["^GSPC", "^VIX", "AAPL", "MSFT", "JPM", "XOM", "JNJ", "WMT"],
            "timeframes": ["1d"],
            "models": ["direction_xgboost"],
        }
        run_id = operator.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": conf})[
            "dag_run_id"
        ]
        run_path = f"/api/v2/dags/{DAG_ID}/dagRuns/{urllib.parse.quote(run_id, safe='')}"
        waiting = "SELECT state FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = 'approve'"
        stack.wait_for(
            "the approval to be asked",
            lambda: stack.query(waiting, DAG_ID, run_id) == [("awaiting_input",)],
            600,
            every=2,
        )
        [asked] = operator.call("GET", f"{run_path}/hitlDetails")["hitl_details"]  # what Required Actions shows
        time.sleep(ANSWER_AFTER_SECONDS)
        assert (
            "proposes 1 promotion(s)" in asked["body"]
            and "**direction_xgboost 1.0**: proposed: significant skill: rank_ic" in asked["body"]
        )
        assert "direction_xgboost" in asked["options"] and asked["multiple"] is True
        settings = load_settings(config, env=stack.env)
        registry = ModelRegistry(TinyStore(settings.storage.fallback_dir), settings.data_dir)
        assert registry.production("direction_xgboost") is None  # nothing before the answer
        operator.call(
            "PATCH",
            f"{run_path}/taskInstances/approve/-1/hitlDetails",
            {"chosen_options": ["direction_xgboost"], "params_input": {"reason": "the IC held out of sample"}},
        )
        try:
            state = stack.wait_for_run(run_id, 300)
        except TimeoutError as error:
            raise AssertionError(
                f"{error}\napprove, attempt 1:\n{stack.task_log(run_id, 'approve', 1)[-4000:]}"
            ) from None
        assert state == "success", stack.script.tail(40)
        pointer = registry.production("direction_xgboost")
        approval = pointer["history"][-1]["approval"]
        assert approval["by"] == "admin" and approval["why"] == "the IC held out of sample" and approval["at"]
        assert (
            pointer["reason"].startswith("promoted: approved by admin at ")
            and "the IC held out of sample; the gate: significant skill" in pointer["reason"]
        )
    finally:
        stack.stop()
