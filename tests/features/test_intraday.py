"""A session's realized variance from its hourly bars: the sum, complete sessions only, and no look-ahead."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tests.features.test_lookahead import closed_by, cut_points, truncated
from trading_ml.data.bars import bar_index
from trading_ml.data.calendars import expected_timestamps
from trading_ml.features.build import build_timeframe
from trading_ml.features.intraday import INTRADAY_VARIANCE, session_variance


def hourly_bars(days: int = 3, seed: int = 0) -> pd.DataFrame:
    """Constructed XNYS hourly bars of ``days`` sessions from 2024-03-04 (seven bars each)."""
    stamps = expected_timestamps(
        "XNYS", "1h", pd.Timestamp("2024-03-04", tz="UTC"), pd.Timestamp("2024-04-01", tz="UTC")
    )
    stamps = stamps[: 7 * days]
    closes = 100 * np.exp(np.cumsum(np.random.default_rng(seed).normal(0, 0.004, len(stamps))))
    opens = np.r_[99.5, closes[:-1]]
    return pd.DataFrame(
        {"open": opens, "high": np.maximum(opens, closes), "low": np.minimum(opens, closes), "close": closes},
        index=bar_index(stamps),
    )


def test_a_sessions_variance_is_the_sum_of_its_squared_hourly_log_returns_from_the_open():
    bars = hourly_bars()
    variance = session_variance(bars, "XNYS")
    assert list(variance.index) == list(bar_index(["2024-03-04", "2024-03-05", "2024-03-06"]))
    for day in range(3):
        session = bars.iloc[7 * day : 7 * day + 7]
        closes = np.log(session["close"].to_numpy())
        returns = np.diff(np.r_[np.log(session["open"].iloc[0]), closes])  # the first from the session's open
        assert variance.iloc[day] == pytest.approx(np.sum(returns**2), rel=1e-12)


def test_a_session_missing_an_hour_or_with_a_bar_off_the_calendar_has_no_variance():
    bars = hourly_bars()
    missing = bars.drop(bars.index[9])  # the second session's third hour
    assert list(session_variance(missing, "XNYS").index.day) == [4, 6]
    shifted = bars.rename(index={bars.index[15]: bars.index[15] + pd.Timedelta(minutes=7)})  # not an hour start
    assert list(session_variance(shifted, "XNYS").index.day) == [4, 5]
    broken = bars.copy()
    broken.iloc[2, broken.columns.get_loc("close")] = 0.0  # log(0): the session is not summed
    assert list(session_variance(broken, "XNYS").index.day) == [5, 6]
    assert session_variance(bars.iloc[:0], "XNYS").empty


def test_daily_rows_get_their_sessions_variance_from_hourly_bars_closed_by_their_own_close(
    synthetic_daily, synthetic_hourly, feature_settings
):
    daily, instruments = synthetic_daily
    hourly, _ = synthetic_hourly
    options = feature_settings.features
    full = build_timeframe(daily, instruments, "1d", options, hourly_by_symbol=hourly)
    aapl = full.symbols["AAPL"].table[INTRADAY_VARIANCE]
    assert aapl.notna().sum() >= 100  # the hourly window's sessions (about six months)
    expected = session_variance(hourly["AAPL"], instruments["AAPL"].exchange).reindex(aapl.index)
    pd.testing.assert_series_equal(aapl, expected, check_names=False)
    compared = 0
    for cut in cut_points(daily, instruments, "1d")[2:]:  # the later cuts fall inside the hourly window
        partial = build_timeframe(
            truncated(daily, instruments, "1d", cut),
            instruments,
            "1d",
            options,
            hourly_by_symbol=truncated(hourly, instruments, "1h", cut),
        )
        for symbol, result in partial.symbols.items():
            before = full.symbols[symbol].table
            before = before.loc[closed_by(before, instruments[symbol], "1d", cut), INTRADAY_VARIANCE]
            pd.testing.assert_series_equal(result.table[INTRADAY_VARIANCE], before)
            compared += int(before.notna().sum())
    assert compared > 500
