"""The data stages: plan a run, ingest, validate, engineer features; and the run manifest.

A stage reads its inputs from files under the run's folder and the store, writes its outputs, and
returns a small JSON-able manifest (paths relative to the run folder, row counts, sha256). Re-running
a stage of the same run rewrites the same files and upserts the same documents; every path comes from
the run's layout (trading_ml.run), every store call goes through a FallbackStore.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable

import pandas as pd

from trading_ml.config import parse_as_of, shorten
from trading_ml.run import RunContext, pair_name
from trading_ml.data.calendars import expected_timestamps
from trading_ml.data.sources import MarketDataSource, make_source, read_bars_csv
from trading_ml.data.validation import validate_bars
from trading_ml.errors import ConfigError, DataError, OutsideCoverage, StageFailed
from trading_ml.features import catalogue
from trading_ml.features.build import TimeframeFeatures, build_timeframe, feature_panel
from trading_ml.features.market import missing_market_features
from trading_ml.features.targets import TARGET_COLUMNS
from trading_ml.io import intact, read_json, sha256_file, write_bars_csv, write_json, write_parquet, write_table_csv
from trading_ml.models import TRAINED_MODELS
from trading_ml.storage import FallbackStore, StoreChoice, bars_to_documents, open_stage_store

log = logging.getLogger(__name__)

MODELS = TRAINED_MODELS  # the five trained models, in training order


class StageResources:
    """What stages share within one process: the store (MongoDB, falling back to TinyDB for the rest
    of the process if it stops answering) and, for the stages that fetch, the data source: it is
    made on first use, so the model stages never build one (the synthetic simulator included)."""

    def __init__(self, source: MarketDataSource | None, store: FallbackStore, make: Callable[[], MarketDataSource] | None = None):
        self._source, self._make, self.store = source, make, store

    @classmethod
    def open(cls, ctx: RunContext, source_retries: int | None = None) -> StageResources:
        """``source_retries=0`` when an orchestrator owns the retries (Airflow's task retries), so
        there is one retry layer: the source then makes one attempt per call."""
        return cls(None, open_stage_store(ctx.settings), lambda: make_source(ctx.source, ctx.settings, source_retries))

    @property
    def source(self) -> MarketDataSource:
        if self._source is None:
            self._source = self._make()
        return self._source

    @source.setter
    def source(self, source: MarketDataSource) -> None:
        self._source = source

    @property
    def store_choice(self) -> StoreChoice:
        return self.store.choice


def plan_run(ctx: RunContext, models: list[str] | None = None, deploy_models: bool = True) -> dict:
    """What an orchestrated run will do: its context (to rebuild in each task), the (symbol,
    timeframe) pairs to ingest, the models to train and whether to deploy. Claims the run's folder."""
    if models is not None and not list(models):
        raise ConfigError(f"models is an empty list; name at least one of {', '.join(MODELS)}, or leave it unset for all")
    chosen = list(models) if models else list(MODELS)
    unknown = [m for m in chosen if m not in MODELS]
    if unknown:
        raise ConfigError(f"unknown model(s) {', '.join(map(shorten, unknown))}; choose from {', '.join(MODELS)}")
    make_source(ctx.source, ctx.settings)  # a source that cannot work (csv:/nonexistent) fails the plan, not every ingest
    return {
        "context": ctx.to_dict(),
        "run_id": ctx.run_id,
        "run_root": str(ctx.run_root),
        "pairs": [list(pair) for pair in ctx.pairs],
        "models": [m for m in MODELS if m in chosen],
        "deploy": bool(deploy_models),
    }


def as_of_for_run(requested: str | None, manual: bool, data_interval_end: dt.datetime | None, triggered_at: dt.datetime) -> dt.date:
    """A scheduled or backfill run's as-of: the end of its data interval. A manual trigger's: the day
    it was triggered (its inferred interval would end at the last quarter boundary). An as-of the
    user asked for wins over both."""
    if requested:
        return parse_as_of(requested)
    moment = triggered_at if manual or data_interval_end is None else data_interval_end
    return parse_as_of(moment.astimezone(dt.UTC).date())


def ingest(ctx: RunContext, symbol: str, timeframe: str, resources: StageResources | None = None, source_retries: int | None = None) -> dict:
    """Fetch one symbol and timeframe for the run's window into raw/ and the store's market_data.

    Input that will stay bad (unknown symbol, malformed data) gives a manifest with status 'failed'
    and the reason, so the run goes on and validation quarantines it. A source that did not answer
    raises SourceUnavailable, so a scheduler can retry (pass ``source_retries=0`` when it owns the retries).
    """
    resources = resources or StageResources.open(ctx, source_retries)
    manifest, bars = fetch_to_raw(ctx, symbol, timeframe, resources.source)
    return store_and_record(ctx, resources, [(manifest, bars)])[0]


def ingest_all(
    ctx: RunContext,
    resources: StageResources | None = None,
    on_done: Callable[[dict], None] = lambda manifest: None,
) -> list[dict]:
    """ingest() for every (symbol, timeframe) of the run, with one store write for all of them; a
    StageFailed (exit 1) when not one pair could be ingested."""
    resources = resources or StageResources.open(ctx)
    fetched = []
    for symbol, timeframe in ctx.pairs:
        fetched.append(fetch_to_raw(ctx, symbol, timeframe, resources.source))
        on_done(fetched[-1][0])
    manifests = store_and_record(ctx, resources, fetched)
    summary = summarize_ingest(manifests)
    record_stage(ctx, "ingest", summary, resources)
    if manifests and not summary["ok"]:
        failures = "; ".join(f"{pair}: {error}" for pair, error in list(summary["failed"].items())[:3])
        raise StageFailed(f"ingest: 0 of {len(manifests)} pairs ingested, nothing to validate ({failures})")
    return manifests


def fetch_to_raw(ctx: RunContext, symbol: str, timeframe: str, source: MarketDataSource) -> tuple[dict, pd.DataFrame | None]:
    """(manifest, bars) with bars written to raw/; (failed manifest, None) for bad input. The bars
    reach ``features.warmup_bars`` bars before the window when the source has them."""
    start, end = ctx.window(timeframe)
    warmup_from, _ = ctx.fetch_window(symbol, timeframe)
    manifest = {
        "stage": "ingest",
        "run_id": ctx.run_id,
        "symbol": symbol,
        "timeframe": timeframe,
        "source": source.name,
        "window": [start.isoformat(), end.isoformat()],
        "warmup_from": warmup_from.isoformat(),
    }
    try:
        if timeframe not in source.timeframes:
            raise DataError(f"source {source.name} has no {timeframe} bars for {symbol}")
        bars = fetch_with_warmup(source, ctx.settings.instrument(symbol), timeframe, warmup_from, start, end)
        if bars.empty:
            raise DataError(f"{source.name} {symbol} {timeframe}: no bars in {start.date()}..{end.date()}")
    except DataError as error:
        manifest.update(status="failed", error=str(error))
        return manifest, None
    raw_path = write_bars_csv(ctx.layout.raw_bars(symbol, timeframe), bars)
    manifest.update(
        status="ok",
        rows=len(bars),
        path=ctx.layout.relative(raw_path),
        sha256=sha256_file(raw_path),
        first=bars.index[0].isoformat(),
        last=bars.index[-1].isoformat(),
    )
    return manifest, bars


def fetch_with_warmup(source: MarketDataSource, instrument, timeframe: str, warmup_from, start, end) -> pd.DataFrame:
    """The bars from the warm-up start; a source that cannot reach that far back (the sample series,
    the synthetic epoch) gives the window alone, and the features stage then drops the rows that
    lack a full warm-up."""
    try:
        return source.fetch(instrument, timeframe, warmup_from, end)
    except OutsideCoverage as error:
        log.info("%s %s: no warm-up margin before %s (%s); fetching the window alone", instrument.symbol, timeframe, start.date(), error)
        return source.fetch(instrument, timeframe, start, end)


def store_and_record(ctx: RunContext, resources: StageResources, fetched: list[tuple[dict, pd.DataFrame | None]]) -> list[dict]:
    """Upsert the fetched bars into market_data in one write, then save each pair's manifest."""
    documents = [
        document
        for manifest, bars in fetched
        if bars is not None
        for document in bars_to_documents(manifest["symbol"], manifest["timeframe"], bars, manifest["source"])
    ]
    resources.store.upsert_many("market_data", documents)
    manifests = []
    for manifest, bars in fetched:
        if bars is not None:
            manifest["store"] = resources.store_choice.to_dict()
        write_json(ctx.layout.ingest_manifest(manifest["symbol"], manifest["timeframe"]), manifest)
        manifests.append(manifest)
    return manifests


def summarize_ingest(manifests: list[dict]) -> dict:
    ok = [m for m in manifests if m.get("status") == "ok"]
    return {
        "pairs": len(manifests),
        "ok": len(ok),
        "failed": {pair_name(m["symbol"], m["timeframe"]): m["error"] for m in manifests if m.get("status") != "ok"},
        "rows": sum(m["rows"] for m in ok),
        "stores": sorted({m["store"]["kind"] for m in ok}),
    }


def validate(ctx: RunContext, ingested: list[dict], resources: StageResources | None = None) -> dict:
    """Join every ingestion of the run: check, clean into validated/, quarantine what fails.

    Raises StageFailed (after writing every report) when fewer than validation.min_pass_share of
    the run's pairs pass.
    """
    resources = resources or StageResources.open(ctx)
    if "ingest" not in recorded_stages(ctx):  # the DAG ingests pair by pair: its join records the stage, as ingest_all does
        record_stage(ctx, "ingest", summarize_ingest([m for m in ingested if m]), resources)
    by_pair = {(m["symbol"], m["timeframe"]): m for m in ingested if m}
    reports, passed, quarantined = [], [], []
    for symbol, timeframe in ctx.pairs:
        report, validated = _validate_pair(ctx, symbol, timeframe, by_pair.get((symbol, timeframe)))
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
    record_stage(ctx, "validate", _summarize_validate(manifest), resources)
    if pass_share < ctx.settings.validation.min_pass_share:
        reasons = "; ".join(f"{q['symbol']} {q['timeframe']}: {q['reasons'][0]}" for q in quarantined[:5])
        raise StageFailed(
            f"only {len(passed)} of {len(ctx.pairs)} symbol/timeframe pairs passed validation "
            f"({pass_share:.0%} < validation.min_pass_share {ctx.settings.validation.min_pass_share:.0%}); "
            f"first reasons: {reasons}; full report in {report_path}"
        )
    return manifest


def _validate_pair(ctx: RunContext, symbol: str, timeframe: str, ingested: dict | None) -> tuple[dict, dict | None]:
    """(report document, validated-file entry or None when quarantined)."""
    base = {"run_id": ctx.run_id, "symbol": symbol, "timeframe": timeframe}
    validated_path = ctx.layout.validated_bars(symbol, timeframe)
    problem = _ingest_problem(ctx, ingested)
    if problem:
        validated_path.unlink(missing_ok=True)
        return {**base, "quarantined": True, "reasons": [problem], "checks": []}, None
    instrument = ctx.settings.instrument(symbol)
    bars = read_bars_csv(ctx.layout.resolve(ingested["path"]), timeframe)
    start, end = ctx.window(timeframe)
    warmup_from, _ = ctx.fetch_window(symbol, timeframe)
    first = min(bars.index.min(), start) if len(bars) else start  # a margin the source did not have is not 'missing'
    expected = expected_timestamps(instrument.exchange, timeframe, max(warmup_from, first), end)
    report, clean = validate_bars(bars, instrument, timeframe, expected, ctx.settings.validation)
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


def _ingest_problem(ctx: RunContext, ingested: dict | None) -> str | None:
    if ingested is None:
        return "ingestion did not finish: no manifest for this pair (see the ingest task's log)"
    if ingested.get("status") != "ok":
        return f"ingestion failed: {ingested.get('error')}"
    raw_path = ctx.layout.resolve(ingested["path"])
    if not intact(raw_path, ingested["sha256"]):
        return f"{raw_path} is missing or changed since ingestion; re-run ingest for this pair"
    return None


def _quarantine(ctx: RunContext, report: dict) -> dict:
    entry = {k: report[k] for k in ("symbol", "timeframe", "reasons")}
    path = write_json(ctx.layout.quarantine_report(report["symbol"], report["timeframe"]), report)
    return {**entry, "path": ctx.layout.relative(path)}


def _summarize_validate(manifest: dict) -> dict:
    return {
        "passed": len(manifest["passed"]),
        "quarantined": {pair_name(q["symbol"], q["timeframe"]): q["reasons"] for q in manifest["quarantined"]},
        "pass_share": manifest["pass_share"],
        "rows": sum(p["rows"] for p in manifest["passed"]),
    }


def build_features(ctx: RunContext, validated: dict, resources: StageResources | None = None) -> dict:
    """Features and targets for every validated pair: per-symbol CSVs and one training table per timeframe.

    Writes features/{SYMBOL}_{tf}_features.csv, features/training_{tf}.parquet (every symbol with
    volume; ^VIX is a market input only) and features/manifest.json. Raises StageFailed when no
    symbol has a single row past the warm-up.
    """
    resources = resources or StageResources.open(ctx)
    timeframes = {}
    for timeframe in ctx.timeframes:
        entries = [p for p in validated["passed"] if p["timeframe"] == timeframe and p["symbol"] in ctx.symbols]
        if entries:
            bars = _read_validated(ctx, entries)
            instruments = {symbol: ctx.settings.instrument(symbol) for symbol in bars}
            built = build_timeframe(bars, instruments, timeframe, ctx.settings.features, ctx.window(timeframe)[0])
            timeframes[timeframe] = _write_timeframe(ctx, built)
    _remove_stale_feature_files(ctx, timeframes)
    if not any(t.get("training_table") for t in timeframes.values()):
        raise StageFailed(
            f"no training rows for run {ctx.run_id}: no validated symbol with volume has features.warmup_bars "
            f"({ctx.settings.features.warmup_bars}) bars before its rows (the source had no margin before the window); "
            f"use a later as-of or a source with more history, or add symbols ({ctx.layout.features_manifest})"
        )
    manifest = {
        "stage": "features",
        "run_id": ctx.run_id,
        "path": ctx.layout.relative(ctx.layout.features_manifest),
        "timeframes": timeframes,
        "targets": list(TARGET_COLUMNS),
        "target_definitions": _target_definitions(ctx),
        "store": resources.store_choice.to_dict(),
    }
    write_json(ctx.layout.features_manifest, {**manifest, "catalog": catalogue.describe(list(catalogue.FEATURES))})
    record_stage(ctx, "features", _summarize_features(manifest), resources)
    return manifest


def _read_validated(ctx: RunContext, entries: list[dict]) -> dict[str, pd.DataFrame]:
    bars = {}
    for entry in entries:
        path = ctx.layout.resolve(entry["path"])
        if not intact(path, entry["sha256"]):
            raise DataError(f"{path} is missing or changed since validation; re-run validate for {entry['symbol']} {entry['timeframe']}")
        bars[entry["symbol"]] = read_bars_csv(path, entry["timeframe"])
    return bars


def _write_timeframe(ctx: RunContext, built: TimeframeFeatures) -> dict:
    """Per-symbol CSVs and the training table (the feature panel) of one timeframe; the manifest entry."""
    symbols = {}
    for symbol, result in built.symbols.items():
        path = write_table_csv(ctx.layout.features_csv(symbol, built.timeframe), result.table)
        symbols[symbol] = {
            "path": ctx.layout.relative(path),
            "sha256": sha256_file(path),
            "bars": result.bars,
            "rows": len(result.table),
            "warmup_rows": result.warmup_rows,
            "incomplete_rows": result.incomplete_rows,
            "features": len(result.feature_names),
        }
    panel, excluded = feature_panel(built, {symbol: ctx.settings.instrument(symbol) for symbol in built.symbols})
    names = catalogue.symbol_feature_names(True) + built.market.feature_names
    entry = {
        "symbols": symbols,
        "excluded_from_training": excluded,
        "feature_names": names,
        "model_features": catalogue.model_features(names),
        "categories": {c: sum(catalogue.FEATURES[n].category == c for n in names) for c in (*catalogue.SYMBOL_CATEGORIES, catalogue.MARKET_CATEGORY)},
        "missing_market_features": missing_market_features(built.market),
    }
    if panel is not None:
        path = write_parquet(ctx.layout.training_table(built.timeframe), panel)
        entry["training_table"] = {
            "path": ctx.layout.relative(path),
            "sha256": sha256_file(path),
            "rows": len(panel),
            "symbols": sorted(panel.index.get_level_values("symbol").unique()),
        }
    return entry


def _remove_stale_feature_files(ctx: RunContext, written: dict) -> None:
    """Drop feature files of this run's pairs that this build did not write (e.g. now quarantined)."""
    for symbol, timeframe in ctx.pairs:
        if symbol not in written.get(timeframe, {}).get("symbols", {}):
            ctx.layout.features_csv(symbol, timeframe).unlink(missing_ok=True)
    for timeframe in ctx.timeframes:
        if "training_table" not in written.get(timeframe, {}):
            ctx.layout.training_table(timeframe).unlink(missing_ok=True)


def _target_definitions(ctx: RunContext) -> dict:
    options = ctx.settings.features
    return {
        "target_return": "next bar's return of the adjusted close",
        "target_direction": f"1 if target_return > {options.direction_threshold}, -1 if < -{options.direction_threshold}, else 0",
        "target_volatility": f"{options.volatility_window}-bar rolling std of returns, one bar ahead",
        "target_forward_volatility": f"sqrt(mean(r^2)) over the next {options.forward_volatility_bars} bars",
        "target_regime": "bull | bear | sideways | high_vol at this bar (rules in trading_ml.features.targets)",
        "target_regime_ahead": f"target_regime {options.regime.horizon} bars ahead",
    }


def _summarize_features(manifest: dict) -> dict:
    return {
        timeframe: {
            "symbols": len(entry["symbols"]),
            "features": len(entry["feature_names"]),
            "training_rows": entry.get("training_table", {}).get("rows", 0),
            "warmup_rows": sum(s["warmup_rows"] for s in entry["symbols"].values()),
        }
        for timeframe, entry in manifest["timeframes"].items()
    }


def recorded_stages(ctx: RunContext) -> dict:
    """The stages run_manifest.json records as finished for this run."""
    path = ctx.layout.run_manifest
    return read_json(path).get("stages", {}) if path.exists() else {}


def record_stage(ctx: RunContext, stage: str, summary: dict, resources: StageResources) -> dict:
    """Update the run's run_manifest.json and the store's pipeline_runs document."""
    path = ctx.layout.run_manifest
    run = read_json(path) if path.exists() else {"run_id": ctx.run_id, "stages": {}}
    run.update(ctx.to_dict())
    run["calendars"] = {symbol: ctx.settings.calendar_source(symbol) for symbol in ctx.symbols}
    run["stages"][stage] = {**summary, "finished_at": dt.datetime.now(dt.UTC).isoformat()}
    run["store"] = resources.store_choice.to_dict()
    write_json(path, run)
    resources.store.upsert_many("pipeline_runs", [run])
    return run
