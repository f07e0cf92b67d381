"""The command line: same options on every stage, a summary, and clear errors with exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

from trading_ml import pipeline
from trading_ml.cli import main
from trading_ml.registry import ModelRegistry
from trading_ml.storage.tiny import TinyStore

REPO = Path(__file__).resolve().parent.parent


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_ingests_and_validates_and_prints_a_summary(tmp_path, capsys):
    code, out, _ = cli(capsys, "run", "--source", "synthetic", "--symbols", "AAPL,^VIX", "--timeframes", "1d",
                       "--as-of", "2026-11-20", "--data-dir", str(tmp_path))
    assert code == 0
    assert "ingest: 2/2 pairs" in out and "validate: 2/2 pairs passed" in out and "store tinydb" in out
    assert "plan target" in out and "regime_rf" in out and "direction_xgboost 1.0:" in out  # the metrics table
    assert (tmp_path / "fallback" / "ml_models.json").is_file()
    assert (tmp_path / "runs" / "2026-11-20" / "validated" / "AAPL_1d.csv").is_file()
    assert {p.name for p in (tmp_path / "fallback" / "market_data").glob("*.json")} == {"AAPL_1d.json", "^VIX_1d.json"}


def test_ingest_then_validate_as_separate_commands(tmp_path, capsys):
    common = ["--symbols", "XOM", "--timeframes", "1d,1h", "--as-of", "2026-11-20", "--data-dir", str(tmp_path)]
    assert cli(capsys, "ingest", *common)[0] == 0
    code, out, _ = cli(capsys, "validate", *common)
    assert code == 0 and "validate: 2/2 pairs passed" in out


def test_sample_source_runs_through_features_on_what_it_ships(tmp_path, capsys):
    code, out, _ = cli(capsys, "run", "--source", "sample", "--as-of", "2019-01-01", "--data-dir", str(tmp_path))
    assert code == 0 and "ingest: 3/3 pairs" in out and "^VIX" in out
    assert "without breadth_above_sma_50: no equities" in out
    features = tmp_path / "runs" / "2019-01-01" / "features"
    assert {p.name for p in features.glob("*.csv")} == {f"{s}_1d_features.csv" for s in ("^GSPC", "^IXIC", "^VIX")}
    assert (features / "training_1d.parquet").is_file()


def test_features_as_its_own_command_and_a_clear_error_without_validation(tmp_path, capsys):
    common = ["--symbols", "AAPL,^GSPC,^VIX", "--timeframes", "1d", "--data-dir", str(tmp_path)]
    code, _, err = cli(capsys, "features", *common, "--as-of", "2026-11-19")
    assert code == 2 and "validated/manifest.json not found: run `trading-ml validate --as-of 2026-11-19`" in err
    assert cli(capsys, "ingest", *common, "--as-of", "2026-11-20")[0] == 0
    assert cli(capsys, "validate", *common, "--as-of", "2026-11-20")[0] == 0
    code, out, _ = cli(capsys, "features", *common, "--as-of", "2026-11-20")
    assert code == 0 and "features 1d: 128 (trend 27, momentum 17" in out
    assert "training table 2,110 rows" in out


def test_future_as_of_is_an_error_that_says_what_to_do(tmp_path, capsys):
    code, _, err = cli(capsys, "ingest", "--as-of", "2999-01-01", "--data-dir", str(tmp_path))
    assert code == 2 and "as-of date 2999-01-01 is in the future" in err
    assert not (tmp_path / "runs").exists()


def test_unknown_symbol_is_quarantined_and_named(tmp_path, capsys):
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    code, out, err = cli(capsys, "run", "--source", f"csv:{csv_dir}", "--symbols", "FOO", "--timeframes", "1d",
                         "--as-of", "2026-11-20", "--data-dir", str(tmp_path))
    assert code == 1
    assert "failed FOO_1d: no file for FOO 1d: expected" in out
    assert "only 0 of 1" in err and "FOO 1d: ingestion failed" in err


def test_malformed_ticker_and_unknown_source_exit_2(tmp_path, capsys):
    assert "is not a ticker" in cli(capsys, "ingest", "--symbols", "A B", "--data-dir", str(tmp_path))[2]
    assert "unknown source 'bloomberg'" in cli(capsys, "ingest", "--source", "bloomberg", "--data-dir", str(tmp_path))[2]


def test_the_plans_script_runs_a_stage_and_the_full_pipeline(tmp_path):
    env = {**os.environ, "TRADING_ML_DATA_DIR": str(tmp_path)}
    common = ["--symbols", "^GSPC", "--timeframes", "1d", "--as-of", "2026-11-20"]
    script = [sys.executable, str(REPO / "train_production_models.py")]
    ingest = subprocess.run([*script, "--stage", "ingest", *common], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert ingest.returncode == 0, ingest.stderr
    assert "ingest: 1/1 pairs" in ingest.stdout
    full = subprocess.run([*script, "--full-pipeline", *common], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    assert "validate: 1/1 pairs passed" in full.stdout
    run = json.loads((tmp_path / "runs" / "2026-11-20" / "run_manifest.json").read_text())
    assert run["stages"]["validate"]["passed"] == 1 and run["stages"]["features"]["1d"]["training_rows"] > 1000
    assert "test metric" in full.stdout and "volatility_garch" in full.stdout
    again = subprocess.run([*script, "--stage", "validate", *common], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert again.returncode == 0 and "test metric" in again.stdout, again.stderr  # the plan's 'validate' judges models
    later = [*script, "--full-pipeline", *common[:-1], "2026-11-23"]
    assert subprocess.run(later, env=env, capture_output=True, text=True, cwd=tmp_path).returncode == 0
    registry = ModelRegistry(TinyStore(tmp_path / "fallback"))
    versions = {(r["model_name"], r["version"]): r for r in registry.records()}
    assert set(versions) == {(name, v) for name in (*pipeline.MODELS, "direction") for v in ("1.0", "2.0")}
    assert versions[("regime_rf", "1.0")]["run_id"] != versions[("regime_rf", "2.0")]["run_id"]
    assert registry.load_model("regime_rf", "1.0") is not None  # the first run's files are untouched
