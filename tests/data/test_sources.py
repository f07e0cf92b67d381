import logging

import numpy as np
import pandas as pd
import pytest
from yfinance.exceptions import YFRateLimitError

from trading_ml.drivers import load_settings
from trading_ml.data.bar_files import write_bars_csv
from trading_ml.data.bars import BAR_COLUMNS
from trading_ml.errors import ConfigError, DataError, SourceUnavailable
from trading_ml.sources import CsvSource, SampleSource, YahooSource, make_source

SETTINGS = load_settings(env={})
START, END = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-02-01", tz="UTC")


def assert_normalized(bars: pd.DataFrame):
    assert list(bars.columns) == BAR_COLUMNS
    assert str(bars.index.tz) == "UTC" and bars.index.name == "timestamp"
    assert bars.index.is_monotonic_increasing
    assert all(dtype == "float64" for dtype in bars.dtypes)


def yfinance_frame(multi_level: bool, symbol="AAPL", rows=5, interval="1d") -> pd.DataFrame:
    """Shaped as yfinance answers: exchange-local index, capitalised columns, maybe (Price, Ticker)."""
    if interval == "1d":
        index = pd.date_range("2024-01-02", periods=rows, freq="B", tz="America/New_York", name="Date")
    else:
        index = pd.date_range("2024-01-02 09:30", periods=rows, freq="h", tz="America/New_York", name="Datetime")
    frame = pd.DataFrame(
        {"Open": 100.0, "High": 101.0, "Low": 99.0, "Close": 100.5, "Adj Close": 100.2, "Volume": 1_000_000},
        index=index,
    )
    if multi_level:
        frame.columns = pd.MultiIndex.from_product([frame.columns, [symbol]], names=["Price", "Ticker"])
    return frame


class ScriptedYahoo:
    """Stands at yfinance's boundary: answers each call from a script of frames or exceptions."""

    def __init__(self, *answers):
        self.answers, self.calls = list(answers), []

    def __call__(self, symbol, start, end, interval):
        self.calls.append((symbol, interval))
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def yahoo(*answers, retries=3):
    sleeps = []
    source = YahooSource(fetch=ScriptedYahoo(*answers), retries=retries, backoff_seconds=1.0, sleep=sleeps.append)
    return source, sleeps


@pytest.mark.parametrize("multi_level", [True, False])
def test_yahoo_flattens_columns_and_stamps_daily_bars_at_utc_midnight(multi_level):
    source, _ = yahoo(yfinance_frame(multi_level))
    bars = source.fetch(SETTINGS.instrument("AAPL"), "1d", START, END)
    assert_normalized(bars)
    assert bars.index[0] == pd.Timestamp("2024-01-02", tz="UTC")
    assert bars["adj_close"].iloc[0] == 100.2 and len(bars) == 5


def test_yahoo_hourly_bars_are_converted_to_utc():
    source, _ = yahoo(yfinance_frame(True, interval="1h"))
    bars = source.fetch(SETTINGS.instrument("AAPL"), "1h", START, END)
    assert bars.index[0] == pd.Timestamp("2024-01-02 14:30", tz="UTC")


def test_yahoo_retries_rate_limits_with_exponential_backoff_then_succeeds():
    source, sleeps = yahoo(YFRateLimitError(), YFRateLimitError(), yfinance_frame(True))
    bars = source.fetch(SETTINGS.instrument("AAPL"), "1d", START, END)
    assert len(bars) == 5 and sleeps == [1.0, 2.0]


def test_yahoo_gives_up_after_its_retries_with_a_retryable_error():
    source, sleeps = yahoo(*[YFRateLimitError()] * 3, retries=2)
    with pytest.raises(SourceUnavailable, match="AAPL 1d: still rate-limited by Yahoo after 3 tries"):
        source.fetch(SETTINGS.instrument("AAPL"), "1d", START, END)
    assert sleeps == [1.0, 2.0]


def test_yahoo_empty_answer_is_a_clear_per_symbol_error():
    source, _ = yahoo(pd.DataFrame())
    with pytest.raises(DataError, match="yahoo NOPE 1d: Yahoo returned no bars .* check the ticker"):
        source.fetch(SETTINGS.instrument("NOPE"), "1d", START, END)


