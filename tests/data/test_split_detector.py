"""The split detector measured: its false-positive rate on split-free series (many synthetic
symbol-years and the real daily series installed packages ship) must be zero, real crashes and
+30% days are never called splits, and its power on planted unadjusted splits is near one."""

from pathlib import Path

import matplotlib
import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_settings
from tests.stages import run_both
from trading_ml.drivers import load_settings
from trading_ml.data.bars import BAR_COLUMNS, bar_index
from trading_ml.data.corporate_actions import SPLIT_FACTORS, find_actions
from trading_ml.data.synthetic import SyntheticMarket
from trading_ml.pipeline.planning import RunRequest, plan_run
from trading_ml.sources import SampleSource

SETTINGS = load_settings(env={})
EQUITIES = [s for s in SETTINGS.symbols if not s.startswith("^")]
SPLIT_BAND = 0.15  # a raw close move within this (log) distance of 1/F for some split factor F


def synthetic_series(seed: int) -> dict[str, pd.DataFrame]:
    """Every equity of one seeded market, 2000 to 2026 (about 26 years each)."""
    market = SyntheticMarket(seed=seed)
    start, end = pd.Timestamp("2000-01-03", tz="UTC"), pd.Timestamp("2026-11-01", tz="UTC")
    return {s: market.bars(SETTINGS.instrument(s), "1d", start, end) for s in EQUITIES}


def real_series() -> dict[str, pd.DataFrame]:
    """The real daily series here: S&P 500 and NASDAQ (arch, 1999-2018) and Google (matplotlib, 2004-2008)."""
    series = {s: SampleSource().load(s) for s in ("^GSPC", "^IXIC")}
    goog = np.load(Path(matplotlib.get_data_path()) / "sample_data" / "goog.npz")["price_data"]
    frame = pd.DataFrame({c: goog[c].astype(float) for c in ("open", "high", "low", "close", "adj_close", "volume")},
                         index=bar_index(pd.DatetimeIndex(goog["date"])))
    series["GOOG"] = frame[BAR_COLUMNS]
    return series


def near_split_moves(bars: pd.DataFrame) -> int:
    ratio = (bars["close"] / bars["close"].shift()).to_numpy()[1:]
    return int(sum(min(abs(np.log(r * f)) for f in SPLIT_FACTORS) < SPLIT_BAND for r in ratio if np.isfinite(r) and r > 0))


def with_unadjusted_split(bars: pd.DataFrame, position: int, factor: float) -> pd.DataFrame:
    """F new shares per old from ``position`` on, as a vendor that never adjusted would show it."""
    out = bars.copy()
    after = out.index[position:]
    out.loc[after, ["open", "high", "low", "close", "adj_close"]] = out.loc[after, ["open", "high", "low", "close", "adj_close"]] / factor
    out.loc[after, "volume"] = out.loc[after, "volume"] * factor
    return out


def with_crash(bars: pd.DataFrame, position: int, move: float, gap: bool, day_volume: float, surge: float) -> pd.DataFrame:
    """A real move of ``move`` at ``position`` (the level changes for good; adj_close moves with it):
    overnight when ``gap`` (AAPL 2000-09-29: -52%, opened near the close), else intraday (MSFT
    1987-10-19: -30%, opened near the day before); the day trades ``day_volume`` times its normal
    volume and the following month ``surge`` times, decaying."""
    out = bars.copy()
    after = out.index[position:]
    scale = (1 + move) * bars["close"].iloc[position - 1] / bars["close"].iloc[position]
    out.loc[after, ["open", "high", "low", "close", "adj_close"]] = bars.loc[after, ["open", "high", "low", "close", "adj_close"]] * scale
    previous = bars["close"].iloc[position - 1]
    if not gap:
        out.loc[out.index[position], "open"] = previous * 0.99
        out.loc[out.index[position], "high"] = previous
    volume = out["volume"].to_numpy(dtype=float).copy()
    volume[position] *= day_volume
    decay = 1 + (surge - 1) * np.exp(-np.arange(len(volume) - position - 1) / 15)
    volume[position + 1:] *= decay
    out["volume"] = volume
    return out


@pytest.fixture(scope="module")
def synthetic():
    return {(seed, s): bars for seed in (7, 42, 2024) for s, bars in synthetic_series(seed).items()}


