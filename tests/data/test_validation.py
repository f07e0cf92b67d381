import re

import numpy as np
import pandas as pd
import pytest

from trading_ml.drivers import load_settings
from trading_ml.data.calendars import expected_timestamps
from trading_ml.data.synthetic import GAP_SHARE, SyntheticMarket
from trading_ml.data.validation import (
    check_completeness,
    check_ohlc_logic,
    check_price_sanity,
    check_temporal_integrity,
    check_volume_sanity,
    validate_bars,
)

SETTINGS = load_settings(env={})
START, END = pd.Timestamp("2024-11-20", tz="UTC"), pd.Timestamp("2026-11-20", tz="UTC")


def run(symbol="AAPL", timeframe="1d", faults=()):
    market = SyntheticMarket(seed=11, faults={symbol: list(faults)})
    instrument = SETTINGS.instrument(symbol)
    start = START if timeframe == "1d" else pd.Timestamp("2026-05-20", tz="UTC")
    bars = market.bars(instrument, timeframe, start, END)
    expected = expected_timestamps(instrument.exchange, timeframe, start, END)
    return validate_bars(bars, instrument, timeframe, expected, SETTINGS.validation)


def by_check(report):
    return {c.check: c for c in report.checks}


@pytest.mark.parametrize("symbol", ["AAPL", "^NSEI", "^VIX"])
@pytest.mark.parametrize("timeframe", ["1d", "1h"])
def test_clean_data_passes_every_check_with_holidays_not_counted_missing(symbol, timeframe):
    report, clean = run(symbol, timeframe)
    assert all(c.passed for c in report.checks), [c.detail for c in report.checks if not c.passed]
    assert not report.quarantined and report.rows_out == report.rows_in == report.expected_rows
    assert len(clean) == report.rows_out


def test_holidays_of_each_exchange_are_not_expected():
    us = expected_timestamps("XNYS", "1d", pd.Timestamp("2025-12-22", tz="UTC"), pd.Timestamp("2026-01-03", tz="UTC"))
    india = expected_timestamps("XBOM", "1d", pd.Timestamp("2025-12-22", tz="UTC"), pd.Timestamp("2026-01-03", tz="UTC"))
    assert pd.Timestamp("2025-12-25", tz="UTC") not in us and pd.Timestamp("2026-01-01", tz="UTC") not in us
    assert pd.Timestamp("2025-12-25", tz="UTC") not in india
    assert pd.Timestamp("2026-01-01", tz="UTC") in india  # NSE/BSE trade on New Year's Day
    hours = expected_timestamps("XNYS", "1h", pd.Timestamp("2025-11-28", tz="UTC"), pd.Timestamp("2025-11-29", tz="UTC"))
    assert len(hours) == 4  # the day after Thanksgiving closes at 13:00 New York time


def test_gap_fails_completeness_and_temporal_integrity_and_quarantines():
    report, _ = run(faults=["gap"])
    checks = by_check(report)
    assert not checks["completeness"].passed and not checks["temporal_integrity"].passed
    assert checks["completeness"].rows_affected == pytest.approx(report.expected_rows * GAP_SHARE, abs=1)
    assert report.quarantined and "completeness" in report.reasons[0]


def test_small_gap_is_reported_but_kept():
    market = SyntheticMarket(seed=11)
    instrument = SETTINGS.instrument("AAPL")
    bars = market.bars(instrument, "1d", START, END)
    bars = bars.drop(bars.index[100:103])
    expected = expected_timestamps("XNYS", "1d", START, END)
    result, missing_rows = check_temporal_integrity(bars, expected)
    assert not result.passed and "3 expected bar(s) missing, longest run 3" in result.detail
    assert check_completeness(bars, expected, 0.05).passed


def test_duplicates_are_caught_and_the_last_print_kept():
    report, clean = run(faults=["duplicates"])
    checks = by_check(report)
    assert not checks["temporal_integrity"].passed and "3 duplicate timestamp(s)" in checks["temporal_integrity"].detail
    assert clean.index.is_unique and not report.quarantined
    assert report.rows_in - report.rows_out == 3


def test_broken_ohlc_bars_are_caught_and_dropped():
    report, clean = run(faults=["ohlc"])
    check = by_check(report)["ohlc_logic"]
    assert not check.passed and check.rows_affected == 2
    assert not check_ohlc_logic(clean)[0].rows_affected
    assert report.rows_out == report.rows_in - 2 and not report.quarantined


def test_an_unadjusted_split_is_caught_and_quarantines_with_its_date_and_factor():
    report, _ = run(faults=["split"])
    check = by_check(report)["corporate_actions"]
    assert not check.passed and check.rows_affected == 1 and "unadjusted split 3:1 at " in check.detail
    measured = float(re.search(r"volume x([0-9.]+) after it \(x3 expected\)", check.detail).group(1))
    assert measured != 3 and abs(np.log(measured / 3)) < np.log(1.35)  # the ratio measured, not the factor assumed
    assert report.quarantined and report.reasons[0].startswith("corporate_actions: unadjusted split 3:1")


def test_zero_volume_bars_are_caught_and_dropped():
    report, clean = run(faults=["zero_volume"])
    check = by_check(report)["volume_sanity"]
    assert not check.passed and check.rows_affected == 3
    assert (clean["volume"] > 0).all()


def test_volume_check_does_not_apply_to_a_series_without_volume():
    vix = SETTINGS.instrument("^VIX")
    bars = pd.DataFrame({"volume": [0.0, 0.0]}, index=pd.date_range("2024-01-02", periods=2, tz="UTC"))
    result, dropped = check_volume_sanity(bars, vix)
    assert result.passed and "not applicable" in result.detail and not dropped.any()


def test_price_sanity_threshold_is_a_setting():
    bars = pd.DataFrame({"adj_close": [100.0, 140.0, 100.0]}, index=pd.date_range("2024-01-02", periods=3, tz="UTC"))
    assert check_price_sanity(bars, 0.5).passed
    assert not check_price_sanity(bars, 0.3).passed
