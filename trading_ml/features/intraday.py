"""A session's realized variance from its hourly bars: the daily variance HAR reads where a run has them.

Each daily row gets the sum of the squared log returns of its session's hourly closes (the first
from the session's open), only when every hourly bar the exchange calendar expects in that session
is there; otherwise it stays NaN (HAR falls back to the daily range). Every hourly bar of a session
closes by the session's close, so the column uses no bar after the daily row's own.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from trading_ml.data import calendars
from trading_ml.data.bars import bar_index

INTRADAY_VARIANCE = "intraday_variance"  # the panel's column; NaN where the run has no complete hourly session


def session_variance(hourly: pd.DataFrame, exchange: str) -> pd.Series:
    """Realized variance of each complete session of ``hourly`` bars, indexed like daily bars
    (midnight UTC of the session date)."""
    if hourly is None or hourly.empty:
        return pd.Series(dtype="float64", index=bar_index([]), name=INTRADAY_VARIANCE)
    hourly = hourly.sort_index()
    stamps = pd.DatetimeIndex(hourly.index)
    days = calendars.session_days(exchange, stamps)
    expected = calendars.expected_timestamps(
        exchange, "1h", stamps.min() - pd.Timedelta(days=1), stamps.max() + pd.Timedelta(days=1)
    )
    expected_per_day = pd.Series(1, index=calendars.session_days(exchange, expected)).groupby(level=0).sum()
    with np.errstate(divide="ignore", invalid="ignore"):  # a non-positive price leaves its session out
        log_close = np.log(hourly["close"].to_numpy(dtype="float64"))
        log_open = np.log(hourly["open"].to_numpy(dtype="float64"))
    first_of_day = np.r_[True, days[1:] != days[:-1]]
    previous = np.where(first_of_day, log_open, np.r_[np.nan, log_close[:-1]])
    squared = (log_close - previous) ** 2
    usable = stamps.isin(expected) & np.isfinite(squared)  # on the calendar, and no non-positive price
    sessions = pd.DataFrame({"squared": squared, "usable": usable}, index=days).groupby(level=0)
    bars = sessions.size()
    complete = sessions["usable"].all() & bars.eq(expected_per_day.reindex(bars.index))
    variance = sessions["squared"].sum()[complete]
    return pd.Series(variance.to_numpy(), index=bar_index(variance.index), name=INTRADAY_VARIANCE)
