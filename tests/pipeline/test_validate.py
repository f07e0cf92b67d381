"""The validate stage: the join of every ingestion, quarantine with reasons, the pass-share bar."""

import dataclasses
import json

import pytest

from tests.conftest import make_settings
from tests.stages import context, run_both, with_faults
from trading_ml.data.bar_files import read_bars_csv, write_bars_csv
from trading_ml.errors import StageFailed
from trading_ml.pipeline import validate as validate_module
from trading_ml.pipeline.ingest import ingest
from trading_ml.pipeline.resources import StageResources
from trading_ml.pipeline.validate import validate


def test_faulty_symbols_are_quarantined_with_reasons_and_the_run_goes_on(tmp_path):
    settings = with_faults(
        make_settings(tmp_path, min_pass_share=0.5), {"AAPL": ["split"], "XOM": ["gap"], "^GSPC": ["ohlc"]}
    )
    ctx = context(settings, timeframes=["1d"])
    _, result, resources = run_both(ctx)
    quarantined = {q["symbol"]: q["reasons"] for q in result["quarantined"]}
    assert set(quarantined) == {"AAPL", "XOM"}
    assert (
        "corporate_actions: unadjusted split 3:1" in quarantined["AAPL"][0] and "completeness" in quarantined["XOM"][0]
    )
    assert {p["symbol"] for p in result["passed"]} == {"^GSPC", "^VIX", "^NSEI"}
    assert (ctx.run_root / "quarantine" / "AAPL_1d.json").is_file()
    assert not (ctx.run_root / "validated" / "AAPL_1d.csv").exists()
    stored = resources.store.find("validation_reports", {"symbol": "AAPL"})
    assert stored[0]["quarantined"] is True and stored[0]["reasons"] == quarantined["AAPL"]


def test_validate_fails_with_a_summary_below_the_minimum_pass_share(tmp_path):
    settings = with_faults(make_settings(tmp_path, min_pass_share=0.9), {"AAPL": ["split"]})
    ctx = context(settings, timeframes=["1d"])
    resources = StageResources.open(ctx)
    ingest(ctx, resources=resources)
    with pytest.raises(StageFailed, match="only 4 of 5 .* AAPL 1d: corporate_actions: unadjusted split 3:1"):
        validate(ctx, resources)
    assert (ctx.run_root / "validated" / "validation_report.json").is_file()


def test_a_failed_or_missing_ingestion_is_quarantined_not_fatal(tmp_path):
    ctx = context(make_settings(tmp_path, min_pass_share=0.3), symbols=["AAPL", "XOM", "JPM"], timeframes=["1d"])
    resources = StageResources.open(ctx)
    manifests = ingest(ctx, [("AAPL", "1d"), ("XOM", "1d")], resources)  # JPM's task never finished
    broken = dict(manifests[1], status="failed", error="Yahoo returned no bars")
    ctx.layout.ingest_manifest("XOM", "1d").write_text(json.dumps(broken))
    result = validate(ctx, resources)
    reasons = {q["symbol"]: q["reasons"][0] for q in result["quarantined"]}
    assert reasons == {"XOM": "ingestion failed: Yahoo returned no bars", "JPM": reasons["JPM"]}
    assert reasons["JPM"].startswith("ingestion did not finish")


def test_a_raw_file_changed_after_ingest_is_not_trusted(small_context):
    resources = StageResources.open(small_context)
    [manifest] = ingest(small_context, [("AAPL", "1d")], resources)
    path = small_context.run_root / manifest["path"]
    path.write_text(path.read_text().replace("2026-11-19", "2026-11-18", 1))
    ctx = dataclasses.replace(small_context, symbols=["AAPL"], timeframes=["1d"])
    ctx.__dict__.pop("pairs", None)
    with pytest.raises(StageFailed):
        validate(ctx, resources)
    report = json.loads((small_context.run_root / "quarantine" / "AAPL_1d.json").read_text())
    assert "changed since ingestion" in report["reasons"][0]


def test_validate_parses_the_raw_bytes_it_checked_not_a_file_renamed_over_them_after(tmp_path, monkeypatch):
    ctx = context(make_settings(tmp_path), symbols=["^GSPC", "AAPL"], timeframes=["1d"])
    resources = StageResources.open(ctx)
    manifests = {m["symbol"]: m for m in ingest(ctx, resources=resources)}
    path = ctx.run_root / manifests["AAPL"]["path"]
    bars = read_bars_csv(path, "1d")
    checked = validate_module.checked_bytes

    def renamed_over_after_the_check(resolved, sha256):
        content = checked(resolved, sha256)
        if resolved == path:  # valid bars of other values
            write_bars_csv(path, bars.assign(close=bars["close"] * 1.01, high=bars["high"] * 1.01))
        return content

    monkeypatch.setattr(validate_module, "checked_bytes", renamed_over_after_the_check)
    passed = {entry["symbol"]: entry for entry in validate(ctx, resources)["passed"]}
    validated = read_bars_csv(ctx.run_root / passed["AAPL"]["path"], "1d")
    assert (validated["close"] == bars["close"].reindex(validated.index)).all()  # the checked file's closes
