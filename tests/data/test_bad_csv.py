"""Malformed user files: each gets one clear error naming the file and what to fix."""

import pandas as pd
import pytest

from trading_ml.config import load_settings
from trading_ml.data.sources import CsvSource
from trading_ml.errors import DataError

SETTINGS = load_settings(env={})
START, END = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-02-01", tz="UTC")
HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = "2024-01-02,10,11,9,10.5,100\n"

CASES = {
    "missing column": (HEADER.replace(",volume", "") + "2024-01-02,10,11,9,10.5\n", "missing column\\(s\\) volume"),
    "string price": (HEADER + GOOD + "2024-01-03,ten,11,9,10.5,100\n", "column 'open' at data row 2 .* 'ten', which is not a number"),
    "negative price": (HEADER + GOOD + "2024-01-03,10,11,-9,10.5,100\n", "column 'low' at data row 2 .* prices must be positive"),
    "NaN price": (HEADER + GOOD + "2024-01-03,10,11,9,,100\n", "column 'close' at data row 2 .* prices must be positive"),
    "out of order": (HEADER + "2024-01-03,10,11,9,10.5,100\n" + GOOD, "timestamps out of order at data row 2"),
    "bad timestamp": (HEADER + GOOD + "yesterday,10,11,9,10.5,100\n", "data row 2 has timestamp 'yesterday'"),
    "semicolons": ("timestamp;open;high;low;close;volume\n2024-01-02;10;11;9;10.5;100\n", "not separated by commas"),
    "duplicate header": ("timestamp,open,high,low,close,close,volume\n2024-01-02,10,11,9,10.5,10.5,100\n", "close appear more than once"),
    "empty file": ("", "the file is empty"),
    "header only": (HEADER, "a header but no rows"),
    "ragged row": (HEADER + GOOD + "2024-01-03,10,11,9,10.5,100,7,8\n", "malformed CSV"),
    "no time column": ("day,open,high,low,close,volume\n2024-01-02,10,11,9,10.5,100\n", "no timestamp column"),
}


@pytest.mark.parametrize("case", CASES)
def test_malformed_csv_gets_an_error_naming_the_file_and_the_fix(tmp_path, case):
    text, message = CASES[case]
    path = tmp_path / "AAPL_1d.csv"
    path.write_text(text)
    with pytest.raises(DataError, match=message) as error:
        CsvSource(tmp_path).fetch(SETTINGS.instrument("AAPL"), "1d", START, END)
    assert str(path) in str(error.value)


def test_not_utf8_is_named(tmp_path):
    (tmp_path / "AAPL_1d.csv").write_bytes(HEADER.encode("utf-16"))
    with pytest.raises(DataError, match="not UTF-8 text"):
        CsvSource(tmp_path).fetch(SETTINGS.instrument("AAPL"), "1d", START, END)


def test_intraday_without_timezone_is_refused(tmp_path):
    (tmp_path / "AAPL_1h.csv").write_text(HEADER + "2024-01-02 14:30,10,11,9,10.5,100\n")
    with pytest.raises(DataError, match="intraday timestamps have no timezone"):
        CsvSource(tmp_path).fetch(SETTINGS.instrument("AAPL"), "1h", START, END)


def test_missing_file_names_the_expected_path(tmp_path):
    with pytest.raises(DataError, match="expected .*AAPL_1d.csv"):
        CsvSource(tmp_path).fetch(SETTINGS.instrument("AAPL"), "1d", START, END)
