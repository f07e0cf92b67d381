"""Splits and adjustments on realistic daily paths: each detected and repaired from the adjusted
close, quarantined with its date and factor when only volume confirms it, and a crash never repaired."""

import numpy as np
import pandas as pd
import pytest

from trading_ml.drivers import load_settings
from trading_ml.data.calendars import expected_timestamps
from trading_ml.data.corporate_actions import find_actions
from trading_ml.data.validation import validate_bars
from trading_ml.features.indicators import symbol_features
from trading_ml.sources import CsvSource

SETTINGS = load_settings(env={})
DAY = 300  # the event's bar


def path(seed: int = 0, bars: int = 400) -> pd.DataFrame:
    """A daily equity path (1.5% daily moves) on the NYSE calendar, with adj_close = close."""
    stamps = expected_timestamps("XNYS", "1d", pd.Timestamp("2023-01-01", tz="UTC"), pd.Timestamp("2025-12-31", tz="UTC"))[:bars]
    rng = np.random.default_rng(seed)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.015, bars)))
    opened = close * np.exp(rng.normal(0, 0.004, bars))
    frame = pd.DataFrame({
        "open": opened, "high": np.maximum(opened, close) * 1.005, "low": np.minimum(opened, close) * 0.995, "close": close,
        "volume": 1e6 * np.exp(rng.normal(0, 0.2, bars)),
    }, index=stamps)
    frame["adj_close"] = frame["close"]
    return frame[["open", "high", "low", "close", "adj_close", "volume"]]


def with_split(frame: pd.DataFrame, factor: float, day_move: float, adjusted: bool) -> pd.DataFrame:
    """F new shares per old from DAY on: prices / F (plus the day's own move), volume x F; the vendor's
    adj_close, when adjusted, puts the bars before it on the new scale."""
    out = frame.copy()
    after = out.index[DAY:]
    scale = (1 + day_move) * frame["close"].iloc[DAY - 1] / frame["close"].iloc[DAY] / factor
    for column in ("open", "high", "low", "close"):
        out.loc[after, column] = frame.loc[after, column] * scale
    out.loc[after, "volume"] = frame.loc[after, "volume"] * factor
    out["adj_close"] = out["close"]
    if adjusted:
        out.loc[out.index[:DAY], "adj_close"] = out["close"].iloc[:DAY] / factor
    return out


def validate(frame: pd.DataFrame):
    instrument = SETTINGS.instrument("AAPL")
    return validate_bars(frame, instrument, "1d", frame.index, SETTINGS.validation)


def check(report, name):
    return next(c for c in report.checks if c.check == name)


@pytest.mark.parametrize("factor, day_move, name", [(2.0, 0.008, "split 2:1"), (1.5, -0.004, "split 3:2"), (0.1, 0.006, "reverse split 1:10")])
def test_an_adjusted_split_is_detected_and_repaired_and_features_run_through_it(factor, day_move, name):
    raw_move = (1 + day_move) / factor - 1
    frame = with_split(path(), factor, day_move, adjusted=True)
    assert frame["close"].pct_change().iloc[DAY] == pytest.approx(raw_move)
    [action] = find_actions(frame)
    assert (action.timestamp, action.name, action.confirmed_by) == (frame.index[DAY], name, "adjustment")
    report, clean = validate(frame)
    assert not report.quarantined, report.reasons
    assert f"repaired {name} at {frame.index[DAY]}" in check(report, "corporate_actions").detail
    assert clean["close"].pct_change().iloc[DAY] == pytest.approx(day_move, abs=1e-9)  # continuous on the adjusted scale
    assert clean["volume"].iloc[DAY - 5:DAY].median() == pytest.approx(frame["volume"].iloc[DAY - 5:DAY].median() * factor)
    features = symbol_features(clean, True, 0.001)
    assert abs(features["close_to_sma_50"].iloc[DAY]) < 0.15 and abs(features["return_1"].iloc[DAY]) < 0.05


def test_a_split_only_volume_confirms_is_quarantined_with_its_date_and_factor():
    frame = with_split(path(1), 2.0, 0.008, adjusted=False)  # -49.6% on the day, adj_close = close
    report, _ = validate(frame)
    detail = check(report, "corporate_actions").detail
    assert report.quarantined and f"unadjusted split 2:1 at {frame.index[DAY]}" in detail and "close -49.6%" in detail
    assert "supply split-adjusted adj_close" in detail


