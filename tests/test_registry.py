"""The registry through the whole pipeline: versions per run, sha256 checks, deploy decisions, the
plan's API; and custody: loading reads only verified files derived from the record and runs no code."""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys

import pandas as pd
import pytest

from tests.conftest import REPO, make_settings
from tests.crafted import marker_code, skops_with_exec
from tests.stages import deploy_as_if_evaluated, run_through
from trading_ml.errors import DataError, UnknownModel
from trading_ml.io import sha256_bytes
from trading_ml.loading import ModelLoader
from trading_ml.models import TRAINED_MODELS
from trading_ml.models.catalogue import MODEL_NAMES
from trading_ml.pipeline.resources import StageResources
from trading_ml.pipeline.train import train
from trading_ml.registry import ModelNotFound, ModelRegistry
from trading_ml.run import RunContext, folder_name, runs_root
from trading_ml.storage import TinyStore

SYMBOLS = ["^GSPC", "^VIX", "AAPL", "XOM", "JPM", "MSFT"]


def test_the_registry_report_serving_and_airflow_plugin_load_without_torch():
    """The catalogue imports a model class only when one is loaded, so listing and reporting stay light."""
    code = (
        "import sys, importlib; sys.path.insert(0, 'plugins'); "
        "[importlib.import_module(m) for m in ('trading_ml.registry', 'trading_ml.report', 'trading_ml.serving', "
        "'trading_ml_plugin')]; "
        "print(sorted(m for m in ('torch', 'xgboost') if m in sys.modules))"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert result.stdout.strip().splitlines()[-1] == "[]", (
        result.stdout + result.stderr
    )  # Airflow may log a warning before it


def full_run(settings, as_of, symbols=SYMBOLS):
    ctx = RunContext.create(settings, as_of, symbols, ["1d"], "synthetic")
    resources = StageResources.open(ctx)
    done = run_through(ctx, resources, "deploy")
    return ctx, resources, done["train"], done["evaluate"], done["deploy"]


def registry_of(resources, settings) -> ModelRegistry:
    return ModelRegistry(resources.store, settings.data_dir)


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory, mongo_server):
    """Two training runs (as-of a quarter apart) into the SecantusDB fixture."""
    settings = make_settings(tmp_path_factory.mktemp("registry"), mongo_server.uri)
    first = full_run(settings, "2026-08-20")
    second = full_run(settings, "2026-11-20")
    return settings, first, second


def test_every_model_is_registered_with_the_plans_metadata_in_mongodb(two_runs):
    settings, (ctx, resources, trained, evaluated, deployed), _ = two_runs
    assert resources.store.kind == "mongodb"
    registry = registry_of(resources, settings)
    names = {r["model_name"] for r in registry.records()}
    assert names == set(TRAINED_MODELS) | {"direction"}
    record = registry.record("direction_xgboost", "1.0")
    for field in (
        "model_name",
        "version",
        "trained_date",
        "training_samples",
        "test_metrics",
        "symbols",
        "feature_count",
        "timeframe",
        "artifacts",
        "feature_names",
        "data_window",
        "run_id",
        "config_hash",
        "status",
    ):
        assert field in record, field
    assert (
        record["timeframe"] == "1d"
        and record["run_id"] == ctx.run_id
        and record["feature_count"] == len(record["feature_names"])
    )
    expected = str(ctx.layout.model_file("direction_xgboost", ".json").relative_to(runs_root(settings.data_dir)))
    assert record["artifacts"][0]["path"] == expected and len(record["artifacts"][0]["sha256"]) == 64
    assert sha256_bytes(resources.store.get_file(expected)) == record["artifacts"][0]["sha256"]  # GridFS holds a copy
    report = json.loads(ctx.layout.evaluation_report.read_text())
    for name, summary in evaluated["models"].items():
        assert registry.record(name, summary["version"])["test_metrics"]["primary"] == report["models"][name]["primary"]
    assert set(deployed["decisions"]) == set(evaluated["models"])


