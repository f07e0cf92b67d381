"""A run's settings are frozen in its folder when it starts (settings.json, its sha256 in run.json):
every later task and CLI stage of that run reads them, whatever config.yaml says by then."""

import dataclasses
import json

import pytest
import yaml

from tests.conftest import write_config
from trading_ml.cli import main
from trading_ml.config.loader import ENV_DATA_DIR, settings_from_document
from trading_ml.config.settings import settings_differences, settings_document
from trading_ml.drivers import config_parts, load_settings, run_settings
from trading_ml.errors import ConfigError
from trading_ml.run import RunContext, find_runs


def edited(path, change) -> None:
    raw = yaml.safe_load(path.read_text())
    change(raw)
    path.write_text(yaml.safe_dump(raw))


def test_the_frozen_document_reads_back_as_the_same_settings(tmp_path):
    path = write_config(
        tmp_path,
        universe={
            "fx": ["EURUSD=X"],
            "crypto": ["BTC-USD"],
            "indices": [{"symbol": "^VIX", "exchange": "XNYS", "has_volume": False, "max_abs_return": 0.9}],
            "equities": {"exchange": "XNYS", "sectors": {"Tech": ["AAPL", "MSFT"], "Energy": ["XOM"]}},
        },
        sources={"synthetic": {"faults": {"AAPL": ["gap"]}, "signal_strength": 0.05}},
        models={"folds": 3, "regime_rf": {"trees": 7}},
    )
    settings = load_settings(path, env={})
    document = settings_document(settings)
    env = {ENV_DATA_DIR: str(settings.data_dir)}
    again = settings_from_document(json.loads(json.dumps(document)), tmp_path / "settings.json", env, config_parts())
    assert dataclasses.replace(again, config_path=settings.config_path) == settings
    assert "mongo_uri" not in document["storage"] and "data_dir" not in document  # no secret, no location


def test_a_config_edited_during_a_run_does_not_reach_its_later_tasks(tmp_path):
    path = write_config(tmp_path)
    settings = load_settings(path, env={})
    ctx = RunContext.create(settings, "2024-01-02", ["AAPL", "^GSPC"], ["1d"], "synthetic")
    identity = json.loads(ctx.layout.identity.read_text())
    assert identity["settings_sha256"] and ctx.layout.settings_file.is_file()
    edited(path, lambda raw: raw["models"].update(folds=2))
    later = run_settings(ctx.to_dict())
    assert later.models.folds == settings.models.folds == 4 and load_settings(path, env={}).models.folds == 2
    assert later.storage.fallback_dir == settings.storage.fallback_dir and later.data_dir == settings.data_dir


def test_an_altered_settings_file_is_refused_naming_it(tmp_path):
    settings = load_settings(write_config(tmp_path), env={})
    ctx = RunContext.create(settings, "2024-01-02", ["AAPL"], ["1d"], "synthetic")
    document = json.loads(ctx.layout.settings_file.read_text())
    document["models"]["folds"] = 2
    ctx.layout.settings_file.write_text(json.dumps(document))
    with pytest.raises(ConfigError, match=r"settings.json is not what run .* froze when it started"):
        run_settings(ctx.to_dict())


def test_a_run_that_froze_no_settings_reads_the_config(tmp_path):
    path = write_config(tmp_path)
    ctx = RunContext.create(load_settings(path, env={}), "2024-01-02", ["AAPL"], ["1d"], "synthetic")
    ctx.layout.settings_file.unlink()
    edited(path, lambda raw: raw["models"].update(folds=2))
    assert run_settings(ctx.to_dict()).models.folds == 2


def test_a_cli_stage_continues_with_the_runs_settings_names_the_change_and_runs_diff_shows_it(tmp_path, capsys, caplog):
    path = write_config(tmp_path)
    base = ["--config", str(path), "--symbols", "AAPL,^GSPC", "--timeframes", "1d", "--source", "synthetic"]
    assert main(["ingest", *base]) == 0
    edited(path, lambda raw: raw["validation"].update(min_pass_share=0.5))
    capsys.readouterr()
    assert main(["validate", "--config", str(path)]) == 0
    warned = [r.getMessage() for r in caplog.records if "keeps the settings it started with" in r.getMessage()]
    assert len(warned) == 1 and warned[0].endswith("the config differs now in validation.min_pass_share")
    assert main(["ingest", *base]) == 0
    first, second = find_runs(tmp_path / "data")
    frozen = [run.layout.frozen_settings() for run in (first, second)]
    assert settings_differences(*frozen) == [("validation.min_pass_share", 0.8, 0.5)]
    capsys.readouterr()
    assert main(["runs", "--config", str(path), "--diff", first.run_id, second.run_id]) == 0
    out = capsys.readouterr().out
    assert "validation.min_pass_share" in out and "0.8" in out and "0.5" in out
    assert ENV_DATA_DIR not in out
    from trading_ml.overview import compare_runs

    rows = [
        row
        for row in compare_runs(tmp_path / "data", first.run_id, second.run_id)["differences"]
        if row["field"].startswith("setting")
    ]
    assert rows == [
        {"field": "setting validation.min_pass_share", "first": 0.8, "second": 0.5, "note": "settings.json"}
    ]
