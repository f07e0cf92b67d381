"""The registry through the whole pipeline: versions, sha256 checks, deploy decisions, the plan's API."""

from __future__ import annotations

import json
import os

import pytest

from tests.conftest import make_settings
from trading_ml import pipeline
from trading_ml.config import RunContext
from trading_ml.errors import DataError
from trading_ml.models import TRAINED_MODELS
from trading_ml.registry import MODEL_CLASSES, ModelNotFound, ModelRegistry

SYMBOLS = ["^GSPC", "^VIX", "AAPL", "XOM", "JPM", "MSFT"]


def test_the_light_list_of_model_names_matches_the_model_classes():
    assert tuple(MODEL_CLASSES) == TRAINED_MODELS  # the DAG reads TRAINED_MODELS without importing torch


def full_run(settings, as_of):
    ctx = RunContext.create(settings, as_of, SYMBOLS, ["1d"], "synthetic")
    resources = pipeline.StageResources.open(ctx)
    validated = pipeline.validate(ctx, pipeline.ingest_all(ctx, resources), resources)
    features = pipeline.build_features(ctx, validated, resources)
    trained = [pipeline.train(ctx, name, features, resources) for name in pipeline.MODELS]
    evaluated = pipeline.evaluate(ctx, trained, resources)
    return ctx, resources, trained, evaluated, pipeline.deploy(ctx, evaluated, resources)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, mongo_server):
    """Two training runs (as-of a quarter apart) into the SecantusDB fixture."""
    settings = make_settings(tmp_path_factory.mktemp("registry"), mongo_server.uri)
    first = full_run(settings, "2026-08-20")
    second = full_run(settings, "2026-11-20")
    return settings, first, second


def test_every_model_is_registered_with_the_plans_metadata_in_mongodb(two_runs):
    _, (ctx, resources, trained, evaluated, deployed), _ = two_runs
    assert resources.store.kind == "mongodb"
    registry = ModelRegistry(resources.store)
    names = {r["model_name"] for r in registry.records()}
    assert names == set(pipeline.MODELS) | {"direction"}
    record = registry.record("direction_xgboost", "1.0")
    for field in ("model_name", "version", "trained_date", "training_samples", "test_metrics", "symbols",
                  "feature_count", "timeframe", "artifacts", "feature_names", "data_window", "run_id", "config_hash", "status"):
        assert field in record, field
    assert record["timeframe"] == "1d" and record["run_id"] == ctx.run_id and record["feature_count"] == len(record["feature_names"])
    assert record["artifacts"][0]["path"].endswith("direction_xgboost_v1.0.json") and len(record["artifacts"][0]["sha256"]) == 64
    assert resources.store.get_file("direction_xgboost_v1.0.json") is not None  # GridFS holds a copy
    report = json.loads((ctx.run_root / pipeline.EVALUATION_REPORT).read_text())
    for name, summary in evaluated["models"].items():
        assert registry.record(name, summary["version"])["test_metrics"]["primary"] == report["models"][name]["primary"]
    assert set(deployed["decisions"]) == set(evaluated["models"])


def test_versions_increase_per_run_and_the_old_version_is_untouched(two_runs):
    _, first, second = two_runs
    registry = ModelRegistry(second[1].store)
    assert [m["version"] for m in first[2]] == ["1.0"] * 5 and [m["version"] for m in second[2]] == ["2.0"] * 5
    old = registry.record("regime_rf", "1.0")
    assert old["run_id"] == first[0].run_id
    for artifact in old["artifacts"]:
        assert os.path.exists(artifact["path"])
    assert registry.load_model("regime_rf", "1.0") is not None


def test_rerunning_a_stage_reuses_the_runs_version(two_runs):
    settings, _, (ctx, resources, trained, _, _) = two_runs
    features = json.loads((ctx.run_root / pipeline.FEATURES_MANIFEST).read_text())
    again = pipeline.train(ctx, "regime_rf", features, resources)
    assert again["version"] == "2.0"
    assert len([r for r in ModelRegistry(resources.store).records("regime_rf")]) == 2


def test_deploy_promotes_only_winners_and_says_why(two_runs):
    _, _, (ctx, resources, _, evaluated, deployed) = two_runs
    registry = ModelRegistry(resources.store)
    for name, decision in deployed["decisions"].items():
        summary = evaluated["models"][name]
        record = registry.record(name, decision["version"])
        assert record["deploy_decision"] == decision["reason"]
        if not summary["beats_baselines"]:
            assert decision["status"] == "candidate" and "does not beat its baselines" in decision["reason"]
        if decision["status"] == "production":
            assert "promoted" in decision["reason"]
    for name in registry.records():
        production = [r for r in registry.records(name["model_name"]) if r["status"] == "production"]
        assert len(production) <= 1