def test_a_crash_is_not_repaired_and_price_sanity_says_it_is_not_a_split():
    frame = path(2)
    after, scale = frame.index[DAY:], 0.48 * frame["close"].iloc[DAY - 1] / frame["close"].iloc[DAY]
    for column in ("open", "high", "low", "close", "adj_close"):
        frame.loc[after, column] = frame.loc[after, column] * scale
    frame.loc[frame.index[DAY], "volume"] *= 6  # a crash trades heavily that day, and then as before
    assert find_actions(frame) == []
    report, clean = validate(frame)
    assert clean["close"].pct_change().iloc[DAY] == pytest.approx(-0.52)  # never "repaired"
    sanity = check(report, "price_sanity")
    assert report.quarantined and not sanity.passed and "-52.0%" in sanity.detail and "that are not splits" in sanity.detail


def test_a_dividend_adjusts_prices_without_being_called_a_split():
    frame = path(3)
    frame.loc[frame.index[:DAY], "adj_close"] = frame["close"].iloc[:DAY] * 0.99  # a 1% dividend at DAY
    assert find_actions(frame) == []
    report, clean = validate(frame)
    assert not report.quarantined and "1 other adjustment(s) (dividends)" in check(report, "corporate_actions").detail
    assert clean["close"].iloc[DAY - 1] == pytest.approx(frame["close"].iloc[DAY - 1] * 0.99)
    assert (clean["close"] == clean["adj_close"]).all()


def test_checks_see_the_window_only(tmp_path):
    """A 2000 row whose adjustment factor is 31x (true after later splits) and a broken row outside
    the window do not block a run whose window starts later."""
    frame = path(4)
    frame.loc[frame.index[0], "adj_close"] = frame["close"].iloc[0] / 31
    frame.loc[frame.index[1], "close"] = -1.0
    frame.rename_axis("timestamp").to_csv(tmp_path / "AAPL_1d.csv")
    start, end = frame.index[10], frame.index[-1]
    bars = CsvSource(tmp_path).fetch(SETTINGS.instrument("AAPL"), "1d", start, end)
    assert bars.index.min() == start and len(bars) == len(frame) - 11


def test_an_unadjusted_split_or_crash_in_the_warmup_shortens_it_and_quarantines_nothing():
    instrument = SETTINGS.instrument("AAPL")
    split = with_split(path(5), 2.0, 0.008, adjusted=False)
    crash = path(6)
    crash.loc[crash.index[DAY:], ["open", "high", "low", "close", "adj_close"]] *= 0.4
    for frame, what in ((split, "unadjusted split"), (crash, "move above 50%")):
        window_start = frame.index[DAY + 20]
        report, clean = validate_bars(frame, instrument, "1d", frame.index, SETTINGS.validation, window_start=window_start)
        assert not report.quarantined, report.reasons
        assert clean.index[0] == frame.index[DAY] and len(clean) == len(frame) - DAY  # the warm-up starts at the event
        assert f"the last at {frame.index[DAY]}: the warm-up starts there ({DAY} earlier bar(s) dropped)" in check(report, "price_sanity").detail
        report, _ = validate_bars(frame, instrument, "1d", frame.index, SETTINGS.validation, window_start=frame.index[DAY - 20])
        assert report.quarantined, what  # inside the window it still quarantines


def test_completeness_counts_the_window_only():
    frame = path(7)
    instrument = SETTINGS.instrument("AAPL")
    holed = frame.drop(frame.index[10:60])  # 50 warm-up bars missing: 12.5% of all, none of the window
    report, _ = validate_bars(holed, instrument, "1d", frame.index, SETTINGS.validation, window_start=frame.index[100])
    assert not report.quarantined and check(report, "completeness").detail.startswith("0 of 300 expected bars missing")
    report, _ = validate_bars(holed, instrument, "1d", frame.index, SETTINGS.validation)
    assert report.quarantined


@pytest.mark.parametrize("bars", [0, 1, 2])
def test_a_window_of_one_or_no_bar_has_no_action_and_no_error(bars):
    """A served as-of just after a symbol's first stored bar leaves it a window of one bar (was IndexError)."""
    assert find_actions(path(bars=max(bars, 1)).iloc[:bars]) == []
