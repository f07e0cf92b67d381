"""A csv-source run on files shaped like real vendor downloads: unadjusted OHLC with an `Adj Close`
column carrying a 2:1 split, a 3:2 split and a dividend; a split the vendor never adjusted; a crash
that is not a split; an hourly FX file in UTC across weekends and a daylight-saving change."""

from __future__ import annotations

import contextlib
import io
import json

import exchange_calendars as xcals
import numpy as np
import pandas as pd
import pytest

from tests.conftest import write_config
from trading_ml.cli import main
from trading_ml.features.catalogue import model_features, symbol_feature_names
from trading_ml.features.indicators import symbol_features
from trading_ml.run import find_run

AS_OF = "2026-11-20"
SPLIT_2_1, SPLIT_3_2, DIVIDEND = "2024-06-10", "2023-03-15", "2025-02-10"
UNADJUSTED_SPLIT, CRASH = "2025-05-12", "2024-09-16"
DAILY = ["^GSPC", "^VIX", "AAPL", "MSFT", "JPM", "XOM"]


def true_bars(seed: int, stamps: pd.DatetimeIndex, level: float = 100.0, volume: bool = True) -> pd.DataFrame:
    """A continuous path (what the adjusted series should be): 1.3% daily moves, bars around the close."""
    rng = np.random.default_rng(seed)
    close = level * np.exp(np.cumsum(rng.normal(0.0003, 0.013, len(stamps))))
    opened = close * np.exp(rng.normal(0, 0.004, len(stamps)))
    return pd.DataFrame(
        {
            "open": opened,
            "high": np.maximum(opened, close) * (1 + rng.uniform(0.001, 0.01, len(stamps))),
            "low": np.minimum(opened, close) * (1 - rng.uniform(0.001, 0.01, len(stamps))),
            "close": close,
            "volume": 2e6 * np.exp(rng.normal(0, 0.25, len(stamps))) if volume else 0.0,
        },
        index=stamps,
    )


def vendor_file(
    truth: pd.DataFrame, splits: dict[str, float], dividends: dict[str, float], adjusted: bool = True
) -> pd.DataFrame:
    """What a vendor prints: before a split of F, prices F times higher and volume F times lower; the
    `Adj Close` on today's scale with dividends taken out (or equal to the close when not adjusted)."""
    raw = truth.copy()
    dividend_factor = pd.Series(1.0, index=truth.index)
    for day, factor in splits.items():
        before = truth.index < pd.Timestamp(day)
        raw.loc[before, ["open", "high", "low", "close"]] *= factor
        raw.loc[before, "volume"] /= factor
    for day, factor in dividends.items():
        dividend_factor[truth.index < pd.Timestamp(day)] *= factor
    raw["adj_close"] = truth["close"] * dividend_factor if adjusted else raw["close"]
    return raw


def write_vendor_csv(frame: pd.DataFrame, path) -> None:
    out = frame.rename(
        columns={
            "open": "Open",
            "high": "High",
            "low": "Low",
            "close": "Close",
            "adj_close": "Adj Close",
            "volume": "Volume",
        }
    )
    out.index = out.index.strftime("%Y-%m-%d")
    out.rename_axis("Date")[["Open", "High", "Low", "Close", "Adj Close", "Volume"]].to_csv(path)


def fx_hours(start: str, end: str) -> pd.DatetimeIndex:
    """The hours EUR/USD trades, from the rule itself: Sunday 17:00 to Friday 17:00 New York time."""
    hours = pd.date_range(pd.Timestamp(start, tz="UTC"), pd.Timestamp(end, tz="UTC"), freq="h", inclusive="left")
    local = hours.tz_convert("America/New_York")
    closed = (
        (local.day_of_week == 5)
        | ((local.day_of_week == 4) & (local.hour >= 17))
        | ((local.day_of_week == 6) & (local.hour < 17))
    )
    return hours[~closed]


@pytest.fixture(scope="module")
def vendor_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("vendor")
    stamps = xcals.get_calendar("XNYS").sessions_in_range("2018-01-02", "2026-11-19")
    truth = {
        symbol: true_bars(seed, stamps, volume=symbol != "^VIX", level=20.0 if symbol == "^VIX" else 100.0)
        for seed, symbol in enumerate(DAILY)
    }
    files = {
        "^GSPC": vendor_file(truth["^GSPC"], {}, {}),
        "^VIX": vendor_file(truth["^VIX"], {}, {}),
        "AAPL": vendor_file(truth["AAPL"], {SPLIT_2_1: 2.0}, {DIVIDEND: 0.99}),
        "MSFT": vendor_file(truth["MSFT"], {SPLIT_3_2: 1.5}, {}),
        "JPM": vendor_file(truth["JPM"], {UNADJUSTED_SPLIT: 2.0}, {}, adjusted=False),
    }
    files["AAPL"].loc[files["AAPL"].index[0], "adj_close"] /= 31  # an old row's factor of 31x, years before the window
    crashed = truth["XOM"].copy()
    after = crashed.index >= pd.Timestamp(CRASH)
    crashed.loc[after, ["open", "high", "low", "close"]] *= (
        0.48 * crashed["close"].shift()[CRASH] / crashed["close"][CRASH]
    )
    crashed.loc[CRASH, "volume"] *= 6
    files["XOM"] = vendor_file(crashed, {}, {})
    for symbol, frame in files.items():
        write_vendor_csv(frame, folder / f"{symbol}_1d.csv")
    hours = fx_hours("2026-03-01", "2026-11-20")
    fx = true_bars(9, hours, level=1.1, volume=False)
    fx.assign(adj_close=fx["close"]).rename_axis("timestamp").to_csv(
        folder / "EURUSD=X_1h.csv", date_format="%Y-%m-%dT%H:%M:%S+00:00"
    )
    return folder, truth


