"""Both backends behave alike: round trip, idempotent upserts, owners, compare-and-set, fallback and sync."""

import json
import threading

import pandas as pd
import pytest

from tests.conftest import closed_port_uri, make_settings
from trading_ml.data.synthetic import SyntheticMarket
from trading_ml.drivers import load_settings
from trading_ml.errors import ConfigError, ConflictError, StoreError
from trading_ml.storage import MongoStore, TinyStore, bars_to_documents, open_store, tiny
from trading_ml.storage.base import mask_uri
from trading_ml.sync import sync_to_mongo

SETTINGS = load_settings(env={})


def sample_bars(symbol="AAPL", timeframe="1d", days=40):
    end = pd.Timestamp("2026-11-20", tz="UTC")
    return SyntheticMarket(seed=5).bars(SETTINGS.instrument(symbol), timeframe, end - pd.Timedelta(days=days), end)


@pytest.fixture(params=["tinydb", "mongodb"])
def store(request, tmp_path):
    if request.param == "tinydb":
        yield TinyStore(tmp_path / "fallback")
        return
    settings = make_settings(tmp_path, request.getfixturevalue("mongo_uri"))
    opened = MongoStore.connect(settings.storage.mongo_uri, settings.storage.database)
    yield opened
    opened.client.drop_database(settings.storage.database)
    opened.close()


def test_bars_round_trip_exactly(store):
    bars = sample_bars()
    store.upsert_many("market_data", bars_to_documents("AAPL", "1d", bars, "synthetic"))
    pd.testing.assert_frame_equal(store.read_bars("AAPL", "1d"), bars, check_freq=False)
    assert store.read_bars("MSFT", "1d").empty


def test_upserting_twice_adds_no_duplicates_and_updates_values(store):
    bars = sample_bars()
    documents = bars_to_documents("AAPL", "1d", bars, "synthetic")
    store.upsert_many("market_data", documents)
    store.upsert_many("market_data", documents)
    assert store.count("market_data") == len(bars)
    changed = bars.copy()
    changed.iloc[0, changed.columns.get_loc("close")] = 1.0
    store.upsert_many("market_data", bars_to_documents("AAPL", "1d", changed.iloc[:1], "synthetic"))
    assert store.count("market_data") == len(bars)
    assert store.read_bars("AAPL", "1d")["close"].iloc[0] == 1.0


def test_documents_are_found_by_field(store):
    store.upsert_many(
        "validation_reports",
        [
            {"run_id": "r1", "symbol": "AAPL", "timeframe": "1d", "quarantined": False},
            {"run_id": "r1", "symbol": "MSFT", "timeframe": "1d", "quarantined": True},
        ],
    )
    assert [d["symbol"] for d in store.find("validation_reports", {"quarantined": True})] == ["MSFT"]
    assert store.count("validation_reports", {"run_id": "r1"}) == 2


def test_a_record_of_another_run_is_never_replaced(store):
    store.upsert_many(
        "ml_models", [{"model_name": "regime_rf", "version": "1.0", "run_id": "run-a", "symbols": ["AAPL"]}]
    )
    store.upsert_many(
        "ml_models", [{"model_name": "regime_rf", "version": "1.0", "run_id": "run-a", "symbols": ["AAPL", "XOM"]}]
    )
    with pytest.raises(ConflictError, match="another run|belongs to"):
        store.upsert_many(
            "ml_models", [{"model_name": "regime_rf", "version": "1.0", "run_id": "run-b", "symbols": ["MSFT"]}]
        )
    assert (
        store.upsert_newer(
            "ml_models", [{"model_name": "regime_rf", "version": "1.0", "run_id": "run-b", "updated_at": "9999"}]
        )
        == 0
    )
    [record] = store.find("ml_models")
    assert record["run_id"] == "run-a" and record["symbols"] == ["AAPL", "XOM"]


def test_upsert_newer_keeps_the_newer_copy_of_each_document(store):
    store.upsert_newer(
        "pipeline_runs",
        [
            {"run_id": "r1", "stage": "old", "updated_at": "2026-01-02"},
            {"run_id": "r2", "stage": "old", "updated_at": "2026-01-02"},
        ],
    )
    written = store.upsert_newer(
        "pipeline_runs",
        [
            {"run_id": "r1", "stage": "older", "updated_at": "2026-01-01"},
            {"run_id": "r2", "stage": "newer", "updated_at": "2026-01-03"},
            {"run_id": "r3", "stage": "new", "updated_at": "2026-01-01"},
        ],
    )
    assert written == 2
    assert {d["run_id"]: d["stage"] for d in store.find("pipeline_runs")} == {"r1": "old", "r2": "newer", "r3": "new"}


