"""Calendars for every asset class: the FX week with its Sunday open and Friday close in New York
time (daylight saving included), crypto around the clock, bars per year counted from the calendar,
and a declared default for a symbol the config does not list."""

import dataclasses

import numpy as np
import pandas as pd
import pytest

from trading_ml.config import Instrument
from trading_ml.drivers import load_settings
from trading_ml.data.calendars import CRYPTO, FX, bar_close_times, bars_per_year, expected_timestamps
from trading_ml.data.synthetic import SyntheticMarket
from trading_ml.data.validation import validate_bars

SETTINGS = load_settings(env={})
EURUSD = Instrument(symbol="EURUSD=X", kind="fx", exchange=FX, has_volume=False)
BITCOIN = Instrument(symbol="BTC-USD", kind="crypto", exchange=CRYPTO)


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


@pytest.mark.parametrize(
    "friday, sunday, last_bar, first_bar",
    [
        ("2026-01-09", "2026-01-11", "2026-01-09 21:00", "2026-01-11 22:00"),  # winter: New York is UTC-5
        ("2026-03-06", "2026-03-08", "2026-03-06 21:00", "2026-03-08 21:00"),  # DST starts that Sunday: UTC-4
        ("2026-07-10", "2026-07-12", "2026-07-10 20:00", "2026-07-12 21:00"),  # summer
    ],
)
def test_the_fx_week_closes_friday_and_opens_sunday_at_five_in_new_york(friday, sunday, last_bar, first_bar):
    hours = expected_timestamps(FX, "1h", utc(friday), utc(sunday) + pd.Timedelta(days=1))
    weekend = hours[(hours > utc(last_bar)) & (hours < utc(first_bar))]
    assert utc(last_bar) in hours and utc(first_bar) in hours and len(weekend) == 0
    assert utc(last_bar) + pd.Timedelta(hours=1) not in hours and utc(first_bar) - pd.Timedelta(hours=1) not in hours


def test_an_fx_week_has_120_hours_and_five_daily_bars_and_crypto_never_stops():
    start, end = utc("2026-03-01 22:00"), utc("2026-03-15 21:00")  # Sunday open to Sunday open, across the DST change
    assert len(expected_timestamps(FX, "1h", start, end)) == 240
    assert list(expected_timestamps(FX, "1d", start, end).day_of_week) == [0, 1, 2, 3, 4] * 2
    start, end = utc("2026-03-02"), utc("2026-03-16")
    assert (
        len(expected_timestamps(CRYPTO, "1h", start, end)) == 14 * 24
        and len(expected_timestamps(CRYPTO, "1d", start, end)) == 14
    )


