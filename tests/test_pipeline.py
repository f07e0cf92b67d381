"""The ingest and validate stages end to end, on TinyDB and on a real MongoDB wire server."""

import dataclasses
import json

import pandas as pd
import pytest

from tests.conftest import AS_OF, SMALL_UNIVERSE, closed_port_uri, make_settings
from trading_ml import pipeline
from trading_ml.run import RunContext
from trading_ml.errors import DataError, SourceUnavailable, StageFailed
from trading_ml.storage import open_store


def context(settings, symbols=SMALL_UNIVERSE, timeframes=("1d", "1h"), as_of=AS_OF, run_id=None):
    return RunContext.create(settings, as_of, list(symbols), list(timeframes), "synthetic", run_id)


def with_faults(settings, faults):
    sources = {**settings.sources, "synthetic": {**settings.sources["synthetic"], "faults": faults}}
    return dataclasses.replace(settings, sources=sources)


def run_both(ctx):
    resources = pipeline.StageResources.open(ctx)
    manifests = pipeline.ingest_all(ctx, resources)
    return manifests, pipeline.validate(ctx, manifests, resources), resources


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


def test_faulty_symbols_are_quarantined_with_reasons_and_the_run_goes_on(tmp_path):
    settings = with_faults(make_settings(tmp_path, min_pass_share=0.5), {"AAPL": ["split"], "XOM": ["gap"], "^GSPC": ["ohlc"]})
    ctx = context(settings, timeframes=["1d"])
    _, result, resources = run_both(ctx)
    quarantined = {q["symbol"]: q["reasons"] for q in result["quarantined"]}
    assert set(quarantined) == {"AAPL", "XOM"}
    assert "corporate_actions: unadjusted split 3:1" in quarantined["AAPL"][0] and "completeness" in quarantined["XOM"][0]
    assert {p["symbol"] for p in result["passed"]} == {"^GSPC", "^VIX", "^NSEI"}
    assert (ctx.run_root / "quarantine" / "AAPL_1d.json").is_file()
    assert not (ctx.run_root / "validated" / "AAPL_1d.csv").exists()
    stored = resources.store.find("validation_reports", {"symbol": "AAPL"})
    assert stored[0]["quarantined"] is True and stored[0]["reasons"] == quarantined["AAPL"]


def test_validate_fails_with_a_summary_below_the_minimum_pass_share(tmp_path):
    settings = with_faults(make_settings(tmp_path, min_pass_share=0.9), {"AAPL": ["split"]})
    ctx = context(settings, timeframes=["1d"])
    resources = pipeline.StageResources.open(ctx)
    manifests = pipeline.ingest_all(ctx, resources)
    with pytest.raises(StageFailed, match="only 4 of 5 .* AAPL 1d: corporate_actions: unadjusted split 3:1"):
        pipeline.validate(ctx, manifests, resources)
    assert (ctx.run_root / "validated" / "validation_report.json").is_file()


def test_a_failed_or_missing_ingestion_is_quarantined_not_fatal(tmp_path):
    ctx = context(make_settings(tmp_path, min_pass_share=0.3), symbols=["AAPL", "XOM", "JPM"], timeframes=["1d"])
    resources = pipeline.StageResources.open(ctx)
    manifests = [pipeline.ingest(ctx, "AAPL", "1d", resources), pipeline.ingest(ctx, "XOM", "1d", resources)]
    broken = dict(manifests[1], status="failed", error="Yahoo returned no bars")
    result = pipeline.validate(ctx, [manifests[0], broken], resources)
    reasons = {q["symbol"]: q["reasons"][0] for q in result["quarantined"]}
    assert reasons == {"XOM": "ingestion failed: Yahoo returned no bars", "JPM": reasons["JPM"]}
    assert reasons["JPM"].startswith("ingestion did not finish")


def test_a_raw_file_changed_after_ingest_is_not_trusted(small_context):
    resources = pipeline.StageResources.open(small_context)
    manifest = pipeline.ingest(small_context, "AAPL", "1d", resources)
    path = small_context.run_root / manifest["path"]
    path.write_text(path.read_text().replace("2026-11-19", "2026-11-18", 1))
    ctx = dataclasses.replace(small_context, symbols=["AAPL"], timeframes=["1d"])
    ctx.__dict__.pop("pairs", None)
    with pytest.raises(StageFailed):
        pipeline.validate(ctx, [manifest], resources)
    report = json.loads((small_context.run_root / "quarantine" / "AAPL_1d.json").read_text())
    assert "changed since ingestion" in report["reasons"][0]


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
    resources = pipeline.StageResources.open(ctx)
    assert resources.store.kind == "mongodb"
    first = pipeline.ingest(ctx, "AAPL", "1d", resources)
    resources.store.active.client.close()  # the server is gone for this client from here on
    second = pipeline.ingest(ctx, "XOM", "1d", resources)
    assert first["store"]["kind"] == "mongodb" and second["store"]["kind"] == "tinydb"
    assert "fell back to TinyDB mid-run" in second["store"]["reason"]
    assert resources.store.count("market_data") == second["rows"]


def test_source_outage_raises_so_a_scheduler_can_retry(small_context):
    class RateLimited:
        name, timeframes, symbols = "yahoo", ("1d",), None

        def fetch(self, *args):
            raise SourceUnavailable("yahoo AAPL 1d: still rate-limited")

    resources = pipeline.StageResources.open(small_context)
    resources.source = RateLimited()
    with pytest.raises(SourceUnavailable):
        pipeline.ingest(small_context, "AAPL", "1d", resources)


