import numpy as np
import pandas as pd
import pytest

from trading_ml.drivers import load_settings
from trading_ml.data.bars import BAR_COLUMNS
from trading_ml.data.synthetic import REGIMES, SyntheticMarket
from trading_ml.errors import ConfigError, DataError, SourceUnavailable

SETTINGS = load_settings(env={})
END = pd.Timestamp("2026-11-20", tz="UTC")


def daily(market, symbol, start="2016-01-01", end=END):
    return market.bars(SETTINGS.instrument(symbol), "1d", pd.Timestamp(start, tz="UTC"), end)


def test_same_bar_for_same_symbol_and_timestamp_whatever_the_window():
    market = SyntheticMarket(seed=7)
    long = daily(market, "AAPL", "2015-01-01", END)
    short = daily(market, "AAPL", "2020-06-01", pd.Timestamp("2023-02-01", tz="UTC"))
    pd.testing.assert_frame_equal(short, long.loc[short.index])
    hourly = lambda s, e: market.bars(SETTINGS.instrument("MSFT"), "1h", pd.Timestamp(s, tz="UTC"), pd.Timestamp(e, tz="UTC"))
    wide, narrow = hourly("2026-01-05", "2026-11-20"), hourly("2026-03-02", "2026-04-01")
    pd.testing.assert_frame_equal(narrow, wide.loc[narrow.index])


def test_a_symbol_does_not_depend_on_which_others_are_asked_for():
    first, second = SyntheticMarket(seed=7), SyntheticMarket(seed=7)
    daily(first, "XOM")
    pd.testing.assert_frame_equal(daily(first, "AAPL"), daily(second, "AAPL"))
    assert not daily(SyntheticMarket(seed=8), "AAPL").equals(daily(first, "AAPL"))


def test_prices_cluster_in_volatility_and_sectors_move_together():
    market = SyntheticMarket(seed=42)
    closes = pd.DataFrame({s: daily(market, s)["close"] for s in ("XOM", "CVX", "AAPL", "^GSPC")})
    returns = np.log(closes).diff().dropna()
    squared = returns["^GSPC"] ** 2
    assert squared.autocorr(1) > 0.1  # volatility clustering: big moves follow big moves
    corr = returns.corr()
    assert corr.loc["XOM", "CVX"] > corr.loc["XOM", "AAPL"] + 0.1  # same sector moves together
    annual_vol = returns.std() * np.sqrt(252)
    assert ((annual_vol > 0.08) & (annual_vol < 0.8)).all()


def test_all_four_regimes_occur_and_vix_follows_realized_volatility():
    market = SyntheticMarket(seed=42)
    regimes = market.regimes(END)
    assert set(regimes.unique()) == set(REGIMES)
    assert regimes.value_counts(normalize=True).min() > 0.05
    gspc, vix = daily(market, "^GSPC")["close"], daily(market, "^VIX")
    realized = np.log(gspc).diff().rolling(20).std() * np.sqrt(252) * 100
    both = pd.concat([realized, vix["close"]], axis=1).dropna()
    assert both.corr().iloc[0, 1] > 0.6
    assert (vix["volume"] == 0).all() and vix["close"].between(9, 90).all()


def test_volume_rises_with_the_size_of_the_move():
    bars = daily(SyntheticMarket(seed=42), "JPM")
    move = np.log(bars["close"]).diff().abs()
    assert move.corr(np.log(bars["volume"])) > 0.2
    assert (bars["volume"] > 0).all()


def test_hourly_bars_follow_trading_hours_and_aggregate_to_the_daily_bar():
    market = SyntheticMarket(seed=3)
    start, end = pd.Timestamp("2026-03-02", tz="UTC"), pd.Timestamp("2026-03-07", tz="UTC")
    for symbol, first_bar in (("AAPL", "14:30"), ("^NSEI", "03:45")):
        hourly = market.bars(SETTINGS.instrument(symbol), "1h", start, end)
        day = market.bars(SETTINGS.instrument(symbol), "1d", start, end)
        assert list(hourly.columns) == BAR_COLUMNS
        by_day = hourly.groupby(hourly.index.normalize())
        assert by_day.size().eq(7).all()
        assert (hourly.index[0].strftime("%H:%M")) == first_bar
        aggregated = pd.DataFrame({
            "open": by_day["open"].first(), "high": by_day["high"].max(), "low": by_day["low"].min(),
            "close": by_day["close"].last(), "volume": by_day["volume"].sum(),
        })
        pd.testing.assert_frame_equal(aggregated, day[aggregated.columns], check_names=False, check_freq=False)


def test_no_bars_on_exchange_holidays():
    bars = daily(SyntheticMarket(), "AAPL", "2025-12-20", pd.Timestamp("2026-01-06", tz="UTC"))
    dates = set(bars.index.strftime("%Y-%m-%d"))
    assert "2025-12-25" not in dates and "2026-01-01" not in dates and "2025-12-24" in dates


def test_a_window_before_the_epoch_is_refused_with_a_hint():
    with pytest.raises(DataError, match="before the simulated market's epoch"):
        daily(SyntheticMarket(epoch="2010-01-04"), "AAPL", "2009-01-01")


def test_an_outage_fault_makes_the_source_not_answer():
    settings = load_settings(env={})
    market = SyntheticMarket(faults={"JPM": ["outage"]})
    end = pd.Timestamp("2024-06-01", tz="UTC")
    with pytest.raises(SourceUnavailable, match="JPM 1d: the source did not answer"):
        market.bars(settings.instrument("JPM"), "1d", end - pd.DateOffset(months=3), end)
    assert len(market.bars(settings.instrument("XOM"), "1d", end - pd.DateOffset(months=3), end)) > 50


def reversal_ic(market, years=5) -> float:
    """Mean daily cross-sectional rank correlation of minus the last 5 sessions' return with the next return."""
    equities = [s for s, i in SETTINGS.universe.items() if i.kind == "equity"]
    closes = pd.DataFrame({s: daily(market, s, str(END.year - years) + "-11-20")["close"] for s in equities})
    signal, following = -np.log(closes).diff(5), closes.pct_change().shift(-1)
    return float(signal.rank(axis=1).corrwith(following.rank(axis=1), axis=1).mean())


def test_the_planted_reversal_is_there_at_its_strength_and_absent_at_zero():
    planted, none = reversal_ic(SyntheticMarket(seed=42, signal_strength=0.10)), reversal_ic(SyntheticMarket(seed=42, signal_strength=0.0))
    assert planted > 0.06 and abs(none) < 0.03, (planted, none)
    with pytest.raises(ConfigError, match="signal_strength"):
        SyntheticMarket(signal_strength=0.7)


def test_the_planted_signal_moves_only_the_own_component():
    """The market (its regimes, the fear gauge) is the same with and without the planted signal."""
    calm, planted = SyntheticMarket(seed=3, signal_strength=0.0), SyntheticMarket(seed=3, signal_strength=0.10)
    assert calm.regimes(END).equals(planted.regimes(END))
    vix_calm, vix_planted = daily(calm, "^VIX"), daily(planted, "^VIX")
    pd.testing.assert_frame_equal(vix_calm, vix_planted)  # the fear gauge follows the market alone
    assert not daily(calm, "AAPL").equals(daily(planted, "AAPL"))
