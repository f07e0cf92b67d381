"""trading_ml.drivers: what the command line, the DAG and the Airflow executor share."""

from __future__ import annotations

import ast
import dataclasses
import json
import logging
import subprocess
import sys
from pathlib import Path

import pandas as pd

from trading_ml import drivers
from trading_ml.data import calendars
from trading_ml.models.threads import machine_cores

REPO = Path(__file__).resolve().parent.parent
NOT_IN_TASKS = ("uvicorn",)  # the signals API's server, never imported by a pipeline stage
WINDOW = (pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-03-01", tz="UTC"))  # two months of bars


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
from trading_ml.drivers import preload_for_tasks
wanted = sys.argv[1:]
before = [m for m in wanted if m in sys.modules]
preload_for_tasks()
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
        drivers.preload_for_tasks()  # the scheduler or worker that calls it keeps starting
    assert "could not preload trading_ml_no_such_library" in caplog.text
    assert "json" in sys.modules


def test_preloading_builds_each_calendar_of_the_configured_universe_so_tasks_find_it_built(monkeypatch):
    monkeypatch.setenv("TRADING_ML_CONFIG", str(REPO / "config.yaml"))
    calendars._calendar.cache_clear()
    drivers.preload_calendars()
    built = calendars._calendar.cache_info()
    assert built.currsize == 2  # XNYS and XBOM: the plan's indices and equities
    for symbol in ("^GSPC", "^NSEI", "AAPL"):
        calendars.expected_timestamps(drivers.load_settings().instrument(symbol).exchange, "1d", *WINDOW)
    assert calendars._calendar.cache_info().misses == built.misses  # no task builds one again


def test_a_config_that_does_not_load_preloads_no_calendar_and_says_why(monkeypatch, tmp_path, caplog):
    (tmp_path / "config.yaml").write_text("universe: [not, a, mapping]\n")
    monkeypatch.setenv("TRADING_ML_CONFIG", str(tmp_path / "config.yaml"))
    calendars._calendar.cache_clear()
    with caplog.at_level(logging.WARNING, logger="trading_ml.drivers"):
        drivers.preload_calendars()  # the scheduler or worker that calls it keeps starting
    assert "could not preload the calendars" in caplog.text and "universe" in caplog.text
    assert calendars._calendar.cache_info().currsize == 0


def test_the_training_pool_has_one_slot_per_core_unless_configured():
    settings = drivers.load_settings(REPO / "config.yaml")
    pools = {name: slots for name, slots, _ in drivers.airflow_pools(settings)}
    assert pools == {"market_data_source": 4, "model_training": machine_cores()}
    capped = dataclasses.replace(settings, models=dataclasses.replace(settings.models, cores=1))
    assert dict(p[:2] for p in drivers.airflow_pools(capped))["model_training"] == 1  # models.cores narrows it
    fixed = dataclasses.replace(settings, airflow=dataclasses.replace(settings.airflow, training_pool_slots=3))
    assert drivers.training_slots(fixed) == 3


def test_the_pools_print_as_tab_separated_lines_for_the_scripts(monkeypatch, capsys):
    monkeypatch.setenv("TRADING_ML_CONFIG", str(REPO / "config.yaml"))
    drivers.print_airflow_pools()
    lines = [line.split("\t") for line in capsys.readouterr().out.splitlines()]
    assert [line[:2] for line in lines] == [["market_data_source", "4"], ["model_training", str(machine_cores())]]
    assert all(len(line) == 3 and line[2] for line in lines)  # a description each, no tab inside