def test_versions_increase_per_run_and_the_old_version_is_untouched(two_runs):
    settings, first, second = two_runs
    registry = registry_of(second[1], settings)
    models = len(MODEL_NAMES)  # the five trained and the ensemble combined from two of them
    assert [m["version"] for m in first[2]] == ["1.0"] * models
    assert [m["version"] for m in second[2]] == ["2.0"] * models
    old = registry.record("regime_rf", "1.0")
    assert old["run_id"] == first[0].run_id
    for artifact in old["artifacts"]:
        assert (runs_root(settings.data_dir) / artifact["path"]).is_file()
    assert ModelLoader(registry).load_model("regime_rf", "1.0") is not None


def test_rerunning_a_stage_reuses_the_runs_version(two_runs):
    settings, _, (ctx, resources, trained, _, _) = two_runs
    again = train(ctx, "regime_rf", resources=resources)
    assert again["version"] == "2.0"
    assert len(registry_of(resources, settings).records("regime_rf")) == 2


def test_deploy_promotes_only_winners_and_says_why(two_runs):
    settings, _, (ctx, resources, _, evaluated, deployed) = two_runs
    registry = registry_of(resources, settings)
    for name, decision in deployed["decisions"].items():
        summary = evaluated["models"][name]
        record = registry.record_for_run(name, ctx.run_id)
        assert record["deploy_decision"] == decision["reason"] and record["status"] == decision["status"]
        if not summary["skill"]["better"]:
            assert decision["status"] != "production" and "no significant skill" in decision["reason"]
        if decision["status"] == "production":
            assert "promoted: significant skill" in decision["reason"] and summary["skill"]["lower_bound"] > 0
        assert record["deploy_evidence"]["skill"] == summary["skill"]
    for name in registry.production_versions():
        assert len([r for r in registry.records(name) if r["status"] == "production"]) == 1


def test_a_tampered_artifact_or_record_is_refused(two_runs):
    settings, (ctx, resources, trained, _, _), _ = two_runs
    registry = registry_of(resources, settings)
    record = registry.record("volatility_garch", "1.0")
    path = runs_root(settings.data_dir) / record["artifacts"][0]["path"]
    original = path.read_bytes()
    try:
        path.write_bytes(original + b" ")
        with pytest.raises(DataError, match="does not match its registry sha256"):
            ModelLoader(registry).load_model("volatility_garch", "1.0")
    finally:
        path.write_bytes(original)
    assert ModelLoader(registry).load_model("volatility_garch", "1.0") is not None
    registry.update("volatility_garch", ctx.run_id, artifacts=[{**record["artifacts"][0], "sha256": "0" * 64}])
    try:
        with pytest.raises(DataError, match="does not match its registry sha256"):
            ModelLoader(registry).load_model("volatility_garch", "1.0")
    finally:
        registry.update("volatility_garch", ctx.run_id, artifacts=record["artifacts"])


def test_unknown_names_and_versions_say_what_exists(two_runs):
    registry = registry_of(two_runs[1][1], two_runs[0])
    with pytest.raises(UnknownModel, match="unknown model 'momentum'"):
        ModelLoader(registry).load_model("momentum")
    with pytest.raises(ModelNotFound, match="has no version 9.0; versions: 1.0, 2.0"):
        ModelLoader(registry).load_model("regime_rf", "9.0")


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


@pytest.fixture
def restore_production(two_runs):
    """Put regime_rf's production pointer and both deploy manifests back after a test moves them."""
    settings, first, second = two_runs
    registry = registry_of(second[1], settings)
    before = registry.production("regime_rf")
    manifests = {ctx.layout.deploy_manifest: ctx.layout.deploy_manifest.read_bytes() for ctx in (first[0], second[0])}
    yield registry
    if before:
        registry.promote("regime_rf", before["run_id"], before["reason"])
    for path, payload in manifests.items():
        path.write_bytes(payload)


