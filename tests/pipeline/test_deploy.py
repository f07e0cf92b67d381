"""The deploy gate end to end: a random-walk market promotes no direction model, a planted signal is
found and promoted, a run on another universe leaves production alone, a person can still promote
by hand, and the signals API answers for every symbol whatever is in production."""

from __future__ import annotations

import dataclasses
import json

import pytest

from tests.conftest import AS_OF, make_settings, quick
from tests.stages import deploy_as_if_evaluated, run_through
from tests.test_serving import start_api  # noqa: F401 - the fixture
from trading_ml.cli import main
from trading_ml.models.catalogue import models_of
from trading_ml.pipeline.report import report as write_run_report
from trading_ml.pipeline.resources import StageResources
from trading_ml.registry import ModelRegistry
from trading_ml.run import RunContext

DIRECTION = models_of("direction")
RANDOM_WALK_SYMBOLS = ["^GSPC", "^VIX", "AAPL", "MSFT", "GOOGL", "NVDA", "JPM", "BAC", "XOM", "CVX", "WMT", "JNJ"]


def with_strength(settings, strength: float):
    synthetic = {**settings.sources.get("synthetic", {}), "signal_strength": strength}
    return dataclasses.replace(settings, sources={**settings.sources, "synthetic": synthetic})


def full_run(settings, symbols):
    ctx = RunContext.create(settings, AS_OF, symbols, ["1d"], "synthetic")
    resources = StageResources.open(ctx)
    done = run_through(ctx, resources, "deploy")
    return ctx, resources, done["evaluate"], done["deploy"]


@pytest.fixture(scope="module")
def random_walk(tmp_path_factory):
    settings = with_strength(quick(make_settings(tmp_path_factory.mktemp("random_walk") / "data")), 0.0)
    return full_run(settings, RANDOM_WALK_SYMBOLS)


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The README's run on 1d bars: the whole configured universe, its models, the default planted signal."""
    settings = make_settings(tmp_path_factory.mktemp("planted") / "data")
    return full_run(settings, settings.symbols)


def test_a_random_walk_promotes_no_direction_model(random_walk):
    ctx, resources, evaluated, deployed = random_walk
    for name in DIRECTION:
        decision = deployed["decisions"][name]
        assert decision["status"] == "candidate" and "no significant skill" in decision["reason"], decision
        assert evaluated["models"][name]["skill"]["lower_bound"] <= 0
    assert not set(DIRECTION) & set(ModelRegistry(resources.store, ctx.settings.data_dir).production_versions())


def test_the_planted_signal_is_found_and_promoted_with_an_interval_that_excludes_zero(planted):
    ctx, resources, evaluated, deployed = planted
    promoted = [name for name in DIRECTION if deployed["decisions"][name]["status"] == "production"]
    assert promoted, {name: deployed["decisions"][name]["reason"] for name in DIRECTION}
    for name in promoted:  # the gate's one-sided bound is above zero
        assert (
            evaluated["models"][name]["primary"]["metric"] == "rank_ic"
            and evaluated["models"][name]["skill"]["lower_bound"] > 0
        )
    assert any(
        evaluated["models"][name]["primary"]["low"] > 0 for name in promoted
    )  # and a two-sided 95% interval excludes it
    strict = json.loads(
        ctx.layout.evaluation_report.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in evaluation.json")
    )
    assert strict["planted_signal"] == ctx.settings.sources["synthetic"]["signal_strength"]
    report = write_run_report(ctx, resources)
    page = (ctx.run_root / report["html"]).read_text()
    assert "Planted signal" in page and "Recovered" in page


def test_deploy_again_reproduces_its_decisions_and_evidence_and_adds_no_history(planted):
    """An Airflow retry, or a re-run after kill -9 right after promoting: the same decisions, reasons and
    evidence (versus_production kept), the same production pointers, no new history entry."""
    from trading_ml.pipeline.deploy import deploy

    ctx, resources, _, first = planted
    registry = ModelRegistry(resources.store, ctx.settings.data_dir)
    pointers = {name: registry.production(name) for name in first["decisions"]}
    again = deploy(ctx, resources=resources)
    for name, decision in first["decisions"].items():
        assert again["decisions"][name] == decision, name
        record = registry.record_for_run(name, ctx.run_id)
        assert record["deploy_decision"] == decision["reason"] and record["deploy_evidence"] == decision["evidence"]
        assert registry.production(name) == pointers[name]


