"""The distributed deployment for real: PostgreSQL, Redis and Airflow's services with the
CeleryExecutor and two workers on loopback (tests/dags/airflow_stacks.py). A triggered DAG run of a
small universe runs on both workers; one worker is killed (SIGKILL, with the tasks it runs) while it
trains a model, and the run still succeeds: the scheduler notices the lost heartbeat, the task is
retried on the other worker."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from tests.dags.airflow_stacks import DAG_ID, CeleryStack, missing_parts, small_config

HEARTBEAT_TIMEOUT = 30  # seconds; Airflow's default (300) is what made the run wait five minutes


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    missing = missing_parts()
    if missing:
        pytest.skip(f"the Celery stack cannot start on this machine: {'; '.join(missing)}")
    stack = CeleryStack(small_config(tmp_path_factory.mktemp("celery")), HEARTBEAT_TIMEOUT)
    try:
        yield stack.start(workers=2)
    finally:
        stack.stop()


def task_instances(stack: CeleryStack, run_id: str) -> dict[tuple[str, int], tuple[str, int, str]]:
    rows = stack.query(
        "SELECT task_id, map_index, state, try_number, hostname FROM task_instance WHERE dag_id = %s AND run_id = %s",
        DAG_ID,
        run_id,
    )
    return {(task, index): (state, tries, host) for task, index, state, tries, host in rows}


def children(pid: int) -> list[int]:
    """The processes ``pid`` forked (its pool, for a Celery worker)."""
    threads = Path(f"/proc/{pid}/task").iterdir()
    return [int(child) for thread in threads for child in (thread / "children").read_text().split()]


def with_model_libraries(pids: list[int]) -> list[int]:
    """The processes that have torch's and XGBoost's native libraries mapped."""
    found = []
    for pid in pids:
        with contextlib.suppress(OSError), open(f"/proc/{pid}/maps") as maps:
            mapped = maps.read()
            if "libtorch_cpu" in mapped and "libxgboost" in mapped:
                found.append(pid)
    return found


def test_each_worker_forks_its_pool_with_the_model_libraries_loaded(stack):
    """plugins/trading_ml_celery.py (as docker-compose.yaml sets it): a task is forked from a pool
    process, which is forked from the worker after the preload; without it no pool process maps them."""
    for name in ("worker1", "worker2"):
        worker = stack.processes[name].popen.pid
        # WORKER_CONCURRENCY is 2; wait_for raises when they never appear
        stack.wait_for(
            f"{name}'s two pool processes with torch and XGBoost loaded",
            lambda: len(with_model_libraries(children(worker))) >= 2,
            180,
        )


def test_a_worker_killed_while_training_does_not_fail_the_run(stack):
    run_id = stack.start_run()  # a triggered run over the config's small universe
    killed_task, killed_worker = stack.kill_worker_running_training(run_id)
    state = stack.wait_for_run(run_id)
    instances = task_instances(stack, run_id)
    assert state == "success", instances
    assert all(ti[0] == "success" for ti in instances.values()), instances
    assert len([key for key in instances if key[0] == "ingest"]) == 5  # one mapped task per symbol
    state, tries, host = instances[(killed_task, -1)]
    assert tries >= 2 and host != killed_worker, (
        killed_task,
        instances[(killed_task, -1)],
    )  # retried on the other worker
    assert {host for _, _, host in instances.values()} == {"worker1", "worker2"}  # both workers ran tasks
    for task, progress in (
        ("train_direction_lstm", "direction_lstm: epoch 2 of 2"),
        ("train_direction_xgboost", "stopped after"),
        ("train_volatility_garch", "4 of 4 symbols done"),
        ("train_regime_rf", "30 trees fitted"),
    ):
        assert progress in stack.task_log(run_id, task, instances[(task, -1)][1]), (
            task
        )  # what training said, in its task log
