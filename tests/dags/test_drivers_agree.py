"""The CLI and the DAG are two thin drivers of one library: for the same inputs they leave the same
run folder and the same manifests, run id (and what derives from it) aside."""

from __future__ import annotations

import json
import re
import zipfile

import pandas as pd

from tests.conftest import QUICK_MODELS
from tests.dags.conftest import write_config
from tests.dags.test_trading_ml_training import load_dag, run_dag
from trading_ml.cli import main
from trading_ml.io import read_mapped_table
from trading_ml.models.threads import fit_threads
from trading_ml.run import find_runs

SYMBOLS = ["^GSPC", "^VIX", "AAPL", "XOM"]
MODELS = ["direction_xgboost", "direction_lstm", "regime_rf"]  # the ensemble too; quick settings keep it to seconds
GENERATED_AT = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00")  # when the report was written
VARIES = {"finished_at", "created_at", "generated_at", "trained_date", "promoted_at", "updated_at"}  # clock times
VARIES |= {"threads"}  # a fit's thread budget: the DAG's trainings share the cores, the CLI's run one at a time


def normalized(value, run):
    """The value with the run's id, folder and data folder replaced by placeholders and clock times dropped."""
    if isinstance(value, dict):
        unstable = str(value.get("path", "")).endswith(
            ".skops"
        )  # its bytes hold object ids and a time; its arrays are compared
        return {k: normalized(v, run) for k, v in value.items() if k not in VARIES and not (unstable and k == "sha256")}
    if isinstance(value, list):
        return [normalized(v, run) for v in value]
    if isinstance(value, str):
        data_dir = run.layout.root.parents[2]
        for actual, placeholder in (
            (run.run_id, "<run id>"),
            (run.layout.root.name, "<run folder>"),
            (str(data_dir), "<data>"),
            (str(data_dir.parent), "<home>"),
        ):
            value = value.replace(actual, placeholder)
    return value


def run_folder(run) -> dict[str, object]:
    """Relative path -> content: JSON and HTML normalized, tables as frames, a skops zip by its
    arrays, other files (bars, features, serialized models) as bytes."""
    root, files = run.layout.root, {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        name = str(path.relative_to(root))
        if path.suffix == ".json":
            files[name] = normalized(json.loads(path.read_text()), run)
        elif path.suffix == ".html":
            files[name] = GENERATED_AT.sub("<time>", normalized(path.read_text(), run))
        elif path.suffix == ".parquet":
            files[name] = pd.read_parquet(path)
        elif path.suffix == ".arrow":  # the memory-mapped training table
            files[name] = read_mapped_table(path)
        elif zipfile.is_zipfile(path):  # skops: a zip of arrays named by Python object ids, stamped with a time
            with zipfile.ZipFile(path) as archive:
                files[name] = sorted(archive.read(entry) for entry in archive.namelist() if entry != "schema.json")
        else:
            files[name] = path.read_bytes()
    return files


def test_the_cli_and_the_dag_leave_the_same_run_folder_and_manifests(airflow_db, tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MONGO_DEFAULT", raising=False)
    monkeypatch.delenv("TRADING_ML_MONGO_URI", raising=False)
    for driver in ("dag", "cli"):
        (tmp_path / driver).mkdir()
    dag_config = write_config(tmp_path / "dag", models=QUICK_MODELS)
    cli_config = write_config(tmp_path / "cli", models=QUICK_MODELS)
    dag_run, _ = run_dag(load_dag(dag_config, monkeypatch), as_of="2026-11-20", symbols=SYMBOLS, models=MODELS)
    assert dag_run.state == "success"
    assert (
        main(
            [
                "run",
                "--config",
                str(cli_config),
                "--as-of",
                "2026-11-20",
                "--symbols",
                ",".join(SYMBOLS),
                "--timeframes",
                "1d",
                "--source",
                "synthetic",
                "--models",
                ",".join(MODELS),
            ]
        )
        == 0
    )
    [from_dag], [from_cli] = find_runs(tmp_path / "dag" / "data"), find_runs(tmp_path / "cli" / "data")
    dag_files, cli_files = run_folder(from_dag), run_folder(from_cli)
    assert sorted(dag_files) == sorted(cli_files)
    trained = "models/direction_lstm.trained.json"
    threads = [json.loads((run.layout.root / trained).read_text())["threads"] for run in (from_dag, from_cli)]
    assert threads == [fit_threads(0, len(MODELS)), fit_threads(0, 1)]  # each fit's budget; the models still agree
    assert any(name.endswith("evaluation.json") for name in dag_files) and "run_manifest.json" in dag_files
    for name, content in dag_files.items():
        if isinstance(content, pd.DataFrame):
            pd.testing.assert_frame_equal(content, cli_files[name], check_exact=False, rtol=1e-9, obj=name)
        else:
            assert content == cli_files[name], name