def test_the_regime_forest_is_promoted_only_when_its_forecast_beats_persistence(planted, random_walk):
    for _, _, evaluated, deployed in (planted, random_walk):
        skill, decision = evaluated["models"]["regime_rf"]["skill"], deployed["decisions"]["regime_rf"]
        assert skill["baseline"] in ("persistence", "random_walk") and skill["metric"] == "accuracy"
        assert (decision["status"] == "production") == skill["better"], decision


def test_a_run_on_another_universe_is_compared_on_the_symbols_both_share(planted):
    """A symbol added (NOPE) and 14 dropped do not freeze production: the candidate is compared with
    it on the 12 symbols both have, and replaces it unless significantly worse there."""
    ctx, resources, evaluated, _ = planted
    registry = ModelRegistry(resources.store, ctx.settings.data_dir)
    before = {name: registry.production(name) for name in evaluated["models"]}
    other_ctx, other_resources, other_evaluated, other = full_run(ctx.settings, ["NOPE", *ctx.settings.symbols[:12]])
    in_production = [name for name, pointer in before.items() if pointer]
    assert in_production
    for name in in_production:  # the run's own deploy compared on the shared symbols, or found no skill
        reason = other["decisions"][name]["reason"]
        assert "cannot be scored" not in reason and (
            "on the 11 symbols both have" in reason or "no significant skill" in reason
        ), reason
        registry.promote(name, before[name]["run_id"], "put back for the forced comparison")
    skilled = {
        name: {**other_evaluated["models"][name], "skill": {**other_evaluated["models"][name]["skill"], "better": True}}
        for name in in_production
    }
    forced = deploy_as_if_evaluated(other_ctx, other_resources, skilled)  # as if each had shown skill
    for name, decision in forced["decisions"].items():
        assert "versus_production" in decision["evidence"], decision["reason"]
        versus = decision["evidence"]["versus_production"]
        assert versus["symbols"]["only_this_run"] == ["NOPE"] and len(versus["symbols"]["shared"]) == 11, versus[
            "symbols"
        ]  # ^VIX is no row
        assert (
            "on the 11 symbols both have (only in production: " in decision["reason"]
            and "only in this run: NOPE)" in decision["reason"]
        )
        assert versus["days"] >= ctx.settings.models.min_compare_days
        assert (decision["status"] == "production") == (not versus["worse"]), decision
        expected = other_ctx.run_id if decision["status"] == "production" else before[name]["run_id"]
        assert registry.production(name)["run_id"] == expected

    version = registry.record_for_run("direction", other_ctx.run_id)["version"]
    argv = ["promote", "direction", version, "--reason", "checked by hand", "--data-dir", str(ctx.settings.data_dir)]
    assert (
        main(["promote", "direction", "99.0", "--data-dir", str(ctx.settings.data_dir)]) == 2
    )  # no such version: bad input
    assert main(argv) == 0
    assert registry.production("direction")["run_id"] == other_ctx.run_id
    assert (
        registry.record_for_run("direction", other_ctx.run_id)["deploy_decision"]
        == "promoted by hand (trading-ml promote): checked by hand"
    )
    assert registry.promote("direction", before["direction"]["run_id"], "put back") if before["direction"] else True


def test_the_api_answers_for_every_symbol_and_names_model_or_baseline(planted, random_walk, start_api):  # noqa: F811
    for ctx, resources, _, _ in (planted, random_walk):
        client = start_api(ctx.settings)
        symbols = sorted({s for s in ctx.symbols})
        answer = client.post("/signals/generate", json={"symbols": symbols})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        production = ModelRegistry(resources.store, ctx.settings.data_dir).production_versions()
        for task, used in body["models"].items():
            assert used["source"] in ("model", "baseline")
            assert (used["source"] == "model") == any(name in production for name in models_of(task)), (
                task,
                used,
                production,
            )
        assert [s["symbol"] for s in body["signals"]] == symbols
        health = client.get("/health").json()
        baselines = [task for task, used in body["models"].items() if used["source"] == "baseline"]
        assert health["status"] == (
            "ok" if not baselines else "degraded: " + "; ".join(f"{t} served by its baseline" for t in baselines)
        )
    assert body["models"]["direction"]["source"] == "baseline"  # the random walk promoted no direction model
