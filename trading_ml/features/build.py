"""One timeframe's feature tables, from validated bars to rows ready for training (no file I/O).

Per symbol: indicators, then the market columns as of the bar's close, then the targets. Rows
whose features are not all known yet (the warm-up of the longest window, 200 bars) are dropped and
counted, never filled.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from trading_ml.config import FeatureSettings, Instrument
from trading_ml.features.indicators import symbol_features
from trading_ml.features.market import MarketPanel, attach_market, build_market_panel
from trading_ml.features.registry import symbol_feature_names
from trading_ml.features.targets import make_targets


@dataclass
class SymbolFeatures:
    """One symbol's kept rows (features then targets) and what was dropped."""

    symbol: str
    table: pd.DataFrame
    feature_names: list[str]
    bars: int
    warmup_rows: int  # leading rows before every feature is known
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
) -> TimeframeFeatures:
    """Features and targets of every symbol of one timeframe."""
    market = build_market_panel(bars_by_symbol, instruments, timeframe, options)
    symbols = {
        symbol: build_symbol(symbol, bars, instruments[symbol], market, options)
        for symbol, bars in bars_by_symbol.items()
    }
    return TimeframeFeatures(timeframe, symbols, market)


def build_symbol(
    symbol: str, bars: pd.DataFrame, instrument: Instrument, market: MarketPanel, options: FeatureSettings
) -> SymbolFeatures:
    names = symbol_feature_names(instrument.has_volume) + market.feature_names
    indicators = symbol_features(bars, instrument.has_volume, options.direction_threshold)
    features = attach_market(indicators, instrument, market)[names]
    targets = make_targets(bars, features, options, market.timeframe)
    complete = features.notna().all(axis=1)
    warmup = int(complete.to_numpy().argmax()) if complete.any() else len(complete)
    table = pd.concat([features, targets], axis=1)[complete]
    return SymbolFeatures(
        symbol=symbol,
        table=table,
        feature_names=names,
        bars=len(bars),
        warmup_rows=warmup,
        incomplete_rows=int(len(bars) - warmup - complete.sum()),
    )