def test_deploy_keeps_a_loser_as_candidate_and_production_untouched(two_runs, restore_production):
    """Run 2's regime model handed to deploy twice: once without significant skill, once with skill
    but predictions far worse than production 1.0's on the rows 1.0 never saw."""
    _, first, (ctx, resources, _, evaluated, _) = two_runs
    registry, name = restore_production, "regime_rf"
    registry.promote(name, first[0].run_id, "production for the test")
    summary = evaluated["models"][name]
    decision = deploy_as_if_evaluated(ctx, resources, {name: with_skill(summary, False)})["decisions"][name]
    assert decision["status"] != "production" and "no significant skill" in decision["reason"], decision
    assert registry.record_for_run(name, ctx.run_id)["deploy_decision"] == decision["reason"]

    path = ctx.layout.predictions(name)
    original = path.read_bytes()
    predictions = pd.read_parquet(path)
    rotate = {"bull": "bear", "bear": "sideways", "sideways": "high_vol", "high_vol": "bull"}
    predictions["regime_ahead"] = (
        ctx_table_labels(ctx).map(rotate).where(predictions["regime_ahead"].notna())
    )  # always wrong
    try:
        predictions.to_parquet(path)
        decision = deploy_as_if_evaluated(ctx, resources, {name: with_skill(summary, True)})["decisions"][name]
    finally:
        path.write_bytes(original)
    assert decision["status"] != "production" and "significantly worse than production" in decision["reason"], decision
    assert "vs production 1.0 on" in decision["reason"] and decision["evidence"]["versus_production"]["worse"]
    assert registry.record(name)["version"] == "1.0"


def with_skill(summary: dict, better: bool) -> dict:
    """An evaluation summary whose skill the gate reads as significant (or not), everything else as measured."""
    return {**summary, "skill": {**summary["skill"], "better": better}}


def ctx_table_labels(ctx) -> pd.Series:
    features = json.loads(ctx.layout.features_manifest.read_text())
    table = pd.read_parquet(ctx.layout.resolve(features["timeframes"]["1d"]["training_table"]["path"]))
    return table["target_regime_ahead"]


def test_an_older_run_does_not_replace_a_model_fitted_on_its_rows(two_runs, restore_production):
    """As a backfill does: run 1 (as-of 2026-08-20) deployed after run 2 (2026-11-20) is in production.
    Run 2 learned from data newer than anything run 1 saw: only a person replaces it with run 1's."""
    _, (ctx, resources, _, evaluated, _), second = two_runs
    registry, name = restore_production, "regime_rf"
    registry.promote(name, second[0].run_id, "production for the test")
    decision = deploy_as_if_evaluated(ctx, resources, {name: with_skill(evaluated["models"][name], True)})["decisions"][
        name
    ]
    assert decision["status"] != "production" and "an older run does not replace a newer model" in decision["reason"], (
        decision
    )
    assert f"`trading-ml promote {name} 1.0`" in decision["reason"]
    assert registry.record(name)["version"] == "2.0"


def test_a_promotion_decided_against_a_production_that_changed_meanwhile_is_refused(two_runs, restore_production):
    _, first, second = two_runs
    registry, name = restore_production, "regime_rf"
    registry.promote(name, second[0].run_id, "production for the test")
    assert not registry.promote(name, first[0].run_id, "decided while run 1 was production", expected=first[0].run_id)
    assert not registry.promote(name, first[0].run_id, "decided while nothing was production", expected=None)
    assert registry.production(name)["run_id"] == second[0].run_id
    assert {r["run_id"]: r["status"] for r in registry.records(name)}[second[0].run_id] == "production"


# -- custody: what loading reads, and what it refuses ----------------------------------------------------


@pytest.fixture
def own_copy(trained_run, tmp_path):
    """A copy of the trained run's data folder (runs and the TinyDB registry) this test may tamper with."""
    ctx = trained_run[0]
    shutil.copytree(ctx.settings.data_dir, tmp_path / "data")
    settings = dataclasses.replace(
        ctx.settings,
        data_dir=tmp_path / "data",
        storage=dataclasses.replace(ctx.settings.storage, fallback_dir=tmp_path / "data" / "fallback"),
    )
    return ModelRegistry(TinyStore(settings.storage.fallback_dir), settings.data_dir), ctx.run_id


def record_as(registry: ModelRegistry, record: dict, **changes) -> None:
    """Overwrite a record in the store (as someone who can write the store would)."""
    registry.store.upsert_many("ml_models", [{**{k: v for k, v in record.items() if k != "status"}, **changes}])


