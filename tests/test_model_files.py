"""A production model file whose sha256 matches its record but whose content is malformed (or a
symlink loop) never takes serving, deploy or promote down: loading refuses the version in one line,
the API answers with the task's baseline and says why, and `trading-ml promote` refuses it."""

from __future__ import annotations

import dataclasses
import json
import shutil

import pytest
from fastapi.testclient import TestClient

from trading_ml.cli import main
from trading_ml.errors import DataError
from trading_ml.io import sha256_bytes
from trading_ml.loading import ModelLoader
from trading_ml.models.catalogue import served_models
from trading_ml.models.tasks import TASKS
from trading_ml.registry import ModelRegistry
from trading_ml.serving import create_app
from trading_ml.storage.tiny import TinyStore

TASK_OF = {
    "direction_lstm": "direction",
    "direction_xgboost": "direction",
    "volatility_garch": "volatility",
    "volatility_har": "volatility",
    "regime_rf": "regime",
}  # promoted by copy_of
MALFORMED = {  # case: (model, file suffix, bytes written, where it fails)
    "crafted .pt": ("direction_lstm", ".pt", b"PK\x03\x04 not a torch archive", "load"),
    "junk XGBoost JSON": ("direction_xgboost", ".json", b'{"learner": 5}', "load"),
    "junk GARCH JSON": ("volatility_garch", ".json", b'{"parameters": "x", "horizon": 5}', "load"),
    "GARCH parameters without their names": (
        "volatility_garch",
        ".json",
        b'{"parameters": {"AAPL": {"x": 1.0}}, "horizon": 5}',
        "predict",
    ),
    "config feature_names: 5": ("regime_rf", ".config.json", None, "load"),
    "symlink loop": ("volatility_garch", ".json", "loop", "load"),
    "HAR coefficients that are not numbers": (
        "volatility_har",
        ".json",
        b'{"regressors": ["intercept"], "pooled": {"coefficients": ["NaN"], "smearing": 1}, "per_symbol": {}}',
        "load",
    ),
}


@pytest.fixture
def copy_of(trained_run, tmp_path):
    """The trained run's data folder copied, with every model it trained in production."""
    ctx = trained_run[0]
    shutil.copytree(ctx.settings.data_dir, tmp_path / "data")
    fallback = tmp_path / "data" / "fallback"
    settings = dataclasses.replace(
        ctx.settings,
        data_dir=tmp_path / "data",
        storage=dataclasses.replace(ctx.settings.storage, fallback_dir=fallback),
    )
    registry = ModelRegistry(TinyStore(fallback), settings.data_dir)
    for name in TASK_OF:
        if registry.record_for_run(name, ctx.run_id)["status"] != "production":
            registry.promote(name, ctx.run_id, "to serve (test set-up)")
    return settings, registry, ctx.run_id


def malform(registry: ModelRegistry, run_id: str, name: str, suffix: str, payload) -> dict:
    """Replace the model's file and make the record's sha256 agree with the new bytes (as someone who
    can write both the folder and the store would); returns the record."""
    record = registry.record_for_run(name, run_id)
    artifact = next(a for a in record["artifacts"] if a["path"].endswith(f"{name}{suffix}"))
    path = registry.models_root / artifact["path"]
    if payload == "loop":
        path.unlink()
        path.symlink_to(path.name)  # points at itself
        return record
    if payload is None:  # the config with feature_names of the wrong type
        config = json.loads(path.read_text())
        payload = json.dumps({**config, "feature_names": 5}).encode()
    path.write_bytes(payload)
    artifacts = [{**a, "sha256": sha256_bytes(payload)} if a is artifact else a for a in record["artifacts"]]
    registry.store.upsert_many(
        "ml_models", [{**{k: v for k, v in record.items() if k != "status"}, "artifacts": artifacts}]
    )
    return registry.record_for_run(name, run_id)


