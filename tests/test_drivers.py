"""trading_ml.drivers: what the command line, the DAG and the Airflow executor share."""

from __future__ import annotations

import ast
import json
import logging
import subprocess
import sys
from pathlib import Path

from trading_ml import drivers

REPO = Path(__file__).resolve().parent.parent
NOT_IN_TASKS = ("uvicorn",)  # the signals API's server, never imported by a pipeline stage


def imports_inside_functions() -> dict[str, str]:
    """Every third-party module trading_ml imports inside a function (not when the module loads), and
    one place that does: the imports a task process would pay for unless its worker preloaded them."""
    found = {}
    for path in sorted((REPO / "trading_ml").rglob("*.py")):
        for function in ast.walk(ast.parse(path.read_text())):
            if not isinstance(function, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(function):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    top = name.split(".")[0]
                    if top not in ("trading_ml", *NOT_IN_TASKS) and top not in sys.stdlib_module_names:
                        found.setdefault(name, f"{path.relative_to(REPO)}:{node.lineno}")
    return found


PROBE = """
import json, sys
from trading_ml.drivers import preload_libraries
wanted = sys.argv[1:]
before = [m for m in wanted if m in sys.modules]
preload_libraries()
print("PROBE", json.dumps({"before": before, "missing": [m for m in wanted if m not in sys.modules]}))
"""


def test_preloading_imports_every_library_a_stage_imports_inside_a_function():
    lazy = imports_inside_functions()
    assert {"torch", "xgboost", "arch", "sklearn.ensemble", "skops.io"} <= set(lazy)  # the scan finds them
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *sorted(lazy)], capture_output=True, text=True, cwd=REPO, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    loaded = json.loads(next(line for line in result.stdout.splitlines() if line.startswith("PROBE "))[6:])
    assert "torch" not in loaded["before"]  # a fresh interpreter: the preload is what loads them
    assert loaded["missing"] == [], {name: lazy[name] for name in loaded["missing"]}


def test_a_library_that_does_not_import_is_logged_and_the_rest_still_load(monkeypatch, caplog):
    monkeypatch.setattr(drivers, "LAZY_LIBRARIES", ("trading_ml_no_such_library", "json"))
    with caplog.at_level(logging.WARNING, logger="trading_ml.drivers"):
        drivers.preload_libraries()  # the scheduler or worker that calls it keeps starting
    assert "could not preload trading_ml_no_such_library" in caplog.text
    assert "json" in sys.modules
