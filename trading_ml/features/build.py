"""One timeframe's feature tables, from validated bars to rows ready for training (no file I/O).

Per symbol: indicators, then the market columns as of the bar's close, then the targets. Only rows
with ``features.warmup_bars`` bars before them are kept (every recursive indicator has converged
there, so a bar's features do not depend on where the data starts), and only rows inside the
window when one is given; rows whose features are not all known are dropped and counted, never filled.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd

from trading_ml.config import FeatureSettings, Instrument
from trading_ml.data.calendars import bars_per_year
from trading_ml.features.catalogue import symbol_feature_names
from trading_ml.features.cross_section import (
    CROSS_SECTION_INPUTS,
    CROSS_SECTION_TARGETS,
    add_cross_section,
    cross_section_names,
)
from trading_ml.features.indicators import each_symbol_features
from trading_ml.features.intraday import INTRADAY_VARIANCE, session_variance
from trading_ml.features.market import MarketPanel, attach_market, build_market_panel
from trading_ml.features.targets import BASELINE_COLUMNS, TARGET_COLUMNS, make_targets


@dataclass
class SymbolFeatures:
    """One symbol's kept rows (features then targets) and what was dropped."""

    symbol: str
    table: pd.DataFrame
    feature_names: list[str]
    bars: int
    warmup_rows: int  # leading rows dropped: the warm-up margin, and rows before every feature is known
    incomplete_rows: int  # later rows with a feature missing (e.g. a stale market input)


@dataclass
class TimeframeFeatures:
    timeframe: str
    symbols: dict[str, SymbolFeatures]
    market: MarketPanel


def build_timeframe(
    bars_by_symbol: dict[str, pd.DataFrame],
    instruments: dict[str, Instrument],
    timeframe: str,
    options: FeatureSettings,
    window_start: pd.Timestamp | None = None,
    hourly_by_symbol: dict[str, pd.DataFrame] | None = None,
) -> TimeframeFeatures:
    """Features and targets of every symbol of one timeframe, for its rows from ``window_start``;
    daily rows also get their session's realized variance from ``hourly_by_symbol`` where given."""
    market = build_market_panel(bars_by_symbol, instruments, timeframe, options)
    built = build_symbols(bars_by_symbol, instruments, market, options, window_start, hourly_by_symbol)
    return TimeframeFeatures(timeframe, {result.symbol: result for result in built}, market)


def build_symbols(
    bars_by_symbol: dict[str, pd.DataFrame],
    instruments: dict[str, Instrument],
    market: MarketPanel,
    options: FeatureSettings,
    window_start: pd.Timestamp | None = None,
    hourly_by_symbol: dict[str, pd.DataFrame] | None = None,
) -> Iterator[SymbolFeatures]:
    """Each symbol's :func:`build_symbol`, as it is built. ``market`` is the whole universe's (made
    once), so any group of symbols gives the same result for each as all of them together."""
    hourly_by_symbol = hourly_by_symbol or {}
    has_volume = {symbol: instruments[symbol].has_volume for symbol in bars_by_symbol}
    for symbol, indicators in each_symbol_features(bars_by_symbol, has_volume, options.direction_threshold):
        yield build_symbol(
            symbol,
            bars_by_symbol[symbol],
            indicators,
            instruments[symbol],
            market,
            options,
            window_start,
            hourly_by_symbol.get(symbol),
        )


def build_symbol(
    symbol: str,
    bars: pd.DataFrame,
    indicators: pd.DataFrame,
    instrument: Instrument,
    market: MarketPanel,
    options: FeatureSettings,
    window_start: pd.Timestamp | None = None,
    hourly: pd.DataFrame | None = None,
) -> SymbolFeatures:
    names = symbol_feature_names(instrument.has_volume) + market.feature_names
    features = attach_market(indicators, instrument, market)[names]
    warmed = np.arange(len(bars)) >= options.warmup_bars
    if window_start is not None:
        warmed &= np.asarray(bars.index >= window_start)
    first_candidate = int(warmed.argmax()) if warmed.any() else len(bars)
    per_year = bars_per_year(instrument.exchange, market.timeframe, bars.index[-1]) if len(bars) else 1
    targets = make_targets(bars, features, options, market.timeframe, per_year, first_row=first_candidate)
    intraday = session_variance(hourly, instrument.exchange).reindex(bars.index)
    keep = features.notna().all(axis=1).to_numpy() & warmed
    first = int(keep.argmax()) if keep.any() else len(keep)
    return SymbolFeatures(
        symbol=symbol,
        table=pd.concat([features, targets, intraday], axis=1)[keep],
        feature_names=names,
        bars=len(bars),
        warmup_rows=first,
        incomplete_rows=int(len(bars) - first - keep.sum()),
    )


