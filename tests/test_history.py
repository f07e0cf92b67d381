"""`trading-ml history`: what production served between quarterly runs, beside always promoting the
latest model and the baselines, out of sample and with intervals."""

from __future__ import annotations

import json

import pytest

from tests.conftest import QUARTERLY_MODELS, QUARTERS
from tests.test_retraining import quarter_config
from trading_ml.cli import main
from trading_ml.models.tasks import TASKS
from trading_ml.run import find_runs

MODEL, VOLATILITY, REGIME = QUARTERLY_MODELS


def test_history_scores_what_production_served_between_runs(quarterly_runs, capsys):
    """Nothing is production in the first period (the gate's baseline served); the third run did not
    deploy: the model it trained is the latest, production stays the second's for the last period.
    Before: the versions trained with the VIX features could not predict the third quarter's table
    and the whole history exited 2; now that period is skipped, saying why."""
    folder, config = quarterly_runs
    capsys.readouterr()
    assert main(["history", MODEL, "--config", config]) == 0
    out = capsys.readouterr().out
    history = json.loads((folder / "data" / "history" / f"{MODEL}.json").read_text())
    periods = history["periods"]
    assert [(p["from"], p["to"]) for p in periods] == list(zip(QUARTERS, QUARTERS[1:], strict=False))
    assert [p["latest"] for p in periods] == ["1.0", "2.0", "3.0"]
    assert [p["served"] for p in periods] == [
        "baseline (class_prior)",
        "2.0",
        "2.0",
    ]  # run 3 did not deploy: 2.0 kept serving
    skipped = periods[1]
    assert (
        skipped["rows"] == 0
        and "2.0 cannot predict this period's rows" in skipped["skipped"]
        and "vix" in skipped["skipped"]
    )
    assert periods[0]["rows"] > 0 and periods[2]["rows"] > 0 and "skipped" not in periods[0]
    assert history["rows"] == sum(p["rows"] for p in periods)  # the header counts the rows the periods scored
    assert (
        f"2 of 3 periods between 4 runs scored, {history['rows']:,} rows" in out
        and "skipped: direction_xgboost 2.0" in out
    )
    for figure in (
        history["served"]["rank_ic"],
        history["latest"]["rank_ic"],
        history["baselines"]["class_prior"]["rank_ic"],
    ):
        assert figure["low"] <= figure["value"] <= figure["high"]
    assert (
        history["served"]["rank_ic"]["value"] > history["baselines"]["class_prior"]["rank_ic"]["value"]
    )  # the planted signal, served
    advantage = history["served_advantage"]
    assert advantage["low"] <= advantage["value"] <= advantage["high"]
    assert advantage["value"] == pytest.approx(
        history["served"]["rank_ic"]["value"] - history["latest"]["rank_ic"]["value"], abs=1e-9
    )
    assert "served by production" in out and "always the latest" in out and "served's advantage over latest" in out
    assert main(["report", "--regenerate", "--config", config]) == 0  # the newest run's report shows the history
    page = next((folder / "data" / "runs" / QUARTERS[-1]).glob("*/report.html")).read_text()
    assert (
        "Deployment history" in page
        and f"{QUARTERS[0]}..{QUARTERS[1]}: baseline (class_prior)" in page
        and "(skipped: direction_xgboost 2.0" in page
    )


def test_history_of_a_lower_is_better_metric_keeps_its_sign(quarterly_runs, capsys):
    """Before: 'served minus latest' printed latest minus served for RMSE-like metrics (served 0.0005969,
    latest 0.0005898 printed as -7.06e-06). Now it is served's advantage, positive when served did better."""
    folder, config = quarterly_runs
    capsys.readouterr()
    assert main(["history", VOLATILITY, "--config", config]) == 0
    out = capsys.readouterr().out
    history = json.loads((folder / "data" / "history" / f"{VOLATILITY}.json").read_text())
    metric = history["metric"]
    assert history["lower_is_better"] is True and history["rows"] == sum(p["rows"] for p in history["periods"])
    served, latest, advantage = (
        history["served"][metric]["value"],
        history["latest"][metric]["value"],
        history["served_advantage"]["value"],
    )
    assert advantage == pytest.approx(
        latest - served, rel=1e-6, abs=1e-15
    )  # positive exactly when served had the lower loss
    assert f"{metric} lower is better" in out and "positive: what was served did better" in out


def test_before_any_promotion_the_baseline_the_gate_judged_against_is_what_served(quarterly_runs, capsys):
    """Before: 'served' was the task's fixed baseline (persistence for the regime) while the gate had judged
    the model against another (the random walk), which made the gate look costly when it was right."""
    folder, config = quarterly_runs
    assert main(["history", REGIME, "--config", config]) == 0
    history = json.loads((folder / "data" / "history" / f"{REGIME}.json").read_text())
    first = sorted(find_runs(folder / "data"), key=lambda run: run.as_of)[0]
    gate = json.loads(first.layout.evaluation_report.read_text())["models"][REGIME]["skill"]["baseline"]
    assert gate != TASKS["regime"].served_baseline  # the case where the two differ
    assert history["periods"][0]["served"] == f"baseline ({gate})"
    first_period = [p for p in history["periods"] if p["from"] == QUARTERS[0]][0]
    assert first_period["rows"] > 0


def test_history_needs_two_runs_and_a_known_model(tmp_path, capsys):
    config = quarter_config(tmp_path, {})
    assert main(["history", "nope", "--config", config]) == 2
    assert "unknown model 'nope'" in capsys.readouterr().err
    assert main(["history", MODEL, "--config", config]) == 2
    assert "needs at least 2 runs" in capsys.readouterr().err