def test_yahoo_partial_answer_is_a_clear_per_symbol_error():
    frame = yfinance_frame(True)
    frame.iloc[2, frame.columns.get_loc(("Close", "AAPL"))] = float("nan")
    source, _ = yahoo(frame)
    with pytest.raises(DataError, match="yahoo AAPL 1d: Yahoo returned 1 partial bar"):
        source.fetch(SETTINGS.instrument("AAPL"), "1d", START, END)
    missing_volume = yfinance_frame(False).drop(columns=["Volume"])
    source, _ = yahoo(missing_volume)
    with pytest.raises(DataError, match="missing column\\(s\\) volume"):
        source.fetch(SETTINGS.instrument("AAPL"), "1d", START, END)


def split_answer(reported: float, close_ratio: float, adjusted_too: bool = True) -> pd.DataFrame:
    """Ten yfinance daily rows whose prices move by ``close_ratio`` overnight into the sixth, and
    ``reported`` in its Stock Splits column on that day (0 elsewhere, as Yahoo answers)."""
    frame = yfinance_frame(False, rows=10)
    frame["Close"] = 100.0 * 1.001 ** np.arange(10)
    frame["Open"], frame["High"], frame["Low"] = frame["Close"] * 0.999, frame["Close"] * 1.004, frame["Close"] * 0.995
    frame["Adj Close"] = frame["Close"] * 0.99
    scaled = ["Open", "High", "Low", "Close"] + (["Adj Close"] if adjusted_too else [])
    frame.loc[frame.index[5:], scaled] *= close_ratio
    frame["Dividends"], frame["Stock Splits"] = 0.0, 0.0
    frame.loc[frame.index[5], "Stock Splits"] = reported
    return frame


@pytest.mark.parametrize("factor", [2.0, 7.0, 0.1])  # 7:1 (AAPL 2014) is outside the detector's usual set
def test_yahoo_applies_a_split_it_reports_but_its_prices_miss(factor, caplog):
    source, _ = yahoo(split_answer(factor, 1 / factor))
    bars = source.fetch(SETTINGS.instrument("AAPL"), "1d", START, END)
    expected = 100.0 * 1.001 ** np.arange(10) / factor
    np.testing.assert_allclose(bars["close"], expected, rtol=1e-12)  # one scale: the split's
    np.testing.assert_allclose(bars["adj_close"], expected * 0.99, rtol=1e-12)
    assert (bars["volume"].iloc[:5] == 1_000_000 * factor).all() and (bars["volume"].iloc[5:] == 1_000_000).all()
    assert f"yahoo AAPL 1d: split {factor:g} reported at 2024-01-09 00:00:00+00:00 but not in the prices" in caplog.text


@pytest.mark.parametrize(
    "reported, close_ratio",
    [
        (4.0, 1.0),  # reported and already adjusted, as Yahoo's prices normally are
        (2.0, 0.7),  # reported 2:1 but the close fell 30%: not a move to 1/2
        (0.0, 0.5),  # the close halved with no split reported: left to validation's split detector
    ],
)
def test_yahoo_leaves_prices_alone_where_its_split_actions_do_not_explain_a_move(reported, close_ratio, caplog):
    caplog.set_level(logging.INFO, logger="trading_ml")
    source, _ = yahoo(split_answer(reported, close_ratio))
    bars = source.fetch(SETTINGS.instrument("AAPL"), "1d", START, END)
    plain, _ = yahoo(split_answer(0.0, close_ratio).drop(columns=["Stock Splits"]))
    pd.testing.assert_frame_equal(bars, plain.fetch(SETTINGS.instrument("AAPL"), "1d", START, END))
    assert ("kept as they are" in caplog.text) == (reported > 0)
    assert all(r.levelname == "INFO" for r in caplog.records if "kept as they are" in r.getMessage())  # Yahoo's norm


def test_yahoo_is_asked_for_its_split_actions(monkeypatch):
    """At yfinance's boundary: the history call asks for actions, and keeps auto_adjust off."""
    import yfinance

    from trading_ml.sources.yahoo import yfinance_history

    asked = {}

    class Ticker:
        def __init__(self, symbol):
            asked["symbol"] = symbol

        def history(self, **options):
            asked.update(options)
            return split_answer(2.0, 0.5)

    monkeypatch.setattr(yfinance, "Ticker", Ticker)
    answer = yfinance_history("AAPL", START, END, "1d")
    assert asked["actions"] is True and asked["auto_adjust"] is False and asked["symbol"] == "AAPL"
    assert "Stock Splits" in answer.columns


