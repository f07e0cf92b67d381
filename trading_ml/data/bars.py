"""The normalized bar frame every source returns, and the checks that make a frame one.

A bar frame has a UTC DatetimeIndex named ``timestamp`` (a daily bar is stamped at midnight UTC of
its session date; an intraday bar at its start) and the float columns open, high, low, close,
adj_close and volume.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_ml.errors import DataError

BAR_COLUMNS = ["open", "high", "low", "close", "adj_close", "volume"]
PRICE_COLUMNS = ["open", "high", "low", "close", "adj_close"]

COLUMN_ALIASES = {
    "adj close": "adj_close",
    "adjclose": "adj_close",
    "adjusted_close": "adj_close",
    "adj_close": "adj_close",
}


def bar_index(stamps) -> pd.DatetimeIndex:
    """The index every bar frame uses: UTC, nanosecond resolution, named timestamp.

    Naive input is taken as UTC; pandas 3 would otherwise mix µs and ns resolutions across sources.
    """
    index = pd.DatetimeIndex(stamps)
    index = index.tz_localize("UTC") if index.tz is None else index.tz_convert("UTC")
    return index.as_unit("ns").rename("timestamp")


def empty_bars() -> pd.DataFrame:
    index = bar_index([])
    return pd.DataFrame({c: pd.Series(dtype="float64") for c in BAR_COLUMNS}, index=index)


def canonical_column(name: object) -> str:
    text = str(name).strip().lower().replace("-", "_")
    return COLUMN_ALIASES.get(text, text.replace(" ", "_"))


def to_utc_index(index: pd.Index, timeframe: str, origin: str) -> pd.DatetimeIndex:
    """Timestamps to UTC; daily bars keep their session date (local midnight becomes UTC midnight)."""
    stamps = pd.DatetimeIndex(index)
    if timeframe.endswith("d"):
        if stamps.tz is not None:
            stamps = stamps.tz_localize(None)
        return bar_index(stamps.normalize())
    if stamps.tz is None:
        raise DataError(
            f"{origin}: intraday timestamps have no timezone; give them an offset "
            "(for example 2024-08-01T13:30:00Z)"
        )
    return bar_index(stamps)


def normalize_bars(frame: pd.DataFrame, timeframe: str, origin: str) -> pd.DataFrame:
    """Check and convert a frame with OHLCV columns and a datetime index into the bar frame.

    ``origin`` names where the data came from (a file, or 'yahoo AAPL 1d') for error messages.
    Rejects what cannot be validated later: missing columns, non-numeric, NaN or non-positive
    prices, negative volume, timestamps out of order. Duplicates, OHLC logic, jumps and zero
    volume pass through: the validation stage reports those.
    """
    if frame is None or frame.empty:
        raise DataError(f"{origin}: no bars")
    bars = frame.rename(columns=canonical_column)
    if "adj_close" not in bars.columns and "close" in bars.columns:
        bars = bars.assign(adj_close=bars["close"])
    missing = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing:
        raise DataError(
            f"{origin}: missing column(s) {', '.join(missing)}; expected "
            f"{', '.join(BAR_COLUMNS)} (adj_close optional)"
        )
    bars = bars[BAR_COLUMNS].copy()
    bars.index = to_utc_index(bars.index, timeframe, origin)
    for column in BAR_COLUMNS:
        bars[column] = _numeric_column(bars[column], column, origin)
    _reject_bad_values(bars, origin)
    _reject_out_of_order(bars.index, origin)
    return bars


def _numeric_column(values: pd.Series, column: str, origin: str) -> pd.Series:
    if pd.api.types.is_numeric_dtype(values.dtype):  # parsed as numbers already (a CSV reader, a source)
        return values.astype("float64")
    numbers = pd.to_numeric(values, errors="coerce")
    bad = numbers.isna() & values.notna()
    if bad.any():
        raise DataError(
            f"{origin}: column {column!r} at {_row(values.index, bad)} holds {values[bad].iloc[0]!r}, "
            "which is not a number"
        )
    return numbers.astype("float64")


MAX_INTRABAR_RATIO = 10  # open, high or low this many times above or below the close: a broken row


def _reject_bad_values(bars: pd.DataFrame, origin: str) -> None:
    """Every price finite and positive (each column named for its own fault), then no open, high or
    low absurdly far from its close."""
    prices = bars[PRICE_COLUMNS]
    for column in PRICE_COLUMNS:
        bad = ~np.isfinite(prices[column]) | (prices[column] <= 0)
        if bad.any():
            raise DataError(
                f"{origin}: column {column!r} at {_row(bars.index, bad)} is {number(prices[column][bad].iloc[0])}; "
                "prices must be positive finite numbers (remove or fix that row)"
            )
    for column in ("open", "high", "low"):  # adj_close's ratio to the close is the adjustment factor: 31x for old rows is true
        absurd = (prices[column] > MAX_INTRABAR_RATIO * prices["close"]) | (prices[column] * MAX_INTRABAR_RATIO < prices["close"])
        if absurd.any():
            raise DataError(
                f"{origin}: column {column!r} at {_row(bars.index, absurd)} is {number(prices[column][absurd].iloc[0])}, more than "
                f"{MAX_INTRABAR_RATIO}x away from that bar's close {number(prices['close'][absurd].iloc[0])}; fix that row"
            )
    bad_volume = ~np.isfinite(bars["volume"]) | (bars["volume"] < 0)
    if bad_volume.any():
        raise DataError(f"{origin}: volume at {_row(bars.index, bad_volume)} is missing, negative or infinite; use a finite 0 or more")


def number(value: float) -> str:
    """A value as a person reads it: 6 significant digits, 1.2e+308 rather than 309 digits."""
    return f"{value:.6g}"


def percent(value: float) -> str:
    """A move as a signed percentage, readable at any size: -49.6%, +3.2e+306%."""
    return f"{value:+.1%}" if abs(value) < 100 else f"{value * 100:+.3g}%"


def _row(index: pd.Index, mask: pd.Series) -> str:
    """'data row N (timestamp)' of the first True in mask, counting data rows from 1."""
    position = int(mask.to_numpy().argmax())
    return f"data row {position + 1} ({index[position]})"


def _reject_out_of_order(index: pd.DatetimeIndex, origin: str) -> None:
    if index.is_monotonic_increasing:
        return
    steps = index[1:] < index[:-1]
    position = int(steps.argmax()) + 1
    raise DataError(
        f"{origin}: timestamps out of order at data row {position + 1} "
        f"({index[position]} comes after {index[position - 1]}); sort the bars by time"
    )