def test_a_tampered_artifact_or_record_is_refused(two_runs):
    _, (ctx, resources, trained, _, _), _ = two_runs
    registry = ModelRegistry(resources.store)
    path = registry.record("volatility_garch", "1.0")["artifacts"][0]["path"]
    original = open(path, "rb").read()
    try:
        with open(path, "ab") as handle:
            handle.write(b" ")
        with pytest.raises(DataError, match="does not match its registry sha256"):
            registry.load_model("volatility_garch", "1.0")
    finally:
        with open(path, "wb") as handle:
            handle.write(original)
    assert registry.load_model("volatility_garch", "1.0") is not None
    record = registry.record("volatility_garch", "1.0")
    registry.update("volatility_garch", "1.0", artifacts=[{**record["artifacts"][0], "sha256": "0" * 64}])
    try:
        with pytest.raises(DataError, match="does not match its registry sha256"):
            registry.load_model("volatility_garch", "1.0")
    finally:
        registry.update("volatility_garch", "1.0", artifacts=record["artifacts"])


def test_unknown_names_and_versions_say_what_exists(two_runs):
    registry = ModelRegistry(two_runs[1][1].store)
    with pytest.raises(ModelNotFound, match="unknown model 'momentum'"):
        registry.load_model("momentum")
    with pytest.raises(ModelNotFound, match="has no version 9.0; versions: 1.0, 2.0"):
        registry.load_model("regime_rf", "9.0")


def test_the_plans_check_works_as_written(two_runs, monkeypatch):
    settings, _, _ = two_runs
    monkeypatch.setenv("TRADING_ML_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("TRADING_ML_MONGO_URI", settings.storage.mongo_uri)
    from logical_pipe import ConfigLoader, TradingSystemAPI

    loader = ConfigLoader("config.yaml")
    loader.settings = settings  # the test's own database name
    api = TradingSystemAPI(loader)
    result = api.model_manager.load_model("direction", version="1.0")
    assert result is not None and [m.name for m in result.members] == ["direction_xgboost", "direction_lstm"]


def test_deploy_keeps_a_loser_as_candidate_and_production_untouched(two_runs):
    """Run 2's regime model handed to deploy as a loser: once losing to persistence, once scoring
    below production 1.0 on the same test rows. Statuses are put back afterwards."""
    _, _, (ctx, resources, _, evaluated, _) = two_runs
    registry, name = ModelRegistry(resources.store), "regime_rf"
    saved = {r["version"]: {"status": r["status"], "deploy_decision": r.get("deploy_decision")} for r in registry.records(name)}
    manifest = (ctx.run_root / pipeline.DEPLOY_MANIFEST).read_bytes()
    summary = evaluated["models"][name]
    loses_to_baseline = {**summary, "beats_baselines": False}
    worse_than_production = {**summary, "primary": {**summary["primary"], "value": 0.0}}
    try:
        registry.update(name, "1.0", status="production")
        registry.update(name, "2.0", status="candidate")
        for forced, phrase in ((loses_to_baseline, "does not beat its baselines"), (worse_than_production, "worse than production: ")):
            decision = pipeline.deploy(ctx, {"models": {name: forced}}, resources)["decisions"][name]
            assert decision["status"] == "candidate" and phrase in decision["reason"], decision
            assert registry.record(name, "2.0")["deploy_decision"] == decision["reason"]
            assert registry.record(name)["version"] == "1.0"
        assert "vs production 1.0" in decision["reason"]
    finally:
        for version, fields in saved.items():
            registry.update(name, version, **fields)
        (ctx.run_root / pipeline.DEPLOY_MANIFEST).write_bytes(manifest)


def test_an_older_run_does_not_replace_a_model_fitted_on_its_test_segment(two_runs):
    """As a backfill does: run 1 (as-of 2026-08-20) deployed after run 2 (2026-11-20) is in production.
    Run 2 saw run 1's test months in training, so scoring it there would favour it unfairly."""
    _, (ctx, resources, _, evaluated, _), _ = two_runs
    registry, name = ModelRegistry(resources.store), "regime_rf"
    saved = {r["version"]: {"status": r["status"], "deploy_decision": r.get("deploy_decision")} for r in registry.records(name)}
    manifest = (ctx.run_root / pipeline.DEPLOY_MANIFEST).read_bytes()
    try:
        registry.update(name, "2.0", status="production")
        registry.update(name, "1.0", status="candidate")
        decision = pipeline.deploy(ctx, {"models": {name: evaluated["models"][name]}}, resources)["decisions"][name]
        assert decision["status"] == "candidate" and "an older run does not replace a newer model" in decision["reason"]
        assert registry.record(name)["version"] == "2.0"
    finally:
        for version, fields in saved.items():
            registry.update(name, version, **fields)
        (ctx.run_root / pipeline.DEPLOY_MANIFEST).write_bytes(manifest)
