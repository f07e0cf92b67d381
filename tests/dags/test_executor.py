"""plugins/trading_ml_executor.py: the LocalExecutor whose workers are forked with the libraries loaded."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PROBE = """
import json, sys
sys.path.insert(0, sys.argv[2])
from airflow.executors.local_executor import LocalExecutor
from trading_ml_executor import PreloadedLocalExecutor

executor = (PreloadedLocalExecutor if sys.argv[1] == "preloaded" else LocalExecutor)(parallelism=1)
executor.start()
try:
    [worker] = executor.workers.values()
    with open(f"/proc/{worker.pid}/maps") as maps:
        mapped = maps.read()
    found = {"torch": "libtorch_cpu" in mapped, "xgboost": "libxgboost" in mapped}
    with open(sys.argv[3], "w") as out:  # a file, not stdout: Airflow's logging may take stdout over
        json.dump(found, out)
finally:
    executor.end()
"""


def worker_libraries(kind: str, folder: Path) -> dict[str, bool]:
    """Which native model libraries a new executor's worker process has mapped, before any task."""
    found = folder / f"{kind}.json"
    result = subprocess.run(
        [sys.executable, "-c", PROBE, kind, str(REPO / "plugins"), str(found)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert found.exists(), f"the probe wrote nothing: {result.stdout[-1500:]} {result.stderr[-1500:]}"
    return json.loads(found.read_text())


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc (Linux)")
def test_the_preloaded_executor_forks_its_workers_with_the_model_libraries_loaded(tmp_path):
    assert worker_libraries("preloaded", tmp_path) == {"torch": True, "xgboost": True}
    assert worker_libraries("plain", tmp_path) == {"torch": False, "xgboost": False}  # Airflow's own does not
