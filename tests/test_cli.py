"""The command line: same options on every stage, a summary, and clear errors with exit codes."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from tests.conftest import QUICK_MODELS, write_config
from trading_ml.cli import main
from trading_ml.data.calendars import expected_timestamps
from trading_ml.loading import ModelLoader
from trading_ml.models import TRAINED_MODELS
from trading_ml.pipeline import STAGES
from trading_ml.registry import ModelRegistry
from trading_ml.run import find_run, find_runs
from trading_ml.storage.tiny import TinyStore

REPO = Path(__file__).resolve().parent.parent


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_run_ingests_and_validates_and_prints_a_summary(tmp_path, capsys):
    code, out, _ = cli(
        capsys,
        "run",
        "--source",
        "synthetic",
        "--symbols",
        "AAPL,^VIX",
        "--timeframes",
        "1d",
        "--as-of",
        "2026-11-20",
        "--data-dir",
        str(tmp_path),
    )
    assert code == 0
    assert "ingest: 2/2 pairs" in out and "validate: 2/2 pairs passed" in out and "store tinydb" in out
    assert "plan target" in out and "regime_rf" in out and "direction_xgboost 1.0:" in out  # the metrics table
    assert (tmp_path / "fallback" / "ml_models.json").is_file()
    [root] = (tmp_path / "runs" / "2026-11-20").iterdir()  # the run's own folder, named by its run id
    assert root.name.startswith("cli__") and (root / "validated" / "AAPL_1d.csv").is_file()
    assert {p.name for p in (tmp_path / "fallback" / "market_data").glob("*.json")} == {"AAPL_1d.json", "^VIX_1d.json"}
    stages = json.loads((root / "run_manifest.json").read_text())["stages"]
    assert set(stages) == set(STAGES)  # every stage, as a DAG run records them


def test_ingest_then_validate_as_separate_commands(tmp_path, capsys):
    common = ["--symbols", "XOM", "--timeframes", "1d,1h", "--as-of", "2026-11-20", "--data-dir", str(tmp_path)]
    assert cli(capsys, "ingest", *common)[0] == 0
    code, out, _ = cli(capsys, "validate", *common)
    assert code == 0 and "validate: 2/2 pairs passed" in out


def test_sample_source_runs_through_features_on_what_it_ships(tmp_path, capsys):
    code, out, _ = cli(capsys, "run", "--source", "sample", "--as-of", "2019-01-01", "--data-dir", str(tmp_path))
    assert code == 0 and "ingest: 3/3 pairs" in out and "^VIX" in out
    assert "without breadth_above_sma_50: no equities" in out
    [root] = (tmp_path / "runs" / "2019-01-01").iterdir()
    features = root / "features"
    assert {p.name for p in features.glob("*.csv")} == {f"{s}_1d_features.csv" for s in ("^GSPC", "^IXIC", "^VIX")}
    assert (features / "training_1d.parquet").is_file()


def test_features_as_its_own_command_and_a_clear_error_without_validation(tmp_path, capsys):
    common = ["--symbols", "AAPL,^GSPC,^VIX", "--timeframes", "1d", "--data-dir", str(tmp_path)]
    code, _, err = cli(capsys, "features", *common, "--as-of", "2026-11-19")
    assert code == 2 and "no run matches as-of 2026-11-19" in err and "start one with `trading-ml run`" in err
    assert cli(capsys, "ingest", *common, "--as-of", "2026-11-20")[0] == 0
    code, _, err = cli(capsys, "features", *common, "--as-of", "2026-11-20")
    assert code == 2 and "validated/manifest.json not found: run `trading-ml validate --run-id cli__" in err
    assert cli(capsys, "validate", *common, "--as-of", "2026-11-20")[0] == 0
    code, out, _ = cli(capsys, "features", *common, "--as-of", "2026-11-20")
    assert code == 0 and "features 1d: 136 (trend 27, momentum 17" in out
    sessions = len(
        expected_timestamps("XNYS", "1d", pd.Timestamp("2021-11-20", tz="UTC"), pd.Timestamp("2026-11-20", tz="UTC"))
    )
    assert (
        f"training table {2 * sessions:,} rows" in out
    )  # AAPL and ^GSPC, every session of the window: the warm-up came before it
    assert len(list((tmp_path / "runs" / "2026-11-20").iterdir())) == 1  # every stage continued the one run


def test_future_as_of_is_an_error_that_says_what_to_do(tmp_path, capsys):
    code, _, err = cli(capsys, "ingest", "--as-of", "2999-01-01", "--data-dir", str(tmp_path))
    assert code == 2 and "as-of date 2999-01-01 is in the future" in err
    assert not (tmp_path / "runs").exists()


def test_unknown_symbol_is_quarantined_and_named(tmp_path, capsys):
    csv_dir = tmp_path / "csv"
    csv_dir.mkdir()
    code, out, err = cli(
        capsys,
        "run",
        "--source",
        f"csv:{csv_dir}",
        "--symbols",
        "FOO",
        "--timeframes",
        "1d",
        "--as-of",
        "2026-11-20",
        "--data-dir",
        str(tmp_path),
    )
    assert code == 1
    assert "failed FOO_1d: no file for FOO 1d: expected" in out
    assert "ingest: 0 of 1 pairs ingested, nothing to validate (FOO_1d: no file for FOO 1d" in err
    code, _, err = cli(
        capsys,
        "ingest",
        "--source",
        f"csv:{csv_dir}",
        "--symbols",
        "FOO",
        "--timeframes",
        "1d",
        "--as-of",
        "2026-11-20",
        "--data-dir",
        str(tmp_path),
    )
    assert code == 1 and "ingest: 0 of 1 pairs ingested" in err  # `ingest` alone no longer exits 0 on nothing


def test_malformed_ticker_and_unknown_source_exit_2(tmp_path, capsys):
    assert "is not a ticker" in cli(capsys, "ingest", "--symbols", "A B", "--data-dir", str(tmp_path))[2]
    assert (
        "unknown source 'bloomberg'" in cli(capsys, "ingest", "--source", "bloomberg", "--data-dir", str(tmp_path))[2]
    )


def test_the_plans_script_runs_a_stage_and_the_full_pipeline(tmp_path):
    (tmp_path / "config").mkdir()
    config = write_config(
        tmp_path / "config", models=QUICK_MODELS
    )  # quick models: the script's stages are under test, not skill
    env = {**os.environ, "TRADING_ML_DATA_DIR": str(tmp_path), "TRADING_ML_CONFIG": str(config)}
    common = ["--symbols", "^GSPC", "--timeframes", "1d", "--as-of", "2026-11-20"]
    script = [sys.executable, str(REPO / "train_production_models.py")]
    ingest = subprocess.run(
        [*script, "--stage", "ingest", *common], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert ingest.returncode == 0, ingest.stderr
    assert "ingest: 1/1 pairs" in ingest.stdout
    full = subprocess.run([*script, "--full-pipeline", *common], env=env, capture_output=True, text=True, cwd=tmp_path)
    assert full.returncode == 0, full.stderr
    assert "validate: 1/1 pairs passed" in full.stdout
    run = json.loads(find_run(tmp_path, "2026-11-20").layout.run_manifest.read_text())  # the full pipeline's run
    assert run["stages"]["validate"]["passed"] == 1 and run["stages"]["features"]["1d"]["training_rows"] > 1000
    assert "skill lower bound" in full.stdout and "volatility_garch" in full.stdout
    again = subprocess.run(
        [*script, "--stage", "validate", *common], env=env, capture_output=True, text=True, cwd=tmp_path
    )
    assert again.returncode == 0 and "skill lower bound" in again.stdout, (
        again.stderr
    )  # the plan's 'validate' judges models
    later = [*script, "--full-pipeline", *common[:-1], "2026-11-23"]
    assert subprocess.run(later, env=env, capture_output=True, text=True, cwd=tmp_path).returncode == 0
    registry = ModelRegistry(TinyStore(tmp_path / "fallback"), tmp_path)
    versions = {(r["model_name"], r["version"]): r for r in registry.records()}
    assert set(versions) == {(name, v) for name in (*TRAINED_MODELS, "direction") for v in ("1.0", "2.0")}
    assert versions[("regime_rf", "1.0")]["run_id"] != versions[("regime_rf", "2.0")]["run_id"]
    assert ModelLoader(registry).load_model("regime_rf", "1.0") is not None  # the first run's files are untouched


def test_two_runs_on_one_day_with_different_symbols_keep_their_own_files_and_records(tmp_path, capsys):
    """What a second manual trigger on the same day did before: reuse version 1.0 and rewrite the
    first run's models in place. Now each run has its own folder, versions and records (quick models:
    files and versions are under test, not skill)."""
    (tmp_path / "config").mkdir()
    config = str(write_config(tmp_path / "config", models=QUICK_MODELS))
    common = ["--timeframes", "1d", "--as-of", "2026-11-20", "--data-dir", str(tmp_path), "--config", config]
    assert cli(capsys, "run", "--symbols", "^GSPC,^VIX,AAPL", *common)[0] == 0
    first = find_runs(tmp_path)[0]
    files = {path: path.read_bytes() for path in first.layout.root.rglob("*") if path.is_file()}
    assert cli(capsys, "run", "--symbols", "^GSPC,^VIX,XOM", *common)[0] == 0
    runs = find_runs(tmp_path)
    assert [r.as_of.isoformat() for r in runs] == ["2026-11-20"] * 2 and runs[0].layout.root != runs[1].layout.root
    assert {
        path: path.read_bytes() for path in first.layout.root.rglob("*") if path.is_file()
    } == files  # not a byte changed
    registry = ModelRegistry(TinyStore(tmp_path / "fallback"), tmp_path)
    for name in (*TRAINED_MODELS, "direction"):
        records = {r["run_id"]: r for r in registry.records(name)}
        assert sorted(r["version"] for r in records.values()) == ["1.0", "2.0"]
        assert records[runs[0].run_id]["symbols"] == ["AAPL", "^GSPC"] and records[runs[1].run_id]["symbols"] == [
            "XOM",
            "^GSPC",
        ]
        for record in records.values():
            assert (
                ModelLoader(registry).load_record(record) is not None
            )  # every file of both runs intact (sha256 checked)


def test_help_names_what_the_catalogue_and_the_stages_hold(capsys, monkeypatch):
    """Choices in the help come from the catalogue, the sources and the stage list, not from text
    that a sixth model would leave behind; every command takes the common options."""
    import pytest

    from trading_ml.cli import parser
    from trading_ml.models.catalogue import MODEL_NAMES
    from trading_ml.sources import spec_forms

    def help_of(*command):
        with pytest.raises(SystemExit):
            parser().parse_args([*command, "--help"])
        return " ".join(capsys.readouterr().out.split())

    train, run = help_of("train"), help_of("run")
    assert all(name in train for name in TRAINED_MODELS) and f"all {len(TRAINED_MODELS)}" in train
    assert all(form in train for form in spec_forms()) and ", ".join(STAGES) in run
    assert all(name in help_of("promote").replace(",", " ").split() for name in MODEL_NAMES)
    for command in ("ingest", "report", "serve", "runs", "history", "sync"):
        assert all(option in help_of(command) for option in ("--data-dir", "--config", "--verbose"))


def test_the_run_starts_deploys_verifier_helper_as_evaluate_begins_and_only_then(small_context, monkeypatch, capsys):
    """The helper's imports (about 5 s) overlap evaluate instead of delaying deploy; a run that does
    not deploy starts none."""
    import trading_ml.cli as cli_module
    import trading_ml.verify as verify

    events: list[str] = []
    monkeypatch.setattr(verify, "start_helper", lambda: events.append("helper"))
    monkeypatch.setattr(cli_module, "RUNNERS", {stage: lambda ctx, res, s=stage: events.append(s) for stage in STAGES})
    monkeypatch.setattr(cli_module, "print_model_table", lambda *args: None)
    monkeypatch.setattr(small_context, "stage_manifest", lambda stage: {})
    monkeypatch.setattr(cli_module, "read_json", lambda path: {})
    cli_module.run_stages(small_context, STAGES)
    assert events == [*STAGES[:4], "helper", *STAGES[4:]]
    events.clear()
    cli_module.run_stages(small_context, ("train", "evaluate"))
    assert events == ["train", "evaluate"]
