"""A year of quarterly retraining does not get stuck: four as-of dates in sequence, a symbol dropping
out in one quarter (quarantined), and production moves whenever a new model's skill is significant
and it is not significantly worse than production on the symbols both share. Through the CLI here;
through Airflow's scheduler in tests/dags/test_backfill.py."""

from __future__ import annotations

import yaml

from tests.conftest import QUARTERS, QUICK_MODELS, REPO, merged
from trading_ml.cli import main
from trading_ml.drivers import load_settings
from trading_ml.registry import ModelRegistry
from trading_ml.run import find_runs
from trading_ml.storage.tiny import TinyStore

SYMBOLS = ["^GSPC", "^VIX", "AAPL", "MSFT", "JPM", "XOM", "JNJ", "WMT"]
DROPS_OUT = ("JPM", 1)  # JPM is quarantined in the second quarter (a data gap over the 5% limit)
MODEL = "direction_xgboost"
PLANTED = 0.3  # strong enough that each quarter's quick model finds it on 7 symbols


def quarter_config(folder, faults: dict) -> str:
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["data_dir"] = str(folder / "data")
    raw["models"] = merged(raw["models"], QUICK_MODELS)
    raw["sources"]["synthetic"] = {**raw["sources"]["synthetic"], "faults": faults, "signal_strength": PLANTED}
    path = folder / f"config-{len(faults)}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def decisions_by_quarter(data_dir) -> list[dict]:
    runs = sorted(find_runs(data_dir), key=lambda run: run.as_of)
    return [json_of(run.layout.deploy_manifest)["decisions"][MODEL] for run in runs]


def json_of(path):
    import json

    return json.loads(path.read_text())


def test_four_quarters_with_a_symbol_dropping_out_keep_production_moving(tmp_path, capsys):
    clean, gapped = quarter_config(tmp_path, {}), quarter_config(tmp_path, {DROPS_OUT[0]: ["gap"]})
    for number, as_of in enumerate(QUARTERS):
        config = gapped if number == DROPS_OUT[1] else clean
        code = main(
            [
                "run",
                "--symbols",
                ",".join(SYMBOLS),
                "--timeframes",
                "1d",
                "--as-of",
                as_of,
                "--models",
                MODEL,
                "--config",
                config,
            ]
        )
        assert code == 0, capsys.readouterr().err
    decisions = decisions_by_quarter(tmp_path / "data")
    assert len(decisions) == 4
    for decision in decisions:
        assert "cannot be scored" not in decision["reason"], decision["reason"]
    after_drop, back = decisions[DROPS_OUT[1]], decisions[DROPS_OUT[1] + 1]
    for decision, only in ((after_drop, "only_production"), (back, "only_this_run")):
        versus = decision["evidence"].get("versus_production")
        if versus:  # compared on the shared symbols: the quarantined one is on one side only
            assert versus["symbols"][only] == [DROPS_OUT[0]], versus["symbols"]
    promoted = [d for d in decisions if d["status"] == "production"]
    for decision in decisions:  # promoted exactly when significant and not significantly worse than production
        significant = decision["evidence"]["skill"]["better"]
        worse = decision["evidence"].get("versus_production", {}).get("worse", False)
        assert (decision["status"] == "production") == (significant and not worse), decision["reason"]
    assert len(promoted) >= 3, [d["reason"] for d in decisions]  # the planted signal is found most quarters
    settings = load_settings(clean)
    pointer = ModelRegistry(TinyStore(settings.storage.fallback_dir), settings.data_dir).production(MODEL)
    assert len(pointer["history"]) == len(promoted)  # every promotion moved the one production pointer
