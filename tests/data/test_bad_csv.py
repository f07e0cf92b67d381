"""Malformed user files: each gets one clear error naming the file and what to fix."""

import pandas as pd
import pytest

from trading_ml.drivers import load_settings
from trading_ml.errors import DataError
from trading_ml.sources import CsvSource

SETTINGS = load_settings(env={})
START, END = pd.Timestamp("2024-01-01", tz="UTC"), pd.Timestamp("2024-02-01", tz="UTC")
HEADER = "timestamp,open,high,low,close,volume\n"
GOOD = "2024-01-02,10,11,9,10.5,100\n"

CASES = {
    "missing column": (HEADER.replace(",volume", "") + "2024-01-02,10,11,9,10.5\n", "missing column\\(s\\) volume"),
    "string price": (HEADER + GOOD + "2024-01-03,ten,11,9,10.5,100\n", "column 'open' at data row 2 .* 'ten', which is not a number"),
    "negative price": (HEADER + GOOD + "2024-01-03,10,11,-9,10.5,100\n", "column 'low' at data row 2 .* prices must be positive"),
    "NaN price": (HEADER + GOOD + "2024-01-03,10,11,9,,100\n", "column 'close' at data row 2 .* prices must be positive"),
    "overflowing value": (HEADER + GOOD + "2024-01-03,10,1e400,9,10.5,100\n", "column 'high' at data row 2 .* is inf; prices must be positive finite"),
    "enormous value": (HEADER + GOOD + "2024-01-03,10,1e300,9,10.5,100\n", "column 'high' at data row 2 .* is 1e\\+300, more than 10x away"),
    "infinite close": (HEADER + GOOD + "2024-01-03,10,11,9,inf,100\n", "column 'close' at data row 2 .* is inf; prices must be positive"),
    "infinite volume": (HEADER + GOOD + "2024-01-03,10,11,9,10.5,inf\n", "volume at data row 2 .* is missing, negative or infinite"),
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


@pytest.mark.parametrize("case", [*CASES, "not UTF-8", "good with a byte order mark"])
def test_bytes_already_read_parse_as_the_file_does_with_the_same_error(tmp_path, case):
    from trading_ml.data.bar_files import read_bars_csv

    content = {"not UTF-8": HEADER.encode("utf-16"), "good with a byte order mark": (HEADER + GOOD).encode("utf-8-sig")}.get(
        case, CASES.get(case, ("",))[0].encode()
    )
    path = tmp_path / "AAPL_1d.csv"
    path.write_bytes(content)
    outcomes = []
    for given in (None, content):
        try:
            outcomes.append(read_bars_csv(path, "1d", content=given))
        except DataError as error:
            outcomes.append(str(error))
    if isinstance(outcomes[0], str):
        assert outcomes[1] == outcomes[0] and str(path) in outcomes[0]
    else:
        pd.testing.assert_frame_equal(outcomes[1], outcomes[0])


def test_not_utf8_is_named(tmp_path):
    (tmp_path / "AAPL_1d.csv").write_bytes(HEADER.encode("utf-16"))
    with pytest.raises(DataError, match="not UTF-8 text"):
        CsvSource(tmp_path).fetch(SETTINGS.instrument("AAPL"), "1d", START, END)


def test_mixed_time_zones_are_refused(tmp_path):
    (tmp_path / "AAPL_1h.csv").write_text(HEADER + "2024-01-02T14:30:00+00:00,10,11,9,10.5,100\n2024-01-02 15:30,10,11,9,10.5,100\n")
    with pytest.raises(DataError, match="timestamps mix zoned and unzoned values: data row 2 has no UTC offset"):
        CsvSource(tmp_path).fetch(SETTINGS.instrument("AAPL"), "1h", START, END)
    (tmp_path / "AAPL_1h.csv").write_text(HEADER + "2024-01-02T09:30:00-05:00,10,11,9,10.5,100\n2024-01-02T16:30:00+01:00,10,11,9,10.5,100\n")
    with pytest.raises(DataError, match="data row 2 has \\+01:00, but America/New_York .* is at -05:00 then"):
        CsvSource(tmp_path).fetch(SETTINGS.instrument("AAPL"), "1h", START, END)


def test_an_hourly_file_in_new_york_time_across_a_dst_change_ingests_and_validates(tmp_path):
    """-05:00 before 2024-03-10, -04:00 after: one zone (the exchange's), converted to UTC."""
    from trading_ml.data.calendars import expected_timestamps
    from trading_ml.data.validation import validate_bars

    start, end = pd.Timestamp("2024-03-04", tz="UTC"), pd.Timestamp("2024-03-16", tz="UTC")
    hours = expected_timestamps("XNYS", "1h", start, end)
    local = [stamp.tz_convert("America/New_York").isoformat() for stamp in hours]
    assert {text[-6:] for text in local} == {"-05:00", "-04:00"}
    rows = "".join(f"{text},10,11,9,10.5,100\n" for text in local)
    (tmp_path / "AAPL_1h.csv").write_text(HEADER + rows)
    bars = CsvSource(tmp_path).fetch(SETTINGS.instrument("AAPL"), "1h", start, end)
    assert (bars.index == hours).all() and str(bars.index.tz) == "UTC"
    report, _ = validate_bars(bars, SETTINGS.instrument("AAPL"), "1h", hours, SETTINGS.validation)
    assert not report.quarantined and report.checks[0].detail.startswith("0 of")


def test_an_absurd_move_prints_a_readable_percentage():
    from trading_ml.data.validation import check_price_sanity

    index = pd.date_range("2024-01-02", periods=3, freq="D", tz="UTC")
    bars = pd.DataFrame({"adj_close": [10.0, 1e300, 1e300]}, index=index)
    detail = check_price_sanity(bars, 0.5).detail
    assert "first +1e+301%" in detail and len(detail) < 400


def test_a_malformed_file_leaves_nothing_half_written_in_the_run(tmp_path):
    """Through the pipeline: the pair fails at ingest with the reason, no raw file or temp file is
    written for it, and validation quarantines it while the good pair passes."""
    from tests.conftest import make_settings
    from trading_ml.data.bar_files import write_bars_csv
    from trading_ml.pipeline.ingest import ingest
    from trading_ml.pipeline.resources import StageResources
    from trading_ml.pipeline.validate import validate
    from trading_ml.run import RunContext
    from trading_ml.sources import SyntheticSource

    folder = tmp_path / "csv"
    folder.mkdir()
    (folder / "AAPL_1d.csv").write_text(HEADER + GOOD + "2024-01-03,ten,11,9,10.5,100\n")
    ctx = RunContext.create(make_settings(tmp_path / "data", min_pass_share=0.5), "2024-01-10", ["AAPL", "XOM"], ["1d"], f"csv:{folder}")
    write_bars_csv(folder / "XOM_1d.csv", SyntheticSource().fetch(SETTINGS.instrument("XOM"), "1d", *ctx.window("1d")))
    resources = StageResources.open(ctx)
    manifests = {m["symbol"]: m for m in ingest(ctx, resources=resources)}
    assert manifests["AAPL"]["status"] == "failed" and "'ten', which is not a number" in manifests["AAPL"]["error"]
    assert not (ctx.run_root / "raw" / "AAPL_1d.csv").exists() and list(ctx.run_root.rglob("*.tmp")) == []
    assert resources.store.count("market_data", {"symbol": "AAPL"}) == 0
    validated = validate(ctx, resources)
    assert [q["symbol"] for q in validated["quarantined"]] == ["AAPL"] and [p["symbol"] for p in validated["passed"]] == ["XOM"]


def test_intraday_without_timezone_is_refused(tmp_path):
    (tmp_path / "AAPL_1h.csv").write_text(HEADER + "2024-01-02 14:30,10,11,9,10.5,100\n")
    with pytest.raises(DataError, match="intraday timestamps have no timezone"):
        CsvSource(tmp_path).fetch(SETTINGS.instrument("AAPL"), "1h", START, END)


def test_missing_file_names_the_expected_path(tmp_path):
    with pytest.raises(DataError, match="expected .*AAPL_1d.csv"):
        CsvSource(tmp_path).fetch(SETTINGS.instrument("AAPL"), "1d", START, END)


def test_numbers_the_csv_reader_parses_are_the_numbers_of_the_text_bit_for_bit(tmp_path):
    """Prices parsed by the CSV reader equal pd.to_numeric of the same text, to the last bit."""
    import numpy as np

    from trading_ml.data.bar_files import read_bars_csv

    rng = np.random.default_rng(7)
    prices = np.exp(rng.normal(4, 2, size=(300, 1)) + rng.normal(0, 0.01, size=(300, 4)))
    texts = [[repr(float(p)) if i % 3 else f"{p:.17e}" for p in row] for i, row in enumerate(prices)]  # shortest, 17 digits
    days = pd.bdate_range("2022-01-03", periods=300)
    lines = [f"{d.date()}, {o},{h},{low},{c},{i * 1000003}" for i, (d, (o, h, low, c)) in enumerate(zip(days, texts))]
    path = tmp_path / "X_1d.csv"
    path.write_text(HEADER + "\n".join(lines) + "\n")
    bars = read_bars_csv(path, "1d")
    for column, values in zip(("open", "high", "low", "close"), zip(*texts)):
        expected = pd.to_numeric(pd.Series(values)).to_numpy()
        assert np.array_equal(bars[column].to_numpy(), expected), column
    assert (bars["volume"].to_numpy() == np.arange(300) * 1000003.0).all()
