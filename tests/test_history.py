"""`trading-ml history`: what production served between quarterly runs, beside always promoting the
latest model and the baselines, out of sample and with intervals."""

from __future__ import annotations

import json

from tests.test_retraining import QUARTERS, SYMBOLS, quarter_config
from trading_ml.cli import main

MODEL = "direction_xgboost"


def test_history_scores_what_production_served_between_runs(tmp_path, capsys):
    """Four quarters; the third run does not deploy, so the model it trained is the latest but
    production stays the second's for the last period."""
    config = quarter_config(tmp_path, {})
    for number, as_of in enumerate(QUARTERS):
        stages = ["run"] if number != 2 else ["ingest", "validate", "features", "train", "evaluate"]
        for stage in stages:
            options = ["--symbols", ",".join(SYMBOLS), "--timeframes", "1d", "--models", MODEL] if stage in ("run", "ingest") else []
            assert main([stage, *options, "--as-of", as_of, "--config", config]) == 0, stage
    capsys.readouterr()
    assert main(["history", MODEL, "--config", config]) == 0
    out = capsys.readouterr().out
    history = json.loads((tmp_path / "data" / "history" / f"{MODEL}.json").read_text())
    periods = history["periods"]
    assert [(p["from"], p["to"]) for p in periods] == list(zip(QUARTERS, QUARTERS[1:], strict=False))
    assert [p["latest"] for p in periods] == ["1.0", "2.0", "3.0"]
    assert [p["served"] for p in periods] == ["1.0", "2.0", "2.0"]  # run 3 did not deploy: 2.0 kept serving
    assert all(p["rows"] > 0 for p in periods) and history["rows"] <= sum(p["rows"] for p in periods)
    for figure in (history["served"]["rank_ic"], history["latest"]["rank_ic"], history["baselines"]["class_prior"]["rank_ic"]):
        assert figure["low"] <= figure["value"] <= figure["high"]
    assert history["served"]["rank_ic"]["value"] > history["baselines"]["class_prior"]["rank_ic"]["value"]  # the planted signal, served
    assert history["served_minus_latest"]["low"] <= history["served_minus_latest"]["value"] <= history["served_minus_latest"]["high"]
    assert "served by production" in out and "always the latest" in out and "served minus latest" in out
    assert main(["report", "--regenerate", "--config", config]) == 0  # the newest run's report shows the history
    page = next((tmp_path / "data" / "runs" / QUARTERS[-1]).glob("*/report.html")).read_text()
    assert "Deployment history" in page and f"{QUARTERS[0]}..{QUARTERS[1]}: 1.0" in page


def test_history_needs_two_runs_and_a_known_model(tmp_path, capsys):
    config = quarter_config(tmp_path, {})
    assert main(["history", "nope", "--config", config]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["history", MODEL, "--config", config]) == 2
    assert "needs at least 2 runs" in capsys.readouterr().err