def run_to_features(ctx):
    _, validated, resources = run_both(ctx)
    return validated, pipeline.build_features(ctx, validated, resources), resources


def test_features_stage_writes_the_plans_csvs_and_one_training_table_per_timeframe(small_context):
    validated, manifest, resources = run_to_features(small_context)
    root = small_context.run_root
    frame = pd.read_csv(root / "features" / "AAPL_1d_features.csv")  # the plan's verification
    assert {"rsi_14", "macd_pct", "bb_upper_20", "vix_level", "target_direction"} <= set(frame.columns)
    daily = manifest["timeframes"]["1d"]
    assert daily["excluded_from_training"] == {"^VIX": "market input only (no volume)"}
    table = pd.read_parquet(root / daily["training_table"]["path"])
    assert table.index.names == ["timestamp", "symbol"]
    assert sorted(table.index.get_level_values("symbol").unique()) == ["AAPL", "XOM", "^GSPC", "^NSEI"]
    assert len(table) == daily["training_table"]["rows"] == sum(
        s["rows"] for sym, s in daily["symbols"].items() if sym != "^VIX")
    for symbol, entry in daily["symbols"].items():
        assert entry["bars"] == entry["warmup_rows"] + entry["incomplete_rows"] + entry["rows"]
        assert entry["warmup_rows"] >= 199
    assert len(frame) == daily["symbols"]["AAPL"]["rows"]
    assert list(table.columns[: len(daily["feature_names"])]) == daily["feature_names"]
    assert len(daily["feature_names"]) >= 70 and daily["categories"]["market"] == 13
    assert set(manifest["timeframes"]) == {"1d", "1h"}
    assert len(json.dumps(manifest)) < 20_000  # small enough for XCom: names and paths, no data
    assert json.loads((root / "features" / "manifest.json").read_text())["catalog"][0]["category"] == "trend"
    run = json.loads((root / "run_manifest.json").read_text())
    assert run["stages"]["features"]["1d"]["training_rows"] == len(table)


def test_features_rerun_rewrites_the_same_bytes_and_drops_files_of_quarantined_symbols(tmp_path):
    settings = make_settings(tmp_path, min_pass_share=0.5)
    ctx = context(settings, symbols=["^GSPC", "^VIX", "AAPL", "XOM"], timeframes=["1d"])
    _, first, resources = run_to_features(ctx)
    _, second, _ = run_to_features(ctx)
    assert second["timeframes"] == first["timeframes"]
    assert resources.store.count("pipeline_runs") == 1
    assert (ctx.run_root / "features" / "XOM_1d_features.csv").is_file()

    broken = context(with_faults(settings, {"XOM": ["split"]}), symbols=ctx.symbols, timeframes=["1d"], run_id=ctx.run_id)  # the same run again
    _, third, _ = run_to_features(broken)
    assert "XOM" not in third["timeframes"]["1d"]["symbols"]
    assert not (ctx.run_root / "features" / "XOM_1d_features.csv").exists()


def test_features_refuse_a_validated_file_changed_since_validation(small_context):
    _, validated, resources = run_both(small_context)
    path = small_context.run_root / validated["passed"][0]["path"]
    path.write_text(path.read_text() + "\n")
    with pytest.raises(DataError, match="changed since validation; re-run validate"):
        pipeline.build_features(small_context, validated, resources)


def test_a_short_window_gets_its_warm_up_from_the_margin_and_fails_only_without_one(tmp_path):
    settings = make_settings(tmp_path)
    short = dataclasses.replace(settings, timeframes={"1d": dataclasses.replace(settings.timeframes["1d"], lookback="6mo")})
    ctx = context(short, symbols=["^GSPC", "AAPL"], timeframes=["1d"])
    validated, resources = run_both(ctx)[1:]
    built = pipeline.build_features(ctx, validated, resources)["timeframes"]["1d"]
    assert built["training_table"]["rows"] > 2 * 100  # six months of both symbols, none lost to the warm-up
    early = context(short, symbols=["^GSPC", "AAPL"], timeframes=["1d"], as_of="2000-08-01")  # no margin before the epoch
    validated, resources = run_both(early)[1:]
    ctx = early
    with pytest.raises(StageFailed, match=r"no training rows .* features.warmup_bars \(500\) bars before its rows"):
        pipeline.build_features(ctx, validated, resources)
    manifest = json.loads((ctx.run_root / "run_manifest.json").read_text())
    assert "features" not in manifest["stages"]


def test_a_stage_gets_a_source_only_when_it_fetches_and_airflow_owns_the_retries(tmp_path):
    """The model stages never build a source; under Airflow (source_retries=0) Yahoo tries once per
    call and the task's retries are the one retry layer."""
    from trading_ml.errors import ConfigError

    settings = make_settings(tmp_path / "data")
    missing = RunContext.create(settings, "2026-11-20", ["AAPL"], ["1d"], f"csv:{tmp_path / 'nowhere'}")
    resources = pipeline.StageResources.open(missing)  # a stage that does not fetch never notices
    with pytest.raises(ConfigError, match="does not exist"):
        resources.source  # noqa: B018 - the first fetch builds it
    yahoo = RunContext.create(settings, "2026-11-20", ["AAPL"], ["1d"], "yahoo")
    assert pipeline.StageResources.open(yahoo, source_retries=0).source.retries == 0
    assert pipeline.StageResources.open(yahoo).source.retries == settings.source_options("yahoo")["retries"] == 5