def feature_panel(
    built: TimeframeFeatures, instruments: dict[str, Instrument], float32: Iterable[str] = ()
) -> tuple[pd.DataFrame | None, dict[str, str]]:
    """The one table models learn from and are served on: every symbol with volume and rows past the
    warm-up, indexed by (timestamp, symbol), features (the cross-sectional ones last) then targets;
    and each symbol left out, with why. Training and serving both call this, so a bar gets the same
    row in both. The ``float32`` columns are stored as float32 (the cross-sections are computed from
    the float64 values first)."""
    tables, excluded = {}, {}
    for symbol, result in built.symbols.items():
        reason = panel_exclusion(instruments[symbol], result)
        if reason:
            excluded[symbol] = reason
        else:
            tables[symbol] = result.table
    if not tables:
        return None, excluded
    names = symbol_feature_names(True) + built.market.feature_names
    float32 = set(float32)
    panel = add_cross_section(stacked_panel(tables, stacked_as_float32(float32)), instruments)
    targets = [*TARGET_COLUMNS, *CROSS_SECTION_TARGETS, *BASELINE_COLUMNS, INTRADAY_VARIANCE]
    panel = panel[names + cross_section_names(names) + targets]
    for name in float32 & set(panel.columns):  # a column at a time: no second copy of the table
        if panel[name].dtype != np.float32:
            panel[name] = panel[name].astype(np.float32)
    return panel, excluded


def stacked_as_float32(float32: Iterable[str]) -> set[str]:
    """Of the ``float32`` columns, those already float32 when the symbols are stacked: all but the
    cross-sections' inputs, which are computed from their float64 values first."""
    return set(float32) - set(CROSS_SECTION_INPUTS)


def stacked_panel(tables: dict[str, pd.DataFrame], float32: set[str]) -> pd.DataFrame:
    """The symbols' timestamp-indexed tables as one (timestamp, symbol) panel sorted by timestamp then
    symbol, as ``pd.concat(...).sort_index()`` gives it, built a column at a time so that no other
    copy of the panel is held; the ``float32`` columns as float32."""
    symbols = sorted(tables)
    lengths = [len(tables[symbol]) for symbol in symbols]
    stamps = pd.DatetimeIndex(tables[symbols[0]].index.append([tables[symbol].index for symbol in symbols[1:]]))
    order = np.lexsort((np.repeat(np.arange(len(symbols)), lengths), stamps.asi8))  # by timestamp, then symbol
    index = pd.MultiIndex.from_arrays(
        [stamps[order], pd.Index(np.repeat(np.array(symbols, dtype=object), lengths)[order], dtype="str")],
        names=["timestamp", "symbol"],
    )
    columns, by_symbol = {}, [columns_of(tables[symbol]) for symbol in symbols]
    for name in dict.fromkeys(name for table in tables.values() for name in table.columns):
        parts = [of[name] if name in of else np.full(len(tables[s]), np.nan) for s, of in zip(symbols, by_symbol)]
        if all(part.dtype in (np.float64, np.float32) for part in parts):  # float32: narrowed by the stage
            values = np.concatenate(parts)[order]
            columns[name] = values.astype(np.float32, copy=False) if name in float32 else values
        else:  # nullable integers, strings: stacked by pandas, their dtype kept
            stacked = pd.concat([pd.Series(part) for part in parts])
            columns[name] = pd.Series(stacked.array.take(order), index=index, dtype=stacked.dtype)
    return pd.DataFrame(columns, index=index, copy=False)


def columns_of(table: pd.DataFrame) -> dict[str, np.ndarray | pd.Series]:
    """Each column of ``table``: the float ones as rows of one array per dtype (views of the table's
    blocks when it has one per dtype; a Series per column costs 10x), the others as Series."""
    arrays: dict[str, np.ndarray | pd.Series] = {}
    for dtype in (np.float64, np.float32):
        part = table.select_dtypes(dtype)
        arrays.update(zip(part.columns, part.to_numpy().T))
    return {name: arrays[name] if name in arrays else table[name] for name in table.columns}


def panel_exclusion(instrument: Instrument, result: SymbolFeatures) -> str | None:
    """Why a symbol is not in the feature panel, or None."""
    if not instrument.has_volume:
        return "market input only (no volume)"
    if result.table.empty:
        return (
            f"no rows past the warm-up: {result.bars} bars, {result.warmup_rows} needed before every feature is known"
        )
    return None