def test_no_split_is_called_in_about_1500_split_free_synthetic_symbol_years(synthetic):
    years = sum(len(b) for b in synthetic.values()) / 252
    candidates = sum(near_split_moves(b) for b in synthetic.values())
    called = {key: find_actions(bars) for key, bars in synthetic.items()}
    false_positives = {key: [a.describe() for a in found] for key, found in called.items() if found}
    assert years > 1400
    assert candidates >= 3  # the market has moves in a split band (+30..+41% days, -33% days): the test can fail
    assert false_positives == {}, false_positives


CRASHES = {  # name: (move, overnight gap, the day's volume x, the next month's volume x (decaying), most calls allowed of 60)
    "AAPL 2000-09-29 shape (overnight -51.9%, 12x volume)": (-0.519, True, 12, 2.5, 0),
    "MSFT 1987-10-19 shape (intraday -30%)": (-0.30, False, 3, 1.5, 0),
    "+41% day, volume unchanged after": (0.41, True, 6, 1.0, 0),
    "+50% day (a 2:3 band), volume x0.945 after": (0.50, True, 5, 0.945, 0),
    # look-alikes: an overnight move of exactly 1/F whose volume steps up about F: 1 to 5% are called
    "overnight -50%, 8x volume, doubled for a month": (-0.50, True, 8, 2.0, 3),
    "overnight -33%, 5x volume, x1.5 for a month": (-0.33, True, 5, 1.5, 3),
}


def test_no_split_is_called_in_the_real_series():
    for symbol, bars in real_series().items():
        assert find_actions(bars) == [], symbol


@pytest.mark.parametrize("name", CRASHES)
def test_a_real_crash_or_jump_is_not_called_a_split(synthetic, name):
    """Each shape planted at 10 places in each real series and 3 synthetic symbol histories (60 in all):
    the real shapes are never called splits; look-alikes built to match a split's price and volume
    are in at most 5%."""
    move, gap, day_volume, surge, allowed = CRASHES[name]
    rng = np.random.default_rng(len(name))
    series = [*real_series().values(), *list(synthetic.values())[:3]]
    called = []
    for bars in series:
        for position in rng.integers(40, len(bars) - 40, size=10):
            found = find_actions(with_crash(bars, int(position), move, gap, day_volume, surge))
            called += [a.describe() for a in found]
    assert len(called) <= allowed, called


@pytest.mark.parametrize("factor", SPLIT_FACTORS)
def test_planted_unadjusted_splits_are_found_with_their_factor_and_measured_ratio(synthetic, factor):
    rng = np.random.default_rng(int(factor * 1000))
    series = [*list(synthetic.values())[::6], *real_series().values()]
    found, planted = 0, 0
    for bars in series:
        for position in rng.integers(30, len(bars) - 30, size=4):
            planted += 1
            actions = find_actions(with_unadjusted_split(bars, int(position), factor))
            hits = [a for a in actions if a.timestamp == bars.index[position] and a.factor == factor and a.confirmed_by == "volume"]
            if hits:
                found += 1
                assert abs(np.log(hits[0].volume_ratio / factor)) < np.log(1.5) and hits[0].volume_ratio != factor
    assert found / planted >= (0.75 if factor in (1.5, 2 / 3) else 0.9), f"{found} of {planted}"


def test_the_readme_run_quarantines_nothing_on_the_synthetic_market(tmp_path):
    """The default 26-symbol universe, daily and hourly, at four as-of dates (BAC was quarantined
    as a 'reverse split' in every default run since 2020)."""
    settings = make_settings(tmp_path / "data")
    for as_of in ("2021-06-30", "2023-01-02", "2024-12-31", "2026-12-04"):
        ctx = plan_run(settings, RunRequest(as_of=as_of, source="synthetic"))
        _, manifest, resources = run_both(ctx)
        resources.close()
        assert len(manifest["passed"]) == 52 and manifest["quarantined"] == [], (as_of, manifest["quarantined"])


# Files without an adjusted close ------------------------------------------------------------------


def without_adj_close(bars: pd.DataFrame) -> pd.DataFrame:
    """The series as a file without adj_close reads: the adjusted close is the close."""
    return bars.assign(adj_close=bars["close"])


