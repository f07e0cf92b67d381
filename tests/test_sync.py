"""`trading-ml sync` after a run fell back to TinyDB: nothing lost, nothing overwritten, one production.

The scenario that clobbered records before: run A (as-of 2025-06-30) registers in MongoDB; MongoDB
stops; run B (as-of 2025-03-31) falls back to TinyDB and claims version 1.0 of every model too.
"""

from __future__ import annotations

import pytest

from tests.conftest import RestartableMongo, make_settings, quick
from tests.stages import run_through
from trading_ml.io import sha256_bytes
from trading_ml.loading import ModelLoader
from trading_ml.models import TRAINED_MODELS
from trading_ml.models.catalogue import ENSEMBLE
from trading_ml.pipeline.resources import StageResources
from trading_ml.registry import ModelRegistry
from trading_ml.run import RunContext
from trading_ml.storage import MongoStore, TinyStore
from trading_ml.sync import sync_to_mongo

SYMBOLS = ["^GSPC", "^VIX", "AAPL", "XOM"]
NAMES = (*TRAINED_MODELS, ENSEMBLE)
FORCED = "volatility_garch"


def whole_run(settings, as_of: str):
    ctx = RunContext.create(settings, as_of, SYMBOLS, ["1d"], "synthetic")
    resources = StageResources.open(ctx)
    deployed = run_through(ctx, resources, "deploy")["deploy"]
    if not promoted(deployed):  # 4 symbols rarely show significant skill; sync's production rule needs a promotion
        ModelRegistry(resources.store, settings.data_dir).promote(FORCED, ctx.run_id, "promoted by the test set-up")
        deployed["decisions"][FORCED]["status"] = "production"
    resources.store.close()
    return ctx, resources.store.kind, deployed


@pytest.fixture(scope="module")
def synced(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sync")
    restartable_mongo = RestartableMongo(folder / "secantus")
    settings = quick(make_settings(folder / "data", restartable_mongo.start()))
    run_a, kind_a, deployed_a = whole_run(settings, "2025-06-30")
    restartable_mongo.stop()
    run_b, kind_b, deployed_b = whole_run(settings, "2025-03-31")
    assert (kind_a, kind_b) == ("mongodb", "tinydb")
    tiny = ModelRegistry(TinyStore(settings.storage.fallback_dir), settings.data_dir)
    assert {r["version"] for r in tiny.records()} == {"1.0"}  # B claimed 1.0 of every model, as A had
    restartable_mongo.start()
    first, second = sync_to_mongo(settings), sync_to_mongo(settings)
    mongo = MongoStore.connect(settings.storage.mongo_uri, settings.storage.database)
    yield (
        settings,
        (run_a, deployed_a),
        (run_b, deployed_b),
        first,
        second,
        ModelRegistry(mongo, settings.data_dir),
        tiny,
    )
    mongo.close()
    restartable_mongo.stop()


def promoted(deployed) -> set[str]:
    return {name for name, decision in deployed["decisions"].items() if decision["status"] == "production"}


def test_both_runs_records_are_in_mongodb_under_distinct_versions(synced):
    _, (run_a, _), (run_b, _), first, _, mongo, tiny = synced
    for name in NAMES:
        records = {r["run_id"]: r for r in mongo.records(name)}
        assert set(records) == {run_a.run_id, run_b.run_id}
        assert records[run_a.run_id]["version"] == "1.0" and records[run_b.run_id]["version"] == "2.0"
        theirs = tiny.record_for_run(name, run_b.run_id)
        assert {k: v for k, v in records[run_b.run_id].items() if k not in ("version", "status", "components")} == {
            k: v for k, v in theirs.items() if k not in ("version", "status", "components")
        }  # nothing of B dropped
    assert sorted((c["model_name"], c["from"], c["to"]) for c in first["renumbered"]) == sorted(
        (n, "1.0", "2.0") for n in NAMES
    )
    assert all(c["run_id"] == run_b.run_id for c in first["renumbered"])
    assert mongo.record(ENSEMBLE, "2.0")["components"] == {"direction_xgboost": "2.0", "direction_lstm": "2.0"}


def test_gridfs_files_match_their_records_and_every_model_loads(synced):
    _, _, _, _, _, mongo, _ = synced
    for record in mongo.records():
        for artifact in record["artifacts"]:
            assert sha256_bytes(mongo.store.get_file(artifact["path"])) == artifact["sha256"]
        assert ModelLoader(mongo).load_record(record) is not None


def test_exactly_one_production_per_model_and_the_newer_as_of_wins(synced):
    _, (run_a, deployed_a), (run_b, deployed_b), first, _, mongo, _ = synced
    assert promoted(deployed_b), "run B promoted nothing: the production rule would go untested"
    for name in NAMES:
        production = [r for r in mongo.records(name) if r["status"] == "production"]
        if name in promoted(deployed_a):
            expected = run_a.run_id  # A (2025-06-30) is newer than B (2025-03-31)
        elif name in promoted(deployed_b):
            expected = run_b.run_id
        else:
            assert production == []
            continue
        assert [r["run_id"] for r in production] == [expected], name
        if name in promoted(deployed_a) & promoted(deployed_b):
            assert mongo.record_for_run(name, run_b.run_id)["status"] == "archived"  # B was production in TinyDB
    assert {name: p["run_id"] for name, p in first["production"].items()} == {
        name: (run_a.run_id if name in promoted(deployed_a) else run_b.run_id) for name in promoted(deployed_b)
    }


def test_a_second_sync_copies_nothing_and_changes_nothing(synced):
    settings, _, _, first, second, mongo, tiny = synced
    assert second["renumbered"] == [] and not any(p["changed"] for p in second["production"].values())
    for collection in ("market_data", "validation_reports", "pipeline_runs", "ml_models"):
        assert second[collection]["copied"] == 0, collection
        assert second[collection]["in_mongodb"] == first[collection]["in_mongodb"]
    assert mongo.store.count("ml_models") == 2 * len(NAMES)


def test_every_document_of_the_fallback_is_in_mongodb(synced):
    _, _, (run_b, _), _, _, mongo, tiny = synced
    bar_key = ("symbol", "timeframe", "timestamp")
    keys = {
        c: {tuple(str(d[k]) for k in bar_key) for d in store.find("market_data")}
        for c, store in (("tiny", tiny.store), ("mongo", mongo.store))
    }
    assert len(keys["tiny"]) > 4000 and keys["tiny"] <= keys["mongo"]  # every bar run B ingested
    assert mongo.store.count("market_data") == len(keys["mongo"])  # each once
    for collection in ("validation_reports", "pipeline_runs"):
        copies = [
            sorted(
                store.find(collection, {"run_id": run_b.run_id}),
                key=lambda d: (d.get("symbol", ""), d.get("timeframe", "")),
            )
            for store in (mongo.store, tiny.store)
        ]
        assert copies[0] == copies[1] != []
