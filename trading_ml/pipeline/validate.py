"""Stage 2, validate: the six checks on every ingested pair; clean bars into validated/, quarantine
what fails with its reasons."""

from __future__ import annotations

from trading_ml.data.bar_files import read_bars_csv, write_bars_csv
from trading_ml.data.calendars import expected_timestamps
from trading_ml.data.validation import validate_bars
from trading_ml.errors import StageFailed
from trading_ml.io import checked_bytes, sha256_file, write_json
from trading_ml.pipeline.resources import OWN_RESOURCES, StageResources
from trading_ml.pipeline.run_manifest import stage
from trading_ml.pipeline.workers import Workers
from trading_ml.run import RunContext, pair_name


def enough_passed(ctx: RunContext, manifest: dict) -> None:
    """StageFailed when fewer than validation.min_pass_share of the run's pairs passed."""
    if manifest["pass_share"] < ctx.settings.validation.min_pass_share:
        passed, quarantined = manifest["passed"], manifest["quarantined"]
        reasons = "; ".join(f"{q['symbol']} {q['timeframe']}: {q['reasons'][0]}" for q in quarantined[:5])
        raise StageFailed(
            f"only {len(passed)} of {len(ctx.pairs)} symbol/timeframe pairs passed validation "
            f"({manifest['pass_share']:.0%} < validation.min_pass_share {ctx.settings.validation.min_pass_share:.0%}); "
            f"first reasons: {reasons}; full report in {ctx.layout.validation_report}"
        )


def _summarize_validate(manifest: dict) -> dict:
    return {
        "passed": len(manifest["passed"]),
        "quarantined": {pair_name(q["symbol"], q["timeframe"]): q["reasons"] for q in manifest["quarantined"]},
        "pass_share": manifest["pass_share"],
        "rows": sum(p["rows"] for p in manifest["passed"]),
    }


@stage("validate", summarize=_summarize_validate, check=enough_passed)
def validate(ctx: RunContext, resources: StageResources = OWN_RESOURCES) -> dict:
    """Join every ingestion of the run (the manifests in raw/): check, clean into validated/,
    quarantine what fails; a pair without a manifest did not finish ingesting and is quarantined.

    Raises StageFailed (after writing and recording every report) when fewer than
    validation.min_pass_share of the run's pairs pass.
    """
    ingested = ctx.ingest_manifests()
    by_pair = {(m["symbol"], m["timeframe"]): m for m in ingested}
    reports: list[dict] = []
    passed: list = []
    quarantined: list = []
    markets = {timeframe: _benchmark_close(ctx, by_pair, timeframe) for timeframe in ctx.timeframes}
    benchmark = ctx.settings.features.benchmark
    calls = [
        (ctx, symbol, timeframe, by_pair.get((symbol, timeframe)), None if symbol == benchmark else markets[timeframe])
        for symbol, timeframe in ctx.pairs
    ]
    with Workers(ctx.settings.models.cores) as workers:  # a pair's checks are independent of the others'
        checked = list(workers.map(_validate_pair, calls))
    for report, validated in checked:
        reports.append(report)
        (passed if validated else quarantined).append(validated or _quarantine(ctx, report))
    report_path = write_json(ctx.layout.validation_report, {"run_id": ctx.run_id, "reports": reports})
    resources.store.upsert_many("validation_reports", reports)
    pass_share = len(passed) / max(len(ctx.pairs), 1)
    manifest = {
        "stage": "validate",
        "run_id": ctx.run_id,
        "passed": passed,
        "quarantined": quarantined,
        "pass_share": round(pass_share, 4),
        "report_path": ctx.layout.relative(report_path),
        "store": resources.store_choice.to_dict(),
    }
    write_json(ctx.layout.validate_manifest, manifest)
    return manifest


def _benchmark_close(ctx: RunContext, by_pair: dict, timeframe: str):
    """The benchmark's raw close of this timeframe when the run ingested it intact; None otherwise."""
    ingested = by_pair.get((ctx.settings.features.benchmark, timeframe))
    content, _ = _ingested_bytes(ctx, ingested)
    if content is None or ingested is None:
        return None
    return read_bars_csv(ctx.layout.resolve(ingested["path"]), timeframe, content=content)["close"]


def _validate_pair(
    ctx: RunContext, symbol: str, timeframe: str, ingested: dict | None, market=None
) -> tuple[dict, dict | None]:
    """(report document, validated-file entry or None when quarantined); ``market`` is the benchmark's
    close (None without one), which the split detector asks whether the market moved."""
    base = {"run_id": ctx.run_id, "symbol": symbol, "timeframe": timeframe}
    validated_path = ctx.layout.validated_bars(symbol, timeframe)
    content, problem = _ingested_bytes(ctx, ingested)
    if content is None or ingested is None:
        validated_path.unlink(missing_ok=True)
        return {**base, "quarantined": True, "reasons": [str(problem)], "checks": []}, None
    instrument = ctx.settings.instrument(symbol)
    bars = read_bars_csv(ctx.layout.resolve(ingested["path"]), timeframe, content=content)
    start, end = ctx.window(timeframe)
    warmup_from, _ = ctx.fetch_window(symbol, timeframe)
    first = min(bars.index.min(), start) if len(bars) else start  # a margin the source did not have is not 'missing'
    expected = expected_timestamps(instrument.exchange, timeframe, max(warmup_from, first), end)
    report, clean = validate_bars(
        bars, instrument, timeframe, expected, ctx.settings.validation, window_start=start, market=market
    )
    document = {**base, **report.to_dict()}
    if report.quarantined:
        validated_path.unlink(missing_ok=True)
        return document, None
    ctx.layout.quarantine_report(symbol, timeframe).unlink(missing_ok=True)
    write_bars_csv(validated_path, clean)
    entry = {
        "symbol": symbol,
        "timeframe": timeframe,
        "rows": len(clean),
        "path": ctx.layout.relative(validated_path),
        "sha256": sha256_file(validated_path),
    }
    return document, entry


def _ingested_bytes(ctx: RunContext, ingested: dict | None) -> tuple[bytes | None, str | None]:
    """The pair's raw CSV as ingestion recorded it (read once: the bytes checked are the bytes
    parsed), or None and what is wrong."""
    if ingested is None:
        return None, "ingestion did not finish: no manifest for this pair (see the ingest task's log)"
    if ingested.get("status") != "ok":
        return None, f"ingestion failed: {ingested.get('error')}"
    raw_path = ctx.layout.resolve(ingested["path"])
    content = checked_bytes(raw_path, ingested["sha256"])
    if content is None:
        return None, f"{raw_path} is missing or changed since ingestion; re-run ingest for this pair"
    return content, None


def _quarantine(ctx: RunContext, report: dict) -> dict:
    entry = {k: report[k] for k in ("symbol", "timeframe", "reasons")}
    path = write_json(ctx.layout.quarantine_report(report["symbol"], report["timeframe"]), report)
    return {**entry, "path": ctx.layout.relative(path)}