def validation_reports(run_root) -> dict[str, dict]:
    reports = json.loads((run_root / "validated" / "validation_report.json").read_text())["reports"]
    return {f"{r['symbol']}_{r['timeframe']}": r for r in reports}


def cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def daily_run(vendor_folder, tmp_path_factory):
    folder, truth = vendor_folder
    home = tmp_path_factory.mktemp("daily_run")
    config = write_config(home, validation={"min_pass_share": 0.5})  # two of six files are bad on purpose
    common = [
        "--source",
        f"csv:{folder}",
        "--symbols",
        ",".join(DAILY),
        "--timeframes",
        "1d",
        "--as-of",
        AS_OF,
        "--config",
        str(config),
    ]
    codes, outputs = [], []
    for stage in ("ingest", "validate", "features"):  # capsys is per test: capture by hand for the module
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            codes.append(main([stage, *common]))
        outputs.append(out.getvalue() + err.getvalue())
    settings_dir = home / "data"
    return codes, outputs, find_run(settings_dir, AS_OF).layout.root, truth


def test_splits_are_repaired_and_named_an_unadjusted_split_and_a_crash_are_quarantined(daily_run):
    codes, (ingested, validated, _), run_root, truth = daily_run
    close = truth["AAPL"]["close"]
    raw_move = close[SPLIT_2_1] / close.shift()[SPLIT_2_1] / 2 - 1  # the day's own move on top of the split
    assert codes == [0, 0, 0], validated
    assert "ingest: 6/6 pairs" in ingested
    pairs = validation_reports(run_root)
    aapl = next(c for c in pairs["AAPL_1d"]["checks"] if c["check"] == "corporate_actions")["detail"]
    assert (
        f"repaired split 2:1 at {SPLIT_2_1} 00:00:00+00:00 (close {raw_move:+.1%}" in aapl
        and "1 other adjustment(s) (dividends)" in aapl
    )
    msft = next(c for c in pairs["MSFT_1d"]["checks"] if c["check"] == "corporate_actions")["detail"]
    assert f"repaired split 3:2 at {SPLIT_3_2}" in msft
    jpm = {c["check"]: c for c in pairs["JPM_1d"]["checks"]}
    assert (
        pairs["JPM_1d"]["quarantined"]
        and f"unadjusted split 2:1 at {UNADJUSTED_SPLIT}" in jpm["corporate_actions"]["detail"]
    )
    assert jpm["price_sanity"]["passed"]  # the split day is reported once, as a split, not also as a crash
    xom = json.dumps(pairs["XOM_1d"])
    assert pairs["XOM_1d"]["quarantined"] and "-52.0%" in xom and "not splits" in xom and "repaired" not in xom
    assert (
        "validate: 4/6 pairs passed" in validated
        and validated.count("QUARANTINED") == 2
        and "unadjusted split 2:1" in validated
    )


def test_features_on_the_repaired_file_equal_features_of_the_true_adjusted_series(daily_run):
    """The split day reads like any other day: every per-symbol model feature of AAPL equals the one
    computed on the continuous series the vendor's adjustment describes (dividend taken out)."""
    _, _, run_root, truth = daily_run
    served = pd.read_csv(run_root / "features" / "AAPL_1d_features.csv", index_col=0, parse_dates=True)
    true = truth["AAPL"].copy()
    dividend = np.where(true.index < pd.Timestamp(DIVIDEND), 0.99, 1.0)
    for column in ("open", "high", "low", "close"):
        true[column] *= dividend
    true["volume"] /= dividend
    expected = symbol_features(true.assign(adj_close=true["close"]).set_axis(true.index.tz_localize("UTC")))
    names = model_features(symbol_feature_names())
    shared = served.index
    assert shared.min() >= pd.Timestamp("2021-11-20", tz="UTC") and pd.Timestamp(SPLIT_2_1, tz="UTC") in shared
    gap = (served[names] - expected.loc[shared, names]).abs() / expected.loc[shared, names].abs().clip(lower=1e-6)
    assert (gap.max() <= 1e-9).all(), gap.max()[gap.max() > 1e-9].to_dict()
    split_day = served.loc[pd.Timestamp(SPLIT_2_1, tz="UTC")]
    assert abs(split_day["gap_pct"]) < 0.05 and abs(split_day["close_to_sma_200"]) < 0.5 and split_day["rsi_14"] > 20


def test_an_hourly_fx_file_across_weekends_and_a_dst_change_validates_complete(vendor_folder, tmp_path, capsys):
    folder, _ = vendor_folder
    config = write_config(tmp_path, universe={"fx": ["EURUSD=X"]})
    common = [
        "--source",
        f"csv:{folder}",
        "--symbols",
        "EURUSD=X",
        "--timeframes",
        "1h",
        "--as-of",
        AS_OF,
        "--config",
        str(config),
    ]
    assert cli(capsys, "ingest", *common)[0] == 0
    code, out, _ = cli(capsys, "validate", *common)
    assert code == 0 and "validate: 1/1 pairs passed" in out, out
    run_root = find_run(tmp_path / "data", AS_OF).layout.root
    pair = validation_reports(run_root)["EURUSD=X_1h"]
    completeness = next(c for c in pair["checks"] if c["check"] == "completeness")
    assert completeness["passed"] and not pair["quarantined"], completeness
    manifest = json.loads((run_root / "run_manifest.json").read_text())
    assert manifest["calendars"]["EURUSD=X"] == "FX (config.yaml)"