def test_replace_if_is_a_compare_and_set_on_the_revision(store):
    pointer = {"model_name": "regime_rf", "run_id": "a", "revision": 1}
    assert store.replace_if("model_production", pointer, None)
    assert not store.replace_if("model_production", {**pointer, "run_id": "b"}, None)  # one exists already
    assert not store.replace_if("model_production", {**pointer, "run_id": "b", "revision": 2}, 5)  # stale revision
    assert store.replace_if("model_production", {**pointer, "run_id": "b", "revision": 2}, 1)
    assert [(d["run_id"], d["revision"]) for d in store.find("model_production")] == [("b", 2)]
    assert store.update_fields("model_production", {"model_name": "regime_rf"}, {"note": "x"})
    assert not store.update_fields("model_production", {"model_name": "momentum"}, {"note": "x"})
    assert store.find("model_production")[0]["note"] == "x"


def test_tinydb_parallel_writers_lose_nothing(tmp_path):
    store = TinyStore(tmp_path)
    symbols = ["AAPL", "MSFT", "XOM", "CVX", "JPM", "GS"]
    batches = {s: bars_to_documents(s, "1d", sample_bars(s), "synthetic") for s in symbols}
    threads = [threading.Thread(target=store.upsert_many, args=("market_data", docs)) for docs in batches.values()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert store.count("market_data") == sum(len(d) for d in batches.values())


def test_tinydb_writes_one_pair_without_touching_the_others(tmp_path):
    """market_data has a file per symbol and timeframe, so an ingest task's write costs the same
    however many pairs are stored (one shared file made N per-pair writes cost O(N²))."""
    store = TinyStore(tmp_path)
    store.upsert_many("market_data", bars_to_documents("AAPL", "1d", sample_bars("AAPL"), "synthetic"))
    aapl = (tmp_path / "market_data" / "AAPL_1d.json").read_bytes()
    store.upsert_many("market_data", bars_to_documents("^GSPC", "1d", sample_bars("^GSPC"), "synthetic"))
    store.upsert_many("market_data", bars_to_documents("AAPL", "1h", sample_bars("AAPL", "1h", days=5), "synthetic"))
    assert (tmp_path / "market_data" / "AAPL_1d.json").read_bytes() == aapl
    assert sorted(p.name for p in (tmp_path / "market_data").glob("*.json")) == [
        "AAPL_1d.json",
        "AAPL_1h.json",
        "^GSPC_1d.json",
    ]
    assert {d["symbol"] for d in store.find("market_data", {"timeframe": "1d"})} == {"AAPL", "^GSPC"}
    assert len(store.read_bars("AAPL", "1h")) == store.count("market_data", {"symbol": "AAPL", "timeframe": "1h"}) > 0


def test_tinydb_moves_a_fallback_written_before_partitioning_into_its_pairs(tmp_path):
    """A market_data.json of an older version is split into per-pair files on first use: every bar
    kept once, a re-upsert adds none."""
    bars = {s: sample_bars(s) for s in ("AAPL", "XOM")}
    documents = [d for s, b in bars.items() for d in bars_to_documents(s, "1d", b, "synthetic")]
    (tmp_path / "fallback").mkdir()
    encoded = json.dumps({"market_data": {str(i + 1): tiny._encode(d) for i, d in enumerate(documents)}})
    (tmp_path / "fallback" / "market_data.json").write_text(encoded)
    store = TinyStore(tmp_path / "fallback")
    assert store.count("market_data") == len(documents)
    assert not (tmp_path / "fallback" / "market_data.json").exists()
    store.upsert_many("market_data", documents[:10])
    assert store.count("market_data") == len(documents)
    pd.testing.assert_frame_equal(store.read_bars("XOM", "1d"), bars["XOM"], check_freq=False)


def test_open_store_prefers_mongodb_when_it_answers(tmp_path, mongo_uri):
    store, choice = open_store(make_settings(tmp_path, mongo_uri))
    assert store.kind == "mongodb" and choice.kind == "mongodb"
    store.close()


def test_open_store_falls_back_to_tinydb_with_a_warning_and_a_masked_uri(tmp_path, caplog):
    uri = closed_port_uri()
    store, choice = open_store(make_settings(tmp_path, uri))
    assert store.kind == "tinydb" and choice.kind == "tinydb"
    assert "did not answer" in choice.reason and "secret" not in choice.reason and "user:***@" in choice.reason
    assert any("falling back to TinyDB" in r.message for r in caplog.records)


def test_sync_copies_the_fallback_into_mongodb_exactly_once(tmp_path, mongo_uri):
    settings = make_settings(tmp_path, mongo_uri)
    tiny = TinyStore(settings.storage.fallback_dir)
    bars = {s: sample_bars(s) for s in ("AAPL", "XOM")}
    for symbol, frame in bars.items():
        tiny.upsert_many("market_data", bars_to_documents(symbol, "1d", frame, "synthetic"))
    tiny.upsert_many("pipeline_runs", [{"run_id": "asof-2026-11-20", "store": "tinydb"}])
    mongo = MongoStore.connect(mongo_uri, settings.storage.database)
    mongo.upsert_many("market_data", bars_to_documents("AAPL", "1d", bars["AAPL"].iloc[:5], "synthetic"))

    first = sync_to_mongo(settings)
    second = sync_to_mongo(settings)

    total = sum(len(f) for f in bars.values())
    assert first["market_data"] == {
        "copied": total - 5,
        "kept": 5,
        "in_mongodb": total,
    }  # MongoDB's 5 bars were written later
    assert second["market_data"] == {"copied": 0, "kept": total, "in_mongodb": total}
    for symbol, frame in bars.items():
        pd.testing.assert_frame_equal(mongo.read_bars(symbol, "1d"), frame, check_freq=False)
    assert mongo.count("pipeline_runs") == 1
    mongo.close()


def test_sync_without_a_reachable_mongodb_is_a_clear_error(tmp_path):
    with pytest.raises(ConfigError, match="needs a MongoDB URI"):  # bad input (exit 2), not a service to wait for
        sync_to_mongo(make_settings(tmp_path))
    with pytest.raises(StoreError, match="did not answer"):
        sync_to_mongo(make_settings(tmp_path, closed_port_uri()))


def test_mask_uri_hides_passwords_only():
    assert (
        mask_uri("mongodb://alice:s3cr3t@db:27017/x?authSource=admin")
        == "mongodb://alice:***@db:27017/x?authSource=admin"
    )
    assert mask_uri("mongodb://127.0.0.1:27017/") == "mongodb://127.0.0.1:27017/"


@pytest.mark.parametrize(
    "operation",
    [
        ("find", ("ml_models", {"model_name": "regime_rf"})),
        ("count", ("market_data",)),
        ("read_bars", ("AAPL", "1d")),
        ("insert_new", ("model_versions", {"model_name": "regime_rf", "version": "1.0", "run_id": "r1"})),
        ("update_fields", ("ml_models", {"model_name": "regime_rf", "run_id": "r1"}, {"note": "x"})),
        ("replace_if", ("model_production", {"model_name": "regime_rf", "run_id": "r1", "revision": 1}, None)),
        ("put_file", ("a/models/regime_rf.skops", b"bytes", {})),
        ("get_file", ("a/models/regime_rf.skops",)),
        ("upsert_many", ("pipeline_runs", [{"run_id": "r1"}])),
        ("upsert_newer", ("pipeline_runs", [{"run_id": "r1"}])),
    ],
    ids=lambda operation: operation[0],
)
def test_every_store_operation_falls_back_to_tinydb_when_mongodb_stops_answering(operation, tmp_path, mongo_uri):
    from trading_ml.storage import open_stage_store

    settings = make_settings(tmp_path, mongo_uri)
    store = open_stage_store(settings)
    assert store.kind == "mongodb"
    store.active.client.close()  # from here on every driver call fails
    name, arguments = operation
    getattr(store, name)(*arguments)
    assert store.kind == "tinydb" and store.fell_back and "fell back to TinyDB mid-run" in store.choice.reason
    assert "\n" not in store.choice.reason and "MongoDB at" in store.choice.reason


def test_a_damaged_tinydb_file_is_one_clear_error(tmp_path):
    (tmp_path / "ml_models.json").write_text('{"ml_models": {"1": ')
    with pytest.raises(StoreError, match="ml_models.json cannot be read .*restore it or move it aside"):
        TinyStore(tmp_path).find("ml_models")
