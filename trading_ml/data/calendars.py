"""Exchange calendars: which bars a symbol should have in a window, so holidays are not 'missing'."""

from __future__ import annotations

from functools import lru_cache

import exchange_calendars
import pandas as pd

from trading_ml.data.bars import bar_index
from trading_ml.errors import ConfigError

CALENDAR_START = "2000-01-01"


@lru_cache(maxsize=None)
def calendar(exchange: str) -> exchange_calendars.ExchangeCalendar:
    """The exchange_calendars calendar (e.g. XNYS, XBOM), built once per process."""
    try:
        return exchange_calendars.get_calendar(exchange, start=CALENDAR_START)
    except exchange_calendars.errors.InvalidCalendarName as error:
        raise ConfigError(
            f"unknown exchange calendar {exchange!r}; use a name from "
            "exchange_calendars.get_calendar_names(), e.g. XNYS or XBOM"
        ) from error


def expected_timestamps(
    exchange: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp
) -> pd.DatetimeIndex:
    """Bar timestamps an exchange produces in [start, end): sessions for 1d, hour starts for 1h.

    Daily bars are stamped at midnight UTC of the session date; hourly bars at the start of each
    hour from the open, the last one cut at the close (as Yahoo labels them).
    """
    cal = calendar(exchange)
    first = max(_naive_day(start), cal.first_session)
    last = min(_naive_day(end - pd.Timedelta(1, "ns")), cal.last_session)
    if first > last:
        return bar_index([])
    if timeframe == "1d":
        sessions = cal.sessions_in_range(first, last)
        return bar_index(sessions)
    if timeframe == "1h":
        intervals = cal.trading_index(first, last, period="1h", intervals=True, force_close=True)
        stamps = pd.DatetimeIndex(intervals.left)
        stamps = stamps[(stamps >= start) & (stamps < end)]
        return bar_index(stamps)
    raise ConfigError(f"timeframe {timeframe!r} is not supported; use 1d or 1h")


def sessions(exchange: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    """Session dates (tz-naive) of an exchange in [start, end)."""
    return expected_timestamps(exchange, "1d", start, end).tz_localize(None)


def _naive_day(stamp: pd.Timestamp) -> pd.Timestamp:
    stamp = pd.Timestamp(stamp)
    if stamp.tzinfo is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return stamp.normalize()


def bar_close_times(exchange: str, timeframe: str, index: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """When each bar is complete, in UTC: its session's close (1d), or an hour after its start but
    no later than that close (1h). Bars on dates the calendar does not know end with their UTC day
    (1d) or hour (1h), which never claims data earlier than it existed.
    """
    cal = calendar(exchange)
    days = pd.DatetimeIndex(index).tz_convert("UTC").tz_localize(None).normalize()
    closes = bar_index(cal.closes.reindex(days))
    if timeframe == "1d":
        fallback = pd.DatetimeIndex(index) + pd.Timedelta(days=1)
        return bar_index(closes.where(~closes.isna(), fallback))
    hour_end = pd.DatetimeIndex(index) + pd.Timedelta(hours=1)
    capped = closes.where(~closes.isna() & (closes < hour_end), hour_end)
    return bar_index(capped)
