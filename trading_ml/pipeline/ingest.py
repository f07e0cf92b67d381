"""Stage 1, ingest: fetch each (symbol, timeframe) of the run's window, with its warm-up margin,
into raw/ and the store's market_data."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator

import pandas as pd

from trading_ml.config import shorten
from trading_ml.data.bar_files import write_bars_csv
from trading_ml.errors import ConfigError, DataError, OutsideCoverage, StageFailed
from trading_ml.io import sha256_file, write_json
from trading_ml.pipeline.resources import OWN_RESOURCES, StageResources
from trading_ml.pipeline.run_manifest import stage, summarize_ingest
from trading_ml.pipeline.workers import Workers, kept_for_run
from trading_ml.run import RunContext, pair_name
from trading_ml.sources import MarketDataSource
from trading_ml.storage import bars_to_documents

log = logging.getLogger(__name__)


def ingest(
    ctx: RunContext,
    pairs: list[tuple[str, str]] | None = None,
    resources: StageResources = OWN_RESOURCES,
    on_done: Callable[[dict], None] = lambda manifest: None,
) -> list[dict]:
    """Fetch the given pairs (default: every pair of the run), each stored as it arrives; their manifests.

    Input that will stay bad (unknown symbol, malformed data) gives a manifest with status 'failed'
    and the reason, so the run goes on and validation quarantines it. A source that did not answer
    raises SourceUnavailable, so a scheduler can retry. Every call records the stage from the
    manifests of the pairs ingested so far (the DAG ingests a pair per task). Ingesting the whole
    run raises StageFailed (exit 1) when not one pair could be ingested.
    """
    manifests = ingest_pairs(
        ctx, ctx.pairs if pairs is None else [tuple(pair) for pair in pairs], resources=resources, on_done=on_done
    )
    summary = summarize_ingest(manifests)
    if pairs is None and manifests and not summary["ok"]:
        failures = "; ".join(f"{pair}: {error}" for pair, error in list(summary["failed"].items())[:3])
        raise StageFailed(f"ingest: 0 of {len(manifests)} pairs ingested, nothing to validate ({failures})")
    return manifests


@stage("ingest")
def ingest_pairs(
    ctx: RunContext,
    chosen: list[tuple[str, str]],
    resources: StageResources = OWN_RESOURCES,
    on_done: Callable[[dict], None] = lambda manifest: None,
) -> list[dict]:
    """Fetch these pairs of the run; their manifests (the stage's record is derived from them)."""
    outside = [pair_name(*pair) for pair in chosen if pair not in ctx.pairs]
    if outside:
        raise ConfigError(
            f"{', '.join(map(shorten, outside))} not in run {ctx.run_id}, which ingests {len(ctx.pairs)} pairs of "
            f"{', '.join(ctx.symbols[:5])}{' ...' if len(ctx.symbols) > 5 else ''} x {', '.join(ctx.timeframes)}"
        )
    manifests = []
    with Workers(ctx.settings.models.cores) as workers:  # many pairs: fetched and stored in worker processes
        done: Iterator[dict]
        if not workers.spreads(len(chosen)):
            done = (ingest_pair(ctx, symbol, timeframe, resources) for symbol, timeframe in chosen)
        else:
            done = workers.map(ingest_pair, [(ctx, symbol, timeframe) for symbol, timeframe in chosen])
        for manifest in done:  # one pair's bars in memory at a time, per process
            manifests.append(manifest)
            on_done(manifest)
    return manifests


def ingest_pair(ctx: RunContext, symbol: str, timeframe: str, resources: StageResources | None = None) -> dict:
    """Fetch one pair into raw/ and the store; its manifest. Without ``resources`` (in a worker
    process) the process opens its own once per run and keeps them for its next pairs."""
    if resources is None:
        resources = kept_for_run("resources", ctx.run_id, lambda: StageResources.open(ctx))
    return store_and_record(ctx, resources, *fetch_to_raw(ctx, symbol, timeframe, resources.source))


def fetch_to_raw(
    ctx: RunContext, symbol: str, timeframe: str, source: MarketDataSource
) -> tuple[dict, pd.DataFrame | None]:
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
        log.info(
            "%s %s: no warm-up margin before %s (%s); fetching the window alone",
            instrument.symbol,
            timeframe,
            start.date(),
            error,
        )
        return source.fetch(instrument, timeframe, start, end)


def store_and_record(ctx: RunContext, resources: StageResources, manifest: dict, bars: pd.DataFrame | None) -> dict:
    """Upsert one pair's fetched bars into market_data, then save its manifest (so a manifest on
    disk always means its bars are stored)."""
    if bars is not None:
        documents = bars_to_documents(manifest["symbol"], manifest["timeframe"], bars, manifest["source"])
        resources.store.upsert_many("market_data", documents)
        manifest["store"] = resources.store_choice.to_dict()
    write_json(ctx.layout.ingest_manifest(manifest["symbol"], manifest["timeframe"]), manifest)
    return manifest
