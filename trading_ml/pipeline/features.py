"""Stage 3, features: indicators, market-wide features and targets of every validated pair; the
per-symbol feature files and one training table (the feature panel) per timeframe."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import pandas as pd

from trading_ml.data.bar_files import read_bars_csv
from trading_ml.errors import DataError, StageFailed
from trading_ml.features import catalogue
from trading_ml.features.build import (
    SymbolFeatures,
    TimeframeFeatures,
    build_symbols,
    feature_panel,
    stacked_as_float32,
)
from trading_ml.features.cross_section import CROSS_SECTION_TARGETS, cross_section_names
from trading_ml.features.indicators import GROUP_SIZE
from trading_ml.features.market import MarketPanel, build_market_panel, missing_market_features
from trading_ml.features.targets import TARGET_COLUMNS
from trading_ml.io import (
    checked_bytes,
    sha256_file,
    write_json,
    write_mapped_matrix,
    write_mapped_table,
    write_parquet,
    write_table_csv,
)
from trading_ml.models.base import feature_matrix, symbol_grouped_order
from trading_ml.pipeline.resources import OWN_RESOURCES, StageResources
from trading_ml.pipeline.run_manifest import stage
from trading_ml.pipeline.workers import Workers
from trading_ml.run import RunContext


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


@stage("features", summarize=_summarize_features)
def build_features(ctx: RunContext, resources: StageResources = OWN_RESOURCES) -> dict:
    """Features and targets for every validated pair: per-symbol CSVs and one training table per timeframe.

    Daily rows also get their session's realized variance from the run's validated hourly bars
    (``intraday_variance``; HAR reads it). Writes features/{SYMBOL}_{tf}_features.csv,
    features/training_{tf}.parquet (every symbol with volume; ^VIX is a market input only) and
    features/manifest.json. Raises StageFailed when no symbol has a single row past the warm-up.
    """
    validated = ctx.stage_manifest("validate")
    timeframes = {}
    with Workers(ctx.settings.models.cores) as workers:  # symbols are read and built apart, in groups
        bars_by_timeframe = {tf: _read_validated(ctx, _passed(ctx, validated, tf), workers) for tf in ctx.timeframes}
        rows = {tf: sum(len(frame) for frame in bars.values()) for tf, bars in bars_by_timeframe.items() if bars}
        smallest_first = sorted(rows, key=rows.__getitem__)  # the largest table is made last, without the workers
        building = {  # in workers, every timeframe's groups are queued now: the next builds while one is written
            timeframe: _start_timeframe(
                ctx, timeframe, bars_by_timeframe[timeframe], bars_by_timeframe.get("1h", {}), workers
            )
            for timeframe in smallest_first
        }
        del bars_by_timeframe
        for timeframe, (market, results) in building.items():
            built, written = _collected(timeframe, market, results)
            if timeframe == smallest_first[-1]:  # all the workers' work is in: they stop (0.6 GB at 500 symbols)
                workers.close()  # before the largest training table is made
            timeframes[timeframe] = _write_timeframe(ctx, built, written)
            del built  # in the stage's process, one timeframe's tables in memory at a time
    timeframes = {tf: timeframes[tf] for tf in ctx.timeframes if tf in timeframes}
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
        "targets": [*TARGET_COLUMNS, *CROSS_SECTION_TARGETS],
        "target_definitions": _target_definitions(ctx),
        "store": resources.store_choice.to_dict(),
    }
    write_json(ctx.layout.features_manifest, {**manifest, "catalog": catalogue.describe(list(catalogue.FEATURES))})
    return manifest


def _passed(ctx: RunContext, validated: dict, timeframe: str) -> list[dict]:
    """The validate manifest's passed entries of this run's symbols in one timeframe."""
    return [p for p in validated["passed"] if p["timeframe"] == timeframe and p["symbol"] in ctx.symbols]


def _read_validated(ctx: RunContext, entries: list[dict], workers: Workers) -> dict[str, pd.DataFrame]:
    return dict(zip([e["symbol"] for e in entries], workers.map(_read_entry, [(ctx, e) for e in entries])))


def _read_entry(ctx: RunContext, entry: dict) -> pd.DataFrame:
    path = ctx.layout.resolve(entry["path"])
    content = checked_bytes(path, entry["sha256"])  # read once: the bytes checked are the bytes parsed
    if content is None:
        raise DataError(
            f"{path} is missing or changed since validation; re-run validate for {entry['symbol']} {entry['timeframe']}"
        )
    return read_bars_csv(path, entry["timeframe"], content=content)


def _start_timeframe(
    ctx: RunContext, timeframe: str, bars: dict[str, pd.DataFrame], hourly: dict[str, pd.DataFrame], workers: Workers
) -> tuple[MarketPanel, Iterator[list[tuple[SymbolFeatures, dict]]]]:
    """The timeframe's market panel (made here), and its symbols' groups started: each group's
    symbols built and written to their CSVs (:func:`_build_group`), in the workers when there is
    more than one group, else as the results are read. Daily rows get the session variance of
    ``hourly``."""
    instruments = {symbol: ctx.settings.instrument(symbol) for symbol in bars}
    market = build_market_panel(bars, instruments, timeframe, ctx.settings.features)
    hourly = hourly if timeframe == "1d" else {}
    calls = [
        (ctx, timeframe, {s: bars[s] for s in group}, market, {s: hourly[s] for s in group if s in hourly})
        for group in symbol_groups(list(bars), workers.processes)
    ]
    return market, workers.map(_build_group, calls, min_calls=2)


def _collected(
    timeframe: str, market: MarketPanel, results: Iterator[list[tuple[SymbolFeatures, dict]]]
) -> tuple[TimeframeFeatures, dict[str, dict]]:
    """The built features of a started timeframe, and each symbol's manifest entry."""
    symbols, written = {}, {}
    for group in results:
        for result, entry in group:
            symbols[result.symbol], written[result.symbol] = result, entry
    return TimeframeFeatures(timeframe, symbols, market), written


