"""Market-wide features: joined as of each symbol's close, breadth by hand, missing inputs named."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trading_ml.config import FeatureSettings, Instrument
from trading_ml.features.market import attach_market, breadth_component, build_market_panel, missing_market_features


def test_an_indian_daily_bar_sees_the_us_market_of_the_previous_us_session(synthetic_daily):
    bars, instruments = synthetic_daily
    panel = build_market_panel(bars, instruments, "1d", FeatureSettings())
    nifty = bars["^NSEI"]
    joined = attach_market(nifty[[]].assign(return_20=0.0), instruments["^NSEI"], panel)
    vix = bars["^VIX"]["close"]
    for day in nifty.index[300:310]:
        previous_us_session = vix.index[vix.index < day][-1]
        assert joined.loc[day, "vix_level"] == vix.loc[previous_us_session]
    same_exchange = attach_market(bars["AAPL"][[]].assign(return_20=0.0), instruments["AAPL"], panel)
    assert (same_exchange["vix_level"].dropna() == vix.loc[same_exchange["vix_level"].dropna().index]).all()


def test_breadth_counts_the_equities_that_have_the_bar():
    index = pd.date_range("2024-01-01", periods=60, freq="D", tz="UTC")
    rising = pd.Series(np.linspace(100, 160, 60), index=index)
    falling = pd.Series(np.linspace(160, 100, 60), index=index)

    def frame(close):
        return pd.DataFrame({"close": close, "adj_close": close})

    breadth = breadth_component({"UP1": frame(rising), "UP2": frame(rising * 2), "DOWN": frame(falling)})
    assert breadth["breadth_above_sma_50"].iloc[-1] == pytest.approx(2 / 3)
    assert breadth["advance_decline"].iloc[-1] == pytest.approx((2 - 1) / 3)
    assert breadth["breadth_above_sma_50"].iloc[:49].isna().all()
    one_missing = breadth_component({"UP1": frame(rising), "DOWN": frame(falling.iloc[:-1])})
    assert one_missing["advance_decline"].iloc[-1] == 1.0  # only UP1 traded that bar


def test_missing_inputs_leave_their_features_out_and_say_why(synthetic_daily):
    bars, instruments = synthetic_daily
    only_indices = {s: b for s, b in bars.items() if instruments[s].kind == "index" and s != "^VIX"}
    panel = build_market_panel(only_indices, instruments, "1d", FeatureSettings())
    missing = missing_market_features(panel)
    assert set(missing) == {
        "vix_level",
        "vix_change_1",
        "vix_change_5",
        "vix_to_sma_20",
        "breadth_above_sma_50",
        "advance_decline",
        "advance_decline_10",
    }
    assert "^VIX" in missing["vix_level"] and "equities" in missing["advance_decline"]
    assert "benchmark_return_1" in panel.feature_names and "relative_strength_20" in panel.feature_names


def test_a_stale_market_value_is_not_carried_forward():
    def daily(*days):
        return pd.DataFrame(
            {"close": 16.0, "adj_close": 16.0}, index=pd.DatetimeIndex(days, tz="UTC", name="timestamp")
        )

    instruments = {
        "^VIX": Instrument("^VIX", "index", "XNYS", has_volume=False),
        "ABC": Instrument("ABC", "equity", "XNYS"),
    }
    panel = build_market_panel({"^VIX": daily("2024-03-01", "2024-03-04")}, instruments, "1d", FeatureSettings())
    joined = attach_market(daily("2024-03-04", "2024-03-20")[[]], instruments["ABC"], panel)
    assert joined["vix_level"].iloc[0] == 16.0  # the same session
    assert pd.isna(joined["vix_level"].iloc[1])  # 16 days old: not used


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_as_of_join_is_pandas_merge_asof_backward_within_the_staleness_limit(seed):
    from trading_ml.features.market import _as_of

    rng = np.random.default_rng(seed)
    stamps = pd.DatetimeIndex(
        np.sort(rng.choice(pd.date_range("2024-01-01", periods=400, freq="h", tz="UTC"), 150, replace=False))
    )
    component = pd.DataFrame({"level": rng.normal(size=150), "count": rng.integers(0, 9, 150)}, index=stamps)
    close_times = pd.DatetimeIndex(
        np.sort(rng.choice(pd.date_range("2023-12-31", periods=500, freq="h", tz="UTC"), 200))
    )
    close_times = close_times.append(stamps[:5]).sort_values()  # exact matches count as known
    limit = pd.Timedelta(hours=int(rng.integers(1, 6)))
    expected = pd.merge_asof(
        pd.DataFrame({"close_time": close_times}),
        component.rename_axis("close_time").reset_index(),
        on="close_time",
        direction="backward",
        tolerance=limit,
    ).drop(columns="close_time")
    got = _as_of(component, close_times, limit)
    assert got["level"].isna().any() and got["level"].notna().any()  # stale and fresh rows both occur
    pd.testing.assert_frame_equal(got, expected.astype(got.dtypes))
    pd.testing.assert_frame_equal(got.isna(), expected.isna())
    assert _as_of(component.iloc[:0], close_times, limit).isna().all().all()
    shuffled = component.sample(frac=1.0, random_state=seed)
    pd.testing.assert_frame_equal(_as_of(shuffled, close_times, limit), got)