def test_a_crafted_skops_file_with_a_matching_sha256_is_refused_and_runs_nothing(own_copy, tmp_path):
    registry, run_id = own_copy
    record = registry.record_for_run("regime_rf", run_id)
    path = registry.models_root / next(a["path"] for a in record["artifacts"] if a["path"].endswith(".skops"))
    marker = tmp_path / "marker"
    path.write_bytes(skops_with_exec(path.read_bytes(), marker_code(marker)))
    artifacts = [
        {**a, "sha256": sha256_bytes(path.read_bytes())} if a["path"].endswith(".skops") else a
        for a in record["artifacts"]
    ]
    record_as(registry, record, artifacts=artifacts)  # the store agrees with the file: only the allow-list stands
    with pytest.raises(DataError, match="builtins.exec"):
        ModelLoader(registry).load_model("regime_rf", record["version"])
    assert not marker.exists()


def test_a_record_pointing_at_other_files_or_none_is_refused(own_copy, tmp_path):
    registry, run_id = own_copy
    record = registry.record_for_run("regime_rf", run_id)
    marker = tmp_path / "marker"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for artifact in record["artifacts"]:
        source = (registry.models_root / artifact["path"]).read_bytes()
        crafted = skops_with_exec(source, marker_code(marker)) if artifact["path"].endswith(".skops") else source
        (elsewhere / artifact["path"].rsplit("/", 1)[-1]).write_bytes(crafted)
    outside = [
        {
            "path": f"../../elsewhere/{a['path'].rsplit('/', 1)[-1]}",
            "sha256": sha256_bytes((elsewhere / a["path"].rsplit("/", 1)[-1]).read_bytes()),
        }
        for a in record["artifacts"]
    ]
    other_run = [
        {"path": a["path"].replace(folder_name(run_id), "another-run"), "sha256": a["sha256"]}
        for a in record["artifacts"]
    ]
    for artifacts in (outside, other_run, [], [record["artifacts"][0]], record["artifacts"] * 2):
        record_as(registry, record, artifacts=artifacts)
        with pytest.raises(DataError, match="the record lists .* refusing to load it"):
            ModelLoader(registry).load_model("regime_rf", record["version"])
    record_as(registry, record, artifacts=record["artifacts"], stem=str(elsewhere / "regime_rf"))  # a stem is not read
    assert ModelLoader(registry).load_model("regime_rf", record["version"]) is not None
    assert not marker.exists()


def test_the_ensembles_own_file_is_verified_and_names_only_its_members(own_copy):
    registry, run_id = own_copy
    record = registry.record_for_run("direction", run_id)
    path = registry.models_root / record["artifacts"][0]["path"]
    spec = json.loads(path.read_text())
    assert spec["members"] == ["direction_xgboost", "direction_lstm"]
    path.write_text(json.dumps({**spec, "members": ["direction_xgboost", "regime_rf"]}))
    with pytest.raises(DataError, match="does not match its registry sha256"):
        ModelLoader(registry).load_model("direction", record["version"])
    record_as(registry, record, artifacts=[{**record["artifacts"][0], "sha256": sha256_bytes(path.read_bytes())}])
    with pytest.raises(DataError, match="names members .*regime_rf"):
        ModelLoader(registry).load_model("direction", record["version"])


def test_a_missing_file_comes_back_from_gridfs_only_when_intact(two_runs):
    settings, (ctx, resources, _, _, _), _ = two_runs
    registry = registry_of(resources, settings)
    record = registry.record_for_run("volatility_garch", ctx.run_id)
    path = runs_root(settings.data_dir) / record["artifacts"][0]["path"]
    original = path.read_bytes()
    path.unlink()
    assert (
        ModelLoader(registry).load_model("volatility_garch", record["version"]) is not None
        and path.read_bytes() == original
    )
    path.unlink()
    resources.store.put_file(record["artifacts"][0]["path"], original + b"x", {})
    try:
        with pytest.raises(ModelNotFound, match="missing and no intact copy"):
            ModelLoader(registry).load_model("volatility_garch", record["version"])
    finally:
        resources.store.put_file(record["artifacts"][0]["path"], original, {})
        path.write_bytes(original)
