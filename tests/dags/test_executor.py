"""plugins/trading_ml_executor.py: the LocalExecutor whose workers are forked with the libraries
loaded, each in a session of its own that ends with the scheduler."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import json, os, sys
sys.path.insert(0, sys.argv[2])
from airflow.executors.local_executor import LocalExecutor
from trading_ml_executor import PreloadedLocalExecutor

executor = (PreloadedLocalExecutor if sys.argv[1] == "preloaded" else LocalExecutor)(parallelism=1)
executor.start()
try:
    import time
    [worker] = executor.workers.values()
    with open(f"/proc/{worker.pid}/maps") as maps:
        mapped = maps.read()

    def own_session():
        return os.getsid(worker.pid) == worker.pid != os.getsid(0)

    # the forked worker calls setsid as its first step, which start() does not wait for: give it
    # time (a plain worker never gets there: a few seconds show that)
    deadline = time.monotonic() + (30 if sys.argv[1] == "preloaded" else 3)
    while not own_session() and time.monotonic() < deadline:
        time.sleep(0.05)
    found = {
        "torch": "libtorch_cpu" in mapped,
        "xgboost": "libxgboost" in mapped,
        "own session": own_session(),
        "worker": worker.pid,
    }
    with open(sys.argv[3] + ".part", "w") as out:  # a file, not stdout: Airflow's logging may take stdout over
        json.dump(found, out)
    os.replace(sys.argv[3] + ".part", sys.argv[3])
    if len(sys.argv) > 4:  # stay up until killed: the worker must not outlive this process
        time.sleep(600)
finally:
    executor.end()
"""
linux_only = pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc (Linux)")


def probe(kind: str, folder: Path, *stay: str) -> tuple[subprocess.Popen, Path]:
    """The probe started, its output in a file (a pipe would stay open in a worker that outlived it)."""
    found, output = folder / f"{kind}.json", (folder / f"{kind}.log").open("w")
    command = [sys.executable, "-c", PROBE, kind, str(REPO / "plugins"), str(found), *stay]
    with output:
        return subprocess.Popen(command, stdout=output, stderr=subprocess.STDOUT), found


def probe_log(found: Path) -> str:
    return found.with_suffix(".log").read_text()[-3000:]


def worker_facts(kind: str, folder: Path) -> dict:
    """Which native model libraries a new executor's worker process has mapped before any task, and
    whether it leads a session of its own."""
    process, found = probe(kind, folder)
    assert process.wait(timeout=300) == 0, probe_log(found)
    assert found.exists(), f"the probe wrote nothing: {probe_log(found)}"
    return json.loads(found.read_text())


def alive(pid: int) -> bool:
    """Running, not a zombie (a killed worker's parent is gone: init reaps it)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@linux_only
def test_the_preloaded_executor_forks_its_workers_with_the_model_libraries_loaded_in_their_own_sessions(tmp_path):
    preloaded = worker_facts("preloaded", tmp_path)
    assert {k: preloaded[k] for k in ("torch", "xgboost", "own session")} == {
        "torch": True,
        "xgboost": True,
        "own session": True,
    }
    plain = worker_facts("plain", tmp_path)  # Airflow's own does neither
    assert {k: plain[k] for k in ("torch", "xgboost", "own session")} == {
        "torch": False,
        "xgboost": False,
        "own session": False,
    }


@linux_only
def test_a_worker_in_its_own_session_dies_with_the_scheduler_killed(tmp_path):
    """Out of the scheduler's process group, a kill -9 of the group no longer reaches the worker:
    it must end with its parent."""
    process, found = probe("preloaded", tmp_path, "stay")
    worker = None
    try:
        deadline = time.monotonic() + 300
        while not found.exists():
            assert process.poll() is None and time.monotonic() < deadline, probe_log(found)
            time.sleep(0.2)
        worker = json.loads(found.read_text())["worker"]
        assert alive(worker)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        deadline = time.monotonic() + 30
        while alive(worker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(worker), f"worker {worker} outlived its killed scheduler"
    finally:
        process.kill()
        process.wait()
        if worker and alive(worker):  # the test failed: leave nothing running
            os.kill(worker, signal.SIGKILL)