def with_vendor_adjusted_split(bars: pd.DataFrame, position: int, factor: float) -> pd.DataFrame:
    """An F-for-1 split from ``position`` on in a file without adj_close whose vendor already
    split-adjusted the volume (it does not move by F): only the prices show it."""
    out = bars.copy()
    after = out.index[position:]
    prices = ["open", "high", "low", "close"]
    out.loc[after, prices] = out.loc[after, prices] / factor
    return without_adj_close(out)


@pytest.fixture(scope="module")
def benchmarks():
    """Each seed's synthetic S&P 500 close: the market the detector asks whether it moved."""
    start, end = pd.Timestamp("2000-01-03", tz="UTC"), pd.Timestamp("2026-11-01", tz="UTC")
    gspc = SETTINGS.instrument("^GSPC")
    return {seed: SyntheticMarket(seed=seed).bars(gspc, "1d", start, end)["close"] for seed in (7, 42, 2024)}


def test_without_adj_close_no_split_is_called_in_split_free_series(synthetic, benchmarks):
    called = {key: find_actions(without_adj_close(bars), benchmarks[key[0]]) for key, bars in synthetic.items()}
    called.update({key: find_actions(without_adj_close(bars)) for key, bars in real_series().items()})
    assert {key: [a.describe() for a in found] for key, found in called.items() if found} == {}


def test_without_adj_close_crashes_and_jumps_are_not_called_splits(synthetic):
    """Every shape of CRASHES at 10 places in each real series and 3 synthetic histories (60 each)."""
    series = [*real_series().values(), *list(synthetic.values())[:3]]
    for name, (move, gap, day_volume, surge, allowed) in CRASHES.items():
        rng = np.random.default_rng(len(name))
        called = [
            a.describe()
            for bars in series
            for position in rng.integers(40, len(bars) - 40, size=10)
            for a in find_actions(without_adj_close(with_crash(bars, int(position), move, gap, day_volume, surge)))
        ]
        assert len(called) <= allowed, (name, called)


def test_without_adj_close_or_volume_evidence_planted_splits_are_found_from_the_prices(synthetic, benchmarks):
    """Power on every standard factor; before the price evidence none of these was found (0 of 624)."""
    keys = list(synthetic)[::6]
    found, planted = {}, {}
    for factor in SPLIT_FACTORS:
        rng = np.random.default_rng(int(factor * 1000))
        cases = [(synthetic[k], benchmarks[k[0]]) for k in keys] + [(b, None) for b in real_series().values()]
        for bars, market in cases:
            for position in rng.integers(60, len(bars) - 60, size=4):
                actions = find_actions(with_vendor_adjusted_split(bars, int(position), factor), market)
                hit = any(a.timestamp == bars.index[position] and a.factor == factor for a in actions)
                found[factor] = found.get(factor, 0) + hit
                planted[factor] = planted.get(factor, 0) + 1
    assert all(found[f] / planted[f] >= 0.75 for f in SPLIT_FACTORS), found
    assert sum(found.values()) / sum(planted.values()) >= 0.85, (found, planted)


def test_a_split_shaped_day_when_the_market_moved_is_not_called_a_split(synthetic, benchmarks):
    """Must say no: the same planted split is found with a calm benchmark and not when the benchmark
    fell 8% that day (the whole market moved: not a split)."""
    key = next(iter(synthetic))
    bars, market = synthetic[key], benchmarks[key[0]]
    position = 700
    split = with_vendor_adjusted_split(bars, position, 2.0)
    day = bars.index[position]
    assert [a.confirmed_by for a in find_actions(split, market)] == ["price"]
    moved = market.copy()
    moved.loc[moved.index >= day] *= 0.92
    assert find_actions(split, moved) == []


def test_a_file_without_adj_close_holding_a_split_is_quarantined_naming_it(synthetic):
    from trading_ml.data.calendars import expected_timestamps
    from trading_ml.data.validation import validate_bars

    key = next(iter(synthetic))
    bars = with_vendor_adjusted_split(synthetic[key].iloc[-1500:], 1000, 2.0)
    instrument = SETTINGS.instrument(key[1])
    expected = expected_timestamps(instrument.exchange, "1d", bars.index[0], bars.index[-1] + pd.Timedelta(days=1))
    report, _ = validate_bars(bars, instrument, "1d", expected, SETTINGS.validation)
    assert report.quarantined
    reason = next(r for r in report.reasons if "split" in r)
    assert f"unadjusted split 2:1 at {bars.index[1000]}" in reason and "supply split-adjusted adj_close" in reason
