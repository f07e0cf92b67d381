"""Calendars: which bars a symbol should have in a window, so holidays and weekends are not 'missing'.

Exchanges come from ``exchange_calendars`` (XNYS, XBOM, ...), built from 2000 or from the decade of
the earliest date asked about, whichever is earlier (XNYS and XLON go back to the 1980s and
before; a calendar that cannot reach that far starts where its records do). Two calendars are this project's own,
because no exchange keeps them: ``FX``, the foreign-exchange week from Sunday 17:00 to Friday 17:00
New York time (daylight saving included), one daily bar per weekday; and ``CRYPTO``, every hour of
every day. Bars per year, for annualizing, are counted from the calendar, never assumed.
"""

from __future__ import annotations

from functools import lru_cache

import logging

import exchange_calendars
import pandas as pd

from trading_ml.data.bars import bar_index
from trading_ml.errors import ConfigError

CALENDAR_START_YEAR = 2000  # every calendar covers at least this year onwards
log = logging.getLogger(__name__)
FX, CRYPTO = "FX", "CRYPTO"
FX_TIMEZONE = "America/New_York"
FX_DAY_SHIFT = pd.Timedelta(hours=7)  # New York 17:00 + 7 h = midnight: the FX trading day's date


def calendar(exchange: str, since: pd.Timestamp | None = None) -> exchange_calendars.ExchangeCalendar:
    """The exchange_calendars calendar (e.g. XNYS, XBOM) covering ``since`` onwards (2000 onwards at
    least), built once per process and decade."""
    if exchange in (FX, CRYPTO):
        raise ConfigError(
            f"{exchange} is not an exchange calendar; use the functions of trading_ml.data.calendars for it"
        )
    year = CALENDAR_START_YEAR if since is None or pd.isna(since) else pd.Timestamp(since).year
    return _calendar(exchange, min(CALENDAR_START_YEAR, year // 10 * 10))


@lru_cache(maxsize=None)
def _calendar(exchange: str, start_year: int) -> exchange_calendars.ExchangeCalendar:
    try:
        return exchange_calendars.get_calendar(exchange, start=f"{start_year}-01-01")
    except exchange_calendars.errors.InvalidCalendarName as error:
        raise ConfigError(
            f"unknown exchange calendar {exchange!r}; use a name from "
            "exchange_calendars.get_calendar_names(), e.g. XNYS or XBOM"
        ) from error
    except ValueError as error:  # the exchange's records start later than asked
        if start_year >= CALENDAR_START_YEAR:
            raise
        log.warning("%s: %s; its calendar starts in %d", exchange, error, CALENDAR_START_YEAR)
        return _calendar(exchange, CALENDAR_START_YEAR)


def time_zone(exchange: str) -> str:
    """The local time zone of a calendar: the exchange's, New York for FX, UTC for crypto."""
    if exchange == FX:
        return FX_TIMEZONE
    if exchange == CRYPTO:
        return "UTC"
    return str(calendar(exchange).tz)


def expected_timestamps(exchange: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    """Bar timestamps an exchange produces in [start, end): sessions for 1d, hour starts for 1h.

    Daily bars are stamped at midnight UTC of the session date; hourly bars at the start of each
    hour from the open, the last one cut at the close (as Yahoo labels them).
    """
    if exchange in (FX, CRYPTO):
        return _round_the_clock(exchange, timeframe, start, end)
    cal = calendar(exchange, _naive_day(start))
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


def _round_the_clock(exchange: str, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DatetimeIndex:
    """FX: the hours of the Sunday-17:00-to-Friday-17:00 New York week, and its weekdays; CRYPTO: every
    hour, every day."""
    if timeframe not in ("1d", "1h"):
        raise ConfigError(f"timeframe {timeframe!r} is not supported; use 1d or 1h")
    start, end = pd.Timestamp(start).tz_convert("UTC"), pd.Timestamp(end).tz_convert("UTC")
    if timeframe == "1d":
        stamps = pd.date_range(start.ceil("D"), end - pd.Timedelta(1, "ns"), freq="D")
        return bar_index(stamps if exchange == CRYPTO else stamps[stamps.day_of_week < 5])
    stamps = pd.date_range(start.ceil("h"), end - pd.Timedelta(1, "ns"), freq="h")
    if exchange == FX:
        stamps = stamps[(fx_days(stamps).day_of_week < 5)]
    return bar_index(stamps)


def fx_days(stamps: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The FX trading day of each UTC time: New York time + 7 hours, so Sunday 17:00 opens Monday."""
    local = pd.DatetimeIndex(stamps).tz_convert(FX_TIMEZONE).tz_localize(None)
    return (local + FX_DAY_SHIFT).normalize()


def session_days(exchange: str, stamps: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """The session date (tz-naive) each intraday bar belongs to."""
    if exchange == FX:
        return fx_days(stamps)
    if exchange == CRYPTO:
        return pd.DatetimeIndex(stamps).tz_convert("UTC").tz_localize(None).normalize()
    stamps = pd.DatetimeIndex(stamps)
    earliest = _naive_day(stamps.min()) if len(stamps) else None
    return stamps.tz_convert(calendar(exchange, earliest).tz).tz_localize(None).normalize()


def bars_per_year(exchange: str, timeframe: str, end: pd.Timestamp) -> int:
    """How many bars the calendar has in the year before ``end``'s day (about 252 sessions and 1,750
    hours on XNYS, 260 and 6,260 for FX, 365 and 8,760 for CRYPTO)."""
    end = pd.Timestamp(end)
    end = (end.tz_localize("UTC") if end.tzinfo is None else end.tz_convert("UTC")).normalize()
    return _bars_per_year(exchange, timeframe, end)


@lru_cache(maxsize=256)
def _bars_per_year(exchange: str, timeframe: str, end: pd.Timestamp) -> int:
    return max(1, len(expected_timestamps(exchange, timeframe, end - pd.DateOffset(years=1), end)))


def bars_before(exchange: str, timeframe: str, start: pd.Timestamp, count: int) -> pd.Timestamp:
    """The timestamp ``count`` bars of the calendar before ``start`` (start itself when count is 0)."""
    if count <= 0:
        return pd.Timestamp(start)
    span = pd.Timedelta(days=int(count / bars_per_year(exchange, timeframe, start) * 366 * 1.3) + 10)
    stamps = expected_timestamps(exchange, timeframe, pd.Timestamp(start) - span, start)
    return stamps[-count] if len(stamps) >= count else pd.Timestamp(start) - span


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
    (1d) or hour (1h), which never claims data earlier than it existed; so do FX and CRYPTO bars.
    """
    if exchange in (FX, CRYPTO):
        return bar_index(
            pd.DatetimeIndex(index)
            + pd.Timedelta(days=1 if timeframe == "1d" else 0, hours=0 if timeframe == "1d" else 1)
        )
    days = pd.DatetimeIndex(index).tz_convert("UTC").tz_localize(None).normalize()
    cal = calendar(exchange, days.min() if len(days) else None)
    closes = bar_index(cal.closes.reindex(days))
    if timeframe == "1d":
        fallback = pd.DatetimeIndex(index) + pd.Timedelta(days=1)
        return bar_index(closes.where(~closes.isna(), fallback))
    hour_end = pd.DatetimeIndex(index) + pd.Timedelta(hours=1)
    capped = closes.where(~closes.isna() & (closes < hour_end), hour_end)
    return bar_index(capped)
