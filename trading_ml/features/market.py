"""Market-wide features: the fear gauge (VIX), breadth of the equity universe, the benchmark index.

They need every symbol of a timeframe, so they are built after the validation join. Each symbol
sees the market as it was when its own bar closed: a component joins by close time (as of, looking
backward), so ^NSEI's daily bar, closed at 10:00 UTC, gets the US market of the previous US session.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trading_ml.config import FeatureSettings, Instrument
from trading_ml.data.calendars import bar_close_times
from trading_ml.features.catalogue import MARKET_INPUTS
from trading_ml.features.indicators import rolling_std

STALE_AFTER = {"1d": pd.Timedelta(days=7), "1h": pd.Timedelta(days=4)}  # older market values are not used


@dataclass
class MarketPanel:
    """Market components of one timeframe, each indexed by the close time of its bars."""

    timeframe: str
    components: dict[str, pd.DataFrame] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # input -> why its features are absent

    @property
    def feature_names(self) -> list[str]:
        return [name for component in self.components.values() for name in component.columns] + (
            ["relative_strength_20"] if "benchmark" in self.components else []
        )


def build_market_panel(
    bars_by_symbol: dict[str, pd.DataFrame],
    instruments: dict[str, Instrument],
    timeframe: str,
    options: FeatureSettings,
) -> MarketPanel:
    """The VIX, breadth and benchmark components from whatever of them this run validated."""
    panel = MarketPanel(timeframe)
    closed = {s: _by_close_time(bars, instruments[s], timeframe) for s, bars in bars_by_symbol.items()}
    if options.volatility_index in closed:
        panel.components["vix"] = vix_component(closed[options.volatility_index])
    else:
        panel.missing["vix"] = (
            f"{options.volatility_index} ({options.volatility_index} {timeframe}) was not validated in this run"
        )
    equities = {s: bars for s, bars in closed.items() if instruments[s].kind == "equity"}
    if equities:
        panel.components["breadth"] = breadth_component(equities)
    else:
        panel.missing["breadth"] = f"no equities of the universe were validated for {timeframe}"
    if options.benchmark in closed:
        panel.components["benchmark"] = benchmark_component(closed[options.benchmark])
    else:
        panel.missing["benchmark"] = f"the benchmark {options.benchmark} ({timeframe}) was not validated in this run"
    return panel


def vix_component(vix: pd.DataFrame) -> pd.DataFrame:
    level = vix["close"]
    return pd.DataFrame(
        {
            "vix_level": level,
            "vix_change_1": level.diff(),
            "vix_change_5": level.pct_change(5),
            "vix_to_sma_20": level / level.rolling(20).mean() - 1,
        }
    )


def breadth_component(equities: dict[str, pd.DataFrame]) -> pd.DataFrame:
    """Share above the 50-bar average and net advancers, over the equities that have this bar."""
    above, moves = {}, {}
    for symbol, bars in equities.items():
        close = bars["close"]
        average = close.rolling(50).mean()
        above[symbol] = (close > average).astype(float).where(average.notna())
        moves[symbol] = np.sign(bars["adj_close"].pct_change())
    above_frame, move_frame = pd.DataFrame(above), pd.DataFrame(moves)
    net = ((move_frame > 0).sum(axis=1) - (move_frame < 0).sum(axis=1)) / move_frame.notna().sum(axis=1)
    net = net.where(move_frame.notna().any(axis=1))
    return pd.DataFrame(
        {
            "breadth_above_sma_50": above_frame.mean(axis=1),
            "advance_decline": net,
            "advance_decline_10": net.rolling(10).mean(),
        }
    )


def benchmark_component(benchmark: pd.DataFrame) -> pd.DataFrame:
    price = benchmark["adj_close"]
    returns = price.pct_change()
    close = benchmark["close"]
    return pd.DataFrame(
        {
            "benchmark_return_1": returns,
            "benchmark_return_5": price.pct_change(5),
            "benchmark_return_20": price.pct_change(20),
            "benchmark_close_to_sma_200": close / close.rolling(200).mean() - 1,
            "benchmark_volatility_20": rolling_std(returns.to_numpy(), 20),
        }
    )


def attach_market(features: pd.DataFrame, instrument: Instrument, panel: MarketPanel) -> pd.DataFrame:
    """features plus every market column, each as known when this symbol's bar closed."""
    close_times = bar_close_times(instrument.exchange, panel.timeframe, features.index)
    joined = [features]
    for component in panel.components.values():
        joined.append(_as_of(component, close_times, STALE_AFTER[panel.timeframe]).set_axis(features.index))
    frame = pd.concat(joined, axis=1)
    if "benchmark" in panel.components:
        frame["relative_strength_20"] = frame["return_20"] - frame["benchmark_return_20"]
    return frame


def _as_of(component: pd.DataFrame, close_times: pd.DatetimeIndex, stale_after: pd.Timedelta) -> pd.DataFrame:
    """The component's last row at or before each close time, if not older than stale_after (as
    ``pd.merge_asof`` backward with that tolerance, by one binary search of the sorted close times)."""
    if not component.index.is_monotonic_increasing:  # the binary search needs them in order
        component = component.sort_index()
    stamps = component.index
    if not len(stamps):
        return pd.DataFrame(np.nan, index=range(len(close_times)), columns=component.columns)
    latest = stamps.searchsorted(close_times, side="right") - 1
    known = latest >= 0
    taken = np.where(known, latest, 0)
    fresh = known & np.asarray(close_times - stamps[taken] <= stale_after)
    values = component.iloc[taken].reset_index(drop=True)
    return values.where(np.broadcast_to(fresh[:, None], values.shape))


def _by_close_time(bars: pd.DataFrame, instrument: Instrument, timeframe: str) -> pd.DataFrame:
    return bars.set_axis(bar_close_times(instrument.exchange, timeframe, bars.index))


def missing_market_features(panel: MarketPanel) -> dict[str, str]:
    """Each absent market feature with the reason its input is missing."""
    return {name: panel.missing[source] for source in panel.missing for name in MARKET_INPUTS[source]}
