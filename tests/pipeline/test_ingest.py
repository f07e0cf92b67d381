"""The ingest stage: raw files and market_data, idempotent re-runs, store faults and source outages."""

import dataclasses
import json

import pytest

from tests.conftest import AS_OF, closed_port_uri, make_settings
from tests.stages import context, run_both
from trading_ml.errors import SourceUnavailable
from trading_ml.pipeline.ingest import ingest
from trading_ml.pipeline.resources import StageResources
from trading_ml.storage import open_store


@pytest.mark.parametrize("backend", ["tinydb", "mongodb"])
def test_ingest_twice_leaves_counts_unchanged(tmp_path, request, backend):
    uri = request.getfixturevalue("mongo_uri") if backend == "mongodb" else None
    ctx = context(make_settings(tmp_path, uri), symbols=["^GSPC", "AAPL"], timeframes=["1d"])
    first, result, resources = run_both(ctx)
    assert resources.store.kind == backend
    count = resources.store.count("market_data")
    assert count == sum(m["rows"] for m in first) > 2000
    raw_bytes = (ctx.run_root / first[0]["path"]).read_bytes()

    second, again, _ = run_both(ctx)
    assert resources.store.count("market_data") == count
    assert resources.store.count("validation_reports") == 2 and resources.store.count("pipeline_runs") == 1
    assert [m["sha256"] for m in second] == [m["sha256"] for m in first]
    assert (ctx.run_root / first[0]["path"]).read_bytes() == raw_bytes
    assert again["passed"] == result["passed"]
    run = json.loads((ctx.run_root / "run_manifest.json").read_text())
    assert run["store"]["kind"] == backend and set(run["stages"]) == {"ingest", "validate"}


def test_run_writes_the_seeds_layout_under_a_root_per_as_of(small_context):
    manifests, result, _ = run_both(small_context)
    root = small_context.run_root
    assert root.parent.name == AS_OF and (root / "run.json").is_file()
    assert (root / "raw" / "AAPL_1d.csv").is_file() and (root / "validated" / "^NSEI_1h.csv").is_file()
    assert (root / "validated" / "validation_report.json").is_file()
    assert len(result["passed"]) == 10 and result["quarantined"] == []
    assert all(m["store"]["kind"] == "tinydb" for m in manifests)
    manifest_size = len(json.dumps(manifests[0]))
    assert manifest_size < 2000  # manifests carry paths and counts, never data


def test_unreachable_mongodb_falls_back_to_tinydb_and_sync_restores_everything(tmp_path, mongo_uri):
    offline = make_settings(tmp_path, closed_port_uri())
    ctx = context(offline, symbols=["AAPL", "^VIX"], timeframes=["1d", "1h"])
    manifests, _, resources = run_both(ctx)
    assert all(m["store"]["kind"] == "tinydb" and "did not answer" in m["store"]["reason"] for m in manifests)
    bars = sum(m["rows"] for m in manifests)

    from trading_ml.sync import sync_to_mongo

    online = dataclasses.replace(offline, storage=dataclasses.replace(offline.storage, mongo_uri=mongo_uri))
    summary = sync_to_mongo(online)
    assert summary["market_data"] == {"copied": bars, "kept": 0, "in_mongodb": bars}
    mongo, choice = open_store(online)
    assert choice.kind == "mongodb" and mongo.count("market_data") == bars
    mongo.close()


def test_mongodb_failing_mid_ingest_finishes_on_tinydb(tmp_path, mongo_uri):
    ctx = context(make_settings(tmp_path, mongo_uri), symbols=["AAPL", "XOM"], timeframes=["1d"])
    resources = StageResources.open(ctx)
    assert resources.store.kind == "mongodb"
    [first] = ingest(ctx, [("AAPL", "1d")], resources)
    resources.store.active.client.close()  # the server is gone for this client from here on
    [second] = ingest(ctx, [("XOM", "1d")], resources)
    assert first["store"]["kind"] == "mongodb" and second["store"]["kind"] == "tinydb"
    assert "fell back to TinyDB mid-run" in second["store"]["reason"]
    assert resources.store.count("market_data") == second["rows"]


def test_source_outage_raises_so_a_scheduler_can_retry(small_context):
    class RateLimited:
        name, timeframes, symbols = "yahoo", ("1d",), None

        def fetch(self, *args):
            raise SourceUnavailable("yahoo AAPL 1d: still rate-limited")

    resources = StageResources.open(small_context)
    resources.source = RateLimited()
    with pytest.raises(SourceUnavailable):
        ingest(small_context, [("AAPL", "1d")], resources)