def test_yahoo_a_message_that_only_mentions_429_is_not_a_rate_limit():
    """Rate limits are yfinance's YFRateLimitError, not any error whose text says 429."""
    source, sleeps = yahoo(ValueError("HTTP Error 429 in a ticker named 429"))
    with pytest.raises(DataError, match="Yahoo request failed"):
        source.fetch(SETTINGS.instrument("AAPL"), "1d", START, END)
    assert sleeps == []


def test_yahoo_time_out_is_unavailable_at_once_not_retried():
    from curl_cffi.requests.exceptions import Timeout

    source, sleeps = yahoo(Timeout("Failed to perform, curl: (28) Operation timed out after 30000 milliseconds", 28))
    with pytest.raises(SourceUnavailable, match="AAPL 1d: Yahoo did not answer .*timed out"):
        source.fetch(SETTINGS.instrument("AAPL"), "1d", START, END)
    assert sleeps == []


def test_yahoo_other_failures_are_not_retried():
    source, sleeps = yahoo(ValueError("Invalid ticker"))
    with pytest.raises(DataError, match="Yahoo request failed: Invalid ticker"):
        source.fetch(SETTINGS.instrument("AAPL"), "1d", START, END)
    assert sleeps == []


def test_sample_source_serves_real_sp500_nasdaq_and_vix():
    source = SampleSource()
    start, end = pd.Timestamp("2014-01-01", tz="UTC"), pd.Timestamp("2019-01-01", tz="UTC")
    for symbol in ("^GSPC", "^IXIC", "^VIX"):
        bars = source.fetch(SETTINGS.instrument(symbol), "1d", start, end)
        assert_normalized(bars)
        assert len(bars) > 1200
    spx = source.fetch(SETTINGS.instrument("^GSPC"), "1d", start, end)
    assert spx.loc[pd.Timestamp("2018-12-31", tz="UTC"), "close"] == pytest.approx(2506.85, abs=0.01)


def test_sample_source_names_what_it_has_and_what_it_covers():
    source = SampleSource()
    with pytest.raises(DataError, match="no AAPL; it ships \\^GSPC, \\^IXIC, \\^VIX"):
        source.fetch(SETTINGS.instrument("AAPL"), "1d", START, END)
    with pytest.raises(DataError, match="covers 1999-01-04 to 2018-12-31"):
        source.fetch(SETTINGS.instrument("^GSPC"), "1d", START, END)


def test_synthetic_source_returns_the_normalized_frame():
    source = make_source("synthetic", SETTINGS)
    for timeframe in ("1d", "1h"):
        bars = source.fetch(SETTINGS.instrument("^NSEBANK"), timeframe, START, END)
        assert_normalized(bars)
        assert bars.index[0] >= START and bars.index[-1] < END


def test_csv_source_reads_its_own_raw_files_back_exactly(tmp_path):
    bars = make_source("synthetic", SETTINGS).fetch(SETTINGS.instrument("AAPL"), "1h", START, END)
    write_bars_csv(tmp_path / "AAPL_1h.csv", bars)
    back = CsvSource(tmp_path).fetch(SETTINGS.instrument("AAPL"), "1h", START, END)
    pd.testing.assert_frame_equal(back, bars, check_freq=False)


def test_csv_source_accepts_dates_and_common_headers(tmp_path):
    (tmp_path / "MSFT_1d.csv").write_text(
        "Date,Open,High,Low,Close,Adj Close,Volume\n2024-01-02,10,11,9,10.5,10.4,100\n2024-01-03,10.5,11,10,10.8,10.7,120\n"
    )
    bars = CsvSource(tmp_path).fetch(SETTINGS.instrument("MSFT"), "1d", START, END)
    assert_normalized(bars)
    assert bars.index[1] == pd.Timestamp("2024-01-03", tz="UTC") and bars["adj_close"].iloc[1] == 10.7


def test_make_source_refuses_unknown_specs(tmp_path):
    with pytest.raises(ConfigError, match="unknown source 'quandl'"):
        make_source("quandl", SETTINGS)
    with pytest.raises(ConfigError, match="csv:DIR"):
        make_source("csv", SETTINGS)
    with pytest.raises(ConfigError, match="does not exist"):
        make_source(f"csv:{tmp_path / 'nowhere'}", SETTINGS)