def series(instrument: Instrument, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    """Bars at the hours a vendor prints them (written out from the rules, not from the calendar code)."""
    hours = pd.date_range(start, end, freq="h" if timeframe == "1h" else "D", inclusive="left", name="timestamp")
    if instrument.exchange == FX:
        local = hours.tz_convert("America/New_York")
        closed = (
            (local.day_of_week == 5)
            | ((local.day_of_week == 4) & (local.hour >= 17))
            | ((local.day_of_week == 6) & (local.hour < 17))
        )
        hours = hours[~closed] if timeframe == "1h" else hours[hours.day_of_week < 5]
    rng = np.random.default_rng(0)
    close = 1.1 * np.exp(np.cumsum(rng.normal(0, 0.001, len(hours))))
    return pd.DataFrame(
        {
            "open": close,
            "high": close * 1.001,
            "low": close * 0.999,
            "close": close,
            "adj_close": close,
            "volume": 0.0 if not instrument.has_volume else 10.0,
        },
        index=hours,
    )


@pytest.mark.parametrize("instrument", [EURUSD, BITCOIN], ids=["fx", "crypto"])
@pytest.mark.parametrize("timeframe", ["1h", "1d"])
def test_fx_and_crypto_series_across_a_weekend_and_a_dst_change_validate_complete(instrument, timeframe):
    start, end = utc("2026-02-23"), utc("2026-03-23")
    bars = series(instrument, timeframe, start, end)
    report, clean = validate_bars(
        bars,
        instrument,
        timeframe,
        expected_timestamps(instrument.exchange, timeframe, start, end),
        SETTINGS.validation,
    )
    assert not report.quarantined and report.expected_rows == len(bars) == len(clean), report.reasons
    assert "0 of" in next(c for c in report.checks if c.check == "completeness").detail


def test_the_synthetic_market_prints_fx_hours_on_the_fx_calendar():
    start, end = utc("2026-02-23"), utc("2026-03-23")
    bars = SyntheticMarket(seed=1).bars(EURUSD, "1h", start, end)
    assert bars.index.equals(
        expected_timestamps(FX, "1h", start, end)
    )  # Sunday evening hours of a session the window ends in too
    narrow = SyntheticMarket(seed=1).bars(EURUSD, "1h", utc("2026-03-01 23:00"), utc("2026-03-03"))
    pd.testing.assert_frame_equal(narrow, bars.loc[narrow.index])  # the same bar whatever window cuts its session
    assert (bar_close_times(FX, "1h", bars.index) == bars.index + pd.Timedelta(hours=1)).all()


def test_bars_per_year_are_counted_from_the_calendar():
    end = utc("2026-11-20")
    assert 250 <= bars_per_year("XNYS", "1d", end) <= 253 and 1740 <= bars_per_year("XNYS", "1h", end) <= 1770
    assert 6240 <= bars_per_year(FX, "1h", end) <= 6280 and bars_per_year(CRYPTO, "1d", end) in (365, 366)


def test_a_symbol_not_in_the_config_gets_the_declared_default_and_it_is_stated(tmp_path, caplog):
    from trading_ml.run import RunContext

    settings = dataclasses.replace(SETTINGS, data_dir=tmp_path)
    assert settings.instrument("NOPE").exchange == settings.default_exchange == "XNYS"
    assert settings.calendar_source("NOPE") == "XNYS (not in config.yaml: universe.default_exchange)"
    assert settings.calendar_source("AAPL") == "XNYS (config.yaml)"
    with caplog.at_level("WARNING"):
        RunContext.create(settings, "2026-11-20", ["NOPE", "AAPL"], ["1d"], "synthetic")
    assert (
        "NOPE is not in config.yaml: it follows the calendar XNYS (not in config.yaml: universe.default_exchange)"
        in caplog.text
    )


def test_calendars_reach_back_to_the_window_the_1987_crash_included():
    october = expected_timestamps("XNYS", "1d", utc("1987-10-01"), utc("1987-11-01"))
    assert len(october) == 22 and utc("1987-10-19") in october  # Black Monday, a session like any other
    assert utc("1987-10-17") not in october  # a Saturday
    assert utc("1985-09-27") not in expected_timestamps(
        "XNYS", "1d", utc("1985-09-23"), utc("1985-10-01")
    )  # hurricane Gloria
    closes = bar_close_times("XNYS", "1d", october)
    assert (closes.tz_convert("America/New_York").hour == 16).all()


def test_a_1986_to_1990_daily_file_validates_complete_with_no_bar_off_the_calendar():
    aapl = SETTINGS.instrument("AAPL")
    start, end = utc("1986-01-01"), utc("1990-01-01")
    bars = SyntheticMarket(seed=3, epoch="1980-01-02").bars(aapl, "1d", start, end)
    assert len(bars) > 1000  # the synthetic market prints the old sessions too
    report, clean = validate_bars(bars, aapl, "1d", expected_timestamps("XNYS", "1d", start, end), SETTINGS.validation)
    assert not report.quarantined and report.expected_rows == len(bars) == len(clean), report.reasons
    assert not any("outside the exchange calendar" in reason for reason in report.reasons)


def test_a_run_as_of_1988_validates_its_pairs(settings):
    from tests.stages import context, run_both

    sources = {**settings.sources, "synthetic": {**settings.sources["synthetic"], "epoch": "1975-01-02"}}
    ctx = context(dataclasses.replace(settings, sources=sources), ["^GSPC", "AAPL", "MSFT"], ["1d"], as_of="1988-01-04")
    _, validated, _ = run_both(ctx)
    assert sorted(p["symbol"] for p in validated["passed"]) == ["AAPL", "MSFT", "^GSPC"], validated["quarantined"]
    assert all(p["rows"] > 1000 for p in validated["passed"])  # five years of 1983-1987 sessions