def symbol_groups(symbols: list[str], processes: int) -> list[list[str]]:
    """The symbols in groups of at most GROUP_SIZE, as many groups as a multiple of ``processes``
    (one group when they fit in one), of near-equal sizes."""
    count = -(-len(symbols) // GROUP_SIZE)
    if count > 1:
        count = -(-count // processes) * processes
    return [list(group) for group in np.array_split(np.array(symbols, dtype=object), max(count, 1)) if len(group)]


def _build_group(
    ctx: RunContext, timeframe: str, bars: dict[str, pd.DataFrame], market: MarketPanel, hourly: dict
) -> list[tuple[SymbolFeatures, dict]]:
    """A group of symbols built and each written to its CSV; (features, manifest entry) of each, the
    features then narrowed to what the training table stores as float32 (half the memory to hand back)."""
    instruments = {symbol: ctx.settings.instrument(symbol) for symbol in bars}
    built = build_symbols(bars, instruments, market, ctx.settings.features, ctx.window(timeframe)[0], hourly)
    written = []
    for result in built:
        entry = _write_symbol(ctx, timeframe, result)  # the CSV has the float64 values
        written.append((_narrowed(result), entry))
    return written


def _narrowed(result: SymbolFeatures) -> SymbolFeatures:
    """``result`` with the columns the panel stacks as float32 already in float32 (the cast it would make)."""
    table, narrow = result.table, stacked_as_float32(catalogue.float32_features(result.feature_names))
    names = [name for name in table.columns if name in narrow]
    cast = pd.DataFrame(table[names].to_numpy(np.float32), index=table.index, columns=names)  # one block: 4x faster
    narrowed = pd.concat([table.drop(columns=names), cast], axis=1)[table.columns]
    return dataclasses.replace(result, table=narrowed.copy())  # the copy has one block per dtype: stacked as views


def _write_symbol(ctx: RunContext, timeframe: str, result: SymbolFeatures) -> dict:
    """One symbol's feature CSV; its manifest entry."""
    path = write_table_csv(ctx.layout.features_csv(result.symbol, timeframe), result.table)
    return {
        "path": ctx.layout.relative(path),
        "sha256": sha256_file(path),
        "bars": result.bars,
        "rows": len(result.table),
        "warmup_rows": result.warmup_rows,
        "incomplete_rows": result.incomplete_rows,
        "features": len(result.feature_names),
    }


def _write_timeframe(ctx: RunContext, built: TimeframeFeatures, written: dict[str, dict]) -> dict:
    """The training table (the feature panel) of one timeframe; the manifest entry, with each
    symbol's ``written`` entry."""
    names = catalogue.symbol_feature_names(True) + built.market.feature_names
    with_cross_section = names + cross_section_names(names)
    instruments = {symbol: ctx.settings.instrument(symbol) for symbol in built.symbols}
    panel, excluded = feature_panel(built, instruments, catalogue.float32_features(with_cross_section))
    names = with_cross_section if panel is not None else names
    entry = {
        "symbols": {symbol: written[symbol] for symbol in built.symbols},
        "excluded_from_training": excluded,
        "feature_names": names,
        "model_features": catalogue.model_features(names),
        "categories": {
            c: sum(catalogue.FEATURES[n].category == c for n in names)
            for c in (*catalogue.SYMBOL_CATEGORIES, catalogue.MARKET_CATEGORY, catalogue.CROSS_SECTION_CATEGORY)
        },
        "missing_market_features": missing_market_features(built.market),
    }
    if panel is not None:
        path = write_parquet(ctx.layout.training_table(built.timeframe), panel)
        table: dict = {
            "path": ctx.layout.relative(path),
            "sha256": sha256_file(path),
            "rows": len(panel),
            "symbols": sorted(panel.index.get_level_values("symbol").unique()),
        }
        if built.timeframe == ctx.settings.models.timeframe:  # the table the models learn from, mapped by them
            mapped = write_mapped_table(ctx.layout.mapped_training_table(built.timeframe), panel)
            table["mapped"] = {"path": ctx.layout.relative(mapped), "sha256": sha256_file(mapped)}
            table["inputs"] = _write_model_inputs(ctx, built.timeframe, panel, catalogue.model_features(names))
        else:
            ctx.layout.mapped_training_table(built.timeframe).unlink(missing_ok=True)
            ctx.layout.model_inputs(built.timeframe).unlink(missing_ok=True)
        entry["training_table"] = table
    return entry


INPUT_BLOCK_ROWS = 16_384  # rows of the model inputs gathered and written at a time (7 MB at 113 features)


def _write_model_inputs(ctx: RunContext, timeframe: str, panel: pd.DataFrame, names: list[str]) -> dict:
    """The panel's model features, float32, rows grouped by symbol, written a block of rows at a
    time: the one copy the models' processes map instead of each gathering its own
    (trading_ml.models.dataset.GroupedInputs). Its manifest entry."""
    order = symbol_grouped_order(panel)
    blocks = (
        feature_matrix(panel, names, "the features stage", order[start : start + INPUT_BLOCK_ROWS])
        for start in range(0, len(order), INPUT_BLOCK_ROWS)
    )
    path = ctx.layout.model_inputs(timeframe)
    sha256 = write_mapped_matrix(path, (len(order), len(names)), blocks)
    return {"path": ctx.layout.relative(path), "sha256": sha256}


def _remove_stale_feature_files(ctx: RunContext, written: dict) -> None:
    """Drop feature files of this run's pairs that this build did not write (e.g. now quarantined)."""
    for symbol, timeframe in ctx.pairs:
        if symbol not in written.get(timeframe, {}).get("symbols", {}):
            ctx.layout.features_csv(symbol, timeframe).unlink(missing_ok=True)
    for timeframe in ctx.timeframes:
        if "training_table" not in written.get(timeframe, {}):
            ctx.layout.training_table(timeframe).unlink(missing_ok=True)
            ctx.layout.mapped_training_table(timeframe).unlink(missing_ok=True)
            ctx.layout.model_inputs(timeframe).unlink(missing_ok=True)


def _target_definitions(ctx: RunContext) -> dict:
    options = ctx.settings.features
    return {
        "target_return": "next bar's return of the adjusted close",
        "target_direction": f"1 if target_return > {options.direction_threshold}, "
        f"-1 if < -{options.direction_threshold}, else 0",
        "target_volatility": f"the plan's: {options.volatility_window}-bar rolling std of returns, one bar ahead",
        "target_forward_volatility": f"the volatility task's: realized volatility sqrt(mean(r^2)) over the next "
        f"{options.forward_volatility_bars} bars",
        "target_regime": "bull | bear | sideways | high_vol at this bar (rules in trading_ml.features.targets)",
        "target_regime_ahead": f"target_regime {options.regime.horizon} bars ahead",
        "target_return_rank": "target_return's percentile rank across the date's symbols, centred on 0",
        "target_direction_cross_section": "terciles of target_return_rank: 1 top third, -1 bottom third, else 0",
    }