@pytest.mark.parametrize("case", MALFORMED)
def test_a_hash_valid_malformed_model_is_refused_and_its_task_served_by_the_baseline(copy_of, case):
    settings, registry, run_id = copy_of
    name, suffix, payload, fails_at = MALFORMED[case]
    record = malform(registry, run_id, name, suffix, payload)
    if fails_at == "load":
        with pytest.raises(DataError) as refused:
            ModelLoader(registry).load_record(record)
        assert "\n" not in str(refused.value) and record["version"] in str(refused.value)
    with TestClient(create_app(settings)) as client:
        health = client.get("/health")
        answer = client.post("/signals/generate", json={"symbols": ["AAPL", "MSFT"]})
        assert answer.status_code == 200, answer.text
        health = client.get("/health")
        assert health.status_code == 200
        body = health.json()
        assert (
            name in body["refused"]
            and body["status"].startswith("degraded: ")
            and f"{name} {record['version']} refused" in body["status"]
        )
        served = answer.json()["models"][TASK_OF[name]]
        assert served["model"] != name
        if TASK_OF[name] != "direction":  # direction's ensemble uses the member: the whole task falls back
            others = [m for m in served_models(TASK_OF[name]) if m != name and registry.production(m)]
            assert served["source"] == ("model" if others else "baseline") and served["model"] in others + [
                TASKS[TASK_OF[name]].served_baseline
            ]
        again = client.post("/signals/generate", json={"symbols": ["AAPL"]})
        assert again.status_code == 200


def test_promote_refuses_a_malformed_a_mismatched_or_a_deleted_version(copy_of, capsys):
    settings, registry, run_id = copy_of
    data = ["--data-dir", str(settings.data_dir)]
    version = registry.record_for_run("volatility_garch", run_id)["version"]
    malform(registry, run_id, "volatility_garch", ".json", b'{"parameters": "x", "window": 20}')
    assert main(["promote", "volatility_garch", version, *data]) == 2
    assert "refusing it" in capsys.readouterr().err
    lstm = registry.record_for_run("direction_lstm", run_id)
    (registry.models_root / lstm["artifacts"][0]["path"]).write_bytes(b"altered")  # the hash no longer matches
    assert main(["promote", "direction_lstm", lstm["version"], *data]) == 2
    assert "does not match its registry sha256" in capsys.readouterr().err
    forest = registry.record_for_run("regime_rf", run_id)
    shutil.rmtree(
        registry.models_root / forest["artifacts"][0]["path"].rsplit("/models/", 1)[0]
    )  # the run folder is gone
    assert main(["promote", "regime_rf", forest["version"], *data]) == 2
    assert "missing" in capsys.readouterr().err


def test_promote_caps_its_reason(copy_of, capsys):
    settings, registry, run_id = copy_of
    version = registry.record_for_run("regime_rf", run_id)["version"]
    data = ["--data-dir", str(settings.data_dir)]
    for reason in ("x" * 501, "two\nlines"):
        with pytest.raises(SystemExit) as refused:
            main(["promote", "regime_rf", version, "--reason", reason, *data])
        assert refused.value.code == 2 and "at most 500 characters" in capsys.readouterr().err
    assert main(["promote", "regime_rf", version, "--reason", "checked by hand", *data]) == 0


@pytest.mark.parametrize("case", ["junk GARCH JSON", "GARCH parameters without their names"])
def test_deploy_against_a_malformed_production_version_decides_without_it(copy_of, case):
    """Deploy loads production to compare: a file that does not load or predict keeps the challenger a
    candidate with that reason, never a traceback."""
    from tests.conftest import AS_OF
    from tests.stages import deploy_as_if_evaluated, run_through
    from trading_ml.pipeline.resources import StageResources
    from trading_ml.run import RunContext

    settings, registry, run_id = copy_of
    _, suffix, payload, _ = MALFORMED[case]
    malform(registry, run_id, "volatility_garch", suffix, payload)
    symbols = registry.record_for_run("volatility_garch", run_id)["symbols"]
    ctx = RunContext.create(settings, AS_OF, ["^VIX", *symbols], ["1d"], "synthetic", models=["volatility_garch"])
    with StageResources.open(ctx) as resources:
        evaluated = run_through(ctx, resources, "evaluate")["evaluate"]["models"]
        skilled = {
            "volatility_garch": {
                **evaluated["volatility_garch"],
                "skill": {**evaluated["volatility_garch"]["skill"], "better": True},
            }
        }
        decision = deploy_as_if_evaluated(ctx, resources, skilled)["decisions"]["volatility_garch"]
    assert decision["status"] == "candidate" and "cannot be scored on this run's rows" in decision["reason"], decision[
        "reason"
    ]
    assert registry.production("volatility_garch")["run_id"] == run_id
