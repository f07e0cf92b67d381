"""Indicator values against their textbook definitions, computed here by hand on small frames."""

from __future__ import annotations

import sys
import types

import numpy as np
import pandas as pd
import pytest

from trading_ml.features.indicators import symbol_features

# StockCharts ChartSchool's RSI worksheet: 33 closes and the 14-bar RSI it publishes from bar 15.
STOCKCHARTS_CLOSES = [
    44.34,
    44.09,
    44.15,
    43.61,
    44.33,
    44.83,
    45.10,
    45.42,
    45.84,
    46.08,
    45.89,
    46.03,
    45.61,
    46.28,
    46.28,
    46.00,
    46.03,
    46.41,
    46.22,
    45.64,
    46.21,
    46.25,
    45.71,
    46.45,
    45.78,
    45.35,
    44.03,
    44.18,
    44.22,
    44.57,
    43.42,
    42.66,
    43.13,
]
STOCKCHARTS_RSI = [
    70.53,
    66.32,
    66.55,
    69.41,
    66.36,
    57.97,
    62.93,
    63.26,
    56.06,
    62.38,
    54.71,
    50.42,
    39.99,
    41.46,
    41.87,
    45.46,
    37.30,
    33.09,
    37.79,
]


def bars_frame(close, high=None, low=None, volume=None, open_=None) -> pd.DataFrame:
    close = np.asarray(close, dtype=float)
    index = pd.date_range("2020-01-01", periods=len(close), freq="D", tz="UTC", name="timestamp")
    return pd.DataFrame(
        {
            "open": close if open_ is None else open_,
            "high": close + 0.5 if high is None else high,
            "low": close - 0.5 if low is None else low,
            "close": close,
            "adj_close": close,
            "volume": np.full(len(close), 1000.0) if volume is None else volume,
        },
        index=index,
    )


def random_bars(rows: int, seed: int = 7) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.015, rows)))
    high = close * (1 + rng.uniform(0.001, 0.02, rows))
    low = close * (1 - rng.uniform(0.001, 0.02, rows))
    open_ = low + (high - low) * rng.uniform(0, 1, rows)
    return bars_frame(close, high, low, rng.integers(1_000, 50_000, rows).astype(float), open_)


def wilder_rsi(close: list[float], length: int = 14) -> list[float]:
    """Wilder: average gain and loss seeded with the mean of the first `length` moves, then smoothed."""
    moves = np.diff(close)
    gains, losses = np.clip(moves, 0, None), np.clip(-moves, 0, None)
    average_gain, average_loss = gains[:length].mean(), losses[:length].mean()
    values = [100 - 100 / (1 + average_gain / average_loss)]
    for gain, loss in zip(gains[length:], losses[length:]):
        average_gain = (average_gain * (length - 1) + gain) / length
        average_loss = (average_loss * (length - 1) + loss) / length
        values.append(100 - 100 / (1 + average_gain / average_loss))
    return [np.nan] * length + values


def test_wilder_reference_reproduces_the_published_rsi_worksheet():
    ours = wilder_rsi(STOCKCHARTS_CLOSES)[14:]
    # StockCharts rounds its averages to 2 decimals in the worksheet, hence 0.1.
    assert np.allclose(ours, STOCKCHARTS_RSI, atol=0.1)


def test_rsi_equals_wilders_after_the_warm_up_the_stage_drops():
    """pandas-ta seeds Wilder's average with the first move rather than the mean of the first 14;
    the difference shrinks by 13/14 a bar, so by the 200-bar warm-up the stage drops it is far below
    the precision RSI is read at."""
    bars = random_bars(400)
    ours = symbol_features(bars)["rsi_14"].to_numpy()
    reference = np.array(wilder_rsi(list(bars["close"])))
    assert np.abs(ours[199:] - reference[199:]).max() < 1e-4  # RSI points, on its 0-100 scale
    assert np.abs(ours[14:20] - reference[14:20]).max() > 1e-3  # and the early bars really differ


def test_atr_is_wilders_average_true_range():
    bars = random_bars(40)
    high, low, close = bars["high"].to_numpy(), bars["low"].to_numpy(), bars["close"].to_numpy()
    true_range = [high[0] - low[0]] + [
        max(high[i] - low[i], abs(high[i] - close[i - 1]), abs(low[i] - close[i - 1])) for i in range(1, 40)
    ]
    atr = [np.mean(true_range[:14])]
    for value in true_range[14:]:
        atr.append((atr[-1] * 13 + value) / 14)
    features = symbol_features(bars)
    assert np.allclose(features["atr_14"].to_numpy()[13:], atr, rtol=1e-12)
    assert np.allclose(features["atr_14_pct"].to_numpy()[13:], 100 * np.array(atr) / close[13:], rtol=1e-12)


def test_obv_change_adds_volume_on_up_closes_and_subtracts_it_on_down_closes():
    close = [10, 11, 11, 10.5, 12, 12.5, 12.0, 12.0, 13.0] * 3
    volume = np.arange(1.0, 28.0) * 100
    features = symbol_features(bars_frame(close, volume=volume))
    signed = [v * np.sign(close[i] - close[i - 1]) for i, v in enumerate(volume) if i > 0]
    expected = [sum(signed[end - 20 : end]) / volume[end - 19 : end + 1].sum() for end in range(20, 27)]
    np.testing.assert_allclose(features["obv_change_20"].to_numpy()[20:], expected, rtol=1e-12)
    assert not {"obv", "ad"} & set(features.columns)  # cumulative levels depend on where the data starts


def test_cci_is_lamberts_formula():
    """Typical price minus its 20-bar mean, over 0.015 x the mean absolute deviation.
    (pandas-ta 0.4.71b0's own ta.cci gets the operator precedence wrong; ours does not.)"""
    bars = random_bars(45)
    typical = ((bars["high"] + bars["low"] + bars["close"]) / 3).to_numpy()
    expected = []
    for end in range(20, 46):
        window = typical[end - 20 : end]
        deviation = np.abs(window - window.mean()).mean()
        expected.append((window[-1] - window.mean()) / (0.015 * deviation))
    assert np.allclose(symbol_features(bars)["cci_20"].to_numpy()[19:], expected, rtol=1e-9)


def test_williams_r_stochastic_and_bollinger_follow_their_definitions():
    bars = random_bars(60)
    features = symbol_features(bars)
    high14 = bars["high"].rolling(14).max()
    low14 = bars["low"].rolling(14).min()
    raw_k = 100 * (bars["close"] - low14) / (high14 - low14)
    assert np.allclose(features["williams_r_14"][13:], (-100 * (high14 - bars["close"]) / (high14 - low14))[13:])
    assert np.allclose(features["stoch_k_14"][15:], raw_k.rolling(3).mean()[15:])
    assert np.allclose(features["stoch_d_14"][17:], raw_k.rolling(3).mean().rolling(3).mean()[17:])
    middle = bars["close"].rolling(20).mean()
    spread = bars["close"].rolling(20).std(ddof=0)  # Bollinger uses the population deviation
    assert np.allclose(features["bb_upper_20"][19:], (middle + 2 * spread)[19:])
    assert np.allclose(features["bb_percent_b_20"][19:], ((bars["close"] - middle + 2 * spread) / (4 * spread))[19:])


def test_macd_is_the_difference_of_sma_seeded_emas():
    bars = random_bars(80)
    close = bars["close"].to_numpy()

    def ema(values, length):
        out = [np.mean(values[:length])]
        for value in values[length:]:
            out.append(out[-1] + 2 / (length + 1) * (value - out[-1]))
        return np.array([np.nan] * (length - 1) + out)

    macd = ema(close, 12) - ema(close, 26)
    features = symbol_features(bars)
    assert np.allclose(features["macd_pct"][25:], 100 * macd[25:] / close[25:])


@pytest.mark.parametrize("column", ["candle_body", "upper_shadow", "lower_shadow"])
def test_a_bar_without_range_has_no_body_or_shadows(column):
    bars = random_bars(30)
    bars.iloc[10, :4] = bars.iloc[10]["close"]  # open = high = low = close
    assert symbol_features(bars)[column].iloc[10] == 0.0


def textbook_mfi(high, low, close, volume, length: int = 14) -> list[float]:
    """Money flow index by hand: flow counts positive on a rising typical price, negative on a falling
    one, and not at all when it is unchanged."""
    typical = [(h + lo + c) / 3 for h, lo, c in zip(high, low, close, strict=True)]
    values = [float("nan")] * len(typical)
    for t in range(length, len(typical)):
        positive = negative = 0.0
        for i in range(t - length + 1, t + 1):
            if typical[i] > typical[i - 1]:
                positive += typical[i] * volume[i]
            elif typical[i] < typical[i - 1]:
                negative += typical[i] * volume[i]
        values[t] = 100 * positive / (positive + negative)
    return values


def test_mfi_is_the_textbook_one_even_when_the_typical_price_does_not_change():
    bars = random_bars(120)
    flat = bars.index[40:46]  # six bars whose typical price repeats the one before
    for stamp in flat:
        bars.loc[stamp, ["high", "low", "close"]] = bars.loc[bars.index[39], ["high", "low", "close"]].to_numpy()
    ours = symbol_features(bars)["mfi_14"].to_numpy()
    expected = textbook_mfi(*(bars[c].to_list() for c in ("high", "low", "close", "volume")))
    np.testing.assert_allclose(ours[14:], expected[14:], rtol=1e-9)
    import pandas_ta as ta

    theirs = ta.mfi(bars["high"], bars["low"], bars["close"], bars["volume"], 14, talib=False).to_numpy()
    assert np.nanmax(np.abs(theirs[14:] - ours[14:])) > 1  # pandas-ta counts the flat bars as negative flow


def test_the_windowed_aroon_and_mad_are_pandas_tas_own_values():
    import pandas_ta as ta

    from trading_ml.features.indicators import aroon_oscillator, window_mad

    bars = random_bars(300)
    bars.iloc[100, bars.columns.get_loc("high")] = np.nan  # a gap: windows over it are NaN in both
    bars.iloc[[150, 151], bars.columns.get_loc("low")] = bars["low"].iloc[149]  # a tie: the most recent counts
    theirs = ta.aroon(bars["high"], bars["low"], 25, talib=False).iloc[:, 2]
    ours = aroon_oscillator(bars["high"].to_numpy(), bars["low"].to_numpy(), 25)
    np.testing.assert_allclose(ours, theirs.to_numpy(), rtol=1e-12)
    typical = (bars["high"] + bars["low"] + bars["close"]) / 3
    np.testing.assert_allclose(window_mad(typical.to_numpy(), 20), ta.mad(typical, 20), rtol=1e-12, atol=1e-14)


class FakeTalib(types.ModuleType):
    """An importable 'talib' whose every function returns 12345: any feature computed through it shows."""

    MA_Type = types.SimpleNamespace(SMA=0, EMA=1, WMA=2, DEMA=3, TEMA=4, TRIMA=5, KAMA=6, MAMA=7, T3=8)
    OUTPUTS = {"MACD": 3, "BBANDS": 3, "STOCH": 2, "STOCHRSI": 2, "STOCHF": 2, "AROON": 2, "MAMA": 2}

    def __getattr__(self, name):
        if name.startswith("__"):
            raise AttributeError(name)

        def constant(first, *args, **kwargs):
            out = pd.Series(12345.0, index=first.index)
            count = self.OUTPUTS.get(name, 1)
            return out if count == 1 else tuple(out.copy() for _ in range(count))

        return constant


def test_features_do_not_change_when_talib_is_importable(monkeypatch):
    import pandas_ta as ta

    bars = random_bars(400)
    before = symbol_features(bars)
    monkeypatch.setitem(sys.modules, "talib", FakeTalib("talib"))
    monkeypatch.setitem(ta.Imports, "talib", True)  # what pandas-ta finds at import where TA-Lib is installed
    assert ta.sma(bars["close"], 5).iloc[-1] == 12345.0  # the fake is live for a caller that does not pin
    pd.testing.assert_frame_equal(symbol_features(bars), before)


def test_window_moments_are_the_bias_corrected_skew_and_kurtosis_pandas_gives():
    from trading_ml.features.indicators import central_moments, window_kurtosis, window_skew

    returns = random_bars(300)["close"].pct_change()
    for length in (20, 60):
        np.testing.assert_allclose(
            window_skew(central_moments(returns.to_numpy(), length)),
            returns.rolling(length).skew(),
            rtol=1e-7,
            atol=1e-10,
        )
        np.testing.assert_allclose(
            window_kurtosis(central_moments(returns.to_numpy(), length)),
            returns.rolling(length).kurt(),
            rtol=1e-7,
            atol=1e-10,
        )


AFTER_WARM_UP = 500  # features.warmup_bars: rows the feature stage keeps


def wilder_average(values: np.ndarray, length: int) -> np.ndarray:
    """Wilder's smoothing, seeded with the first value: s += (x - s) / length."""
    out, level = np.full(len(values), np.nan), np.nan
    for i, value in enumerate(values):
        if np.isnan(value):
            continue
        level = value if np.isnan(level) else level + (value - level) / length
        out[i] = level
    return out


def textbook_ema(values: np.ndarray, span: int) -> np.ndarray:
    out, level, alpha = np.full(len(values), np.nan), np.nan, 2 / (span + 1)
    for i, value in enumerate(values):
        if np.isnan(value):
            continue
        level = value if np.isnan(level) else level + alpha * (value - level)
        out[i] = level
    return out


def assert_after_warm_up(ours, expected, rtol: float = 1e-9):
    assert np.isfinite(np.asarray(ours, dtype=float)[AFTER_WARM_UP:]).all()
    np.testing.assert_allclose(
        np.asarray(ours, dtype=float)[AFTER_WARM_UP:], np.asarray(expected, dtype=float)[AFTER_WARM_UP:], rtol=rtol
    )


@pytest.fixture(scope="module")
def long_bars():
    bars = random_bars(900, seed=11)
    return bars, symbol_features(bars)


def test_adx_and_the_directional_indicators_are_wilders(long_bars):
    bars, features = long_bars
    high, low, close = (bars[c].to_numpy() for c in ("high", "low", "close"))
    up, down = np.diff(high, prepend=np.nan), -np.diff(low, prepend=np.nan)
    plus = np.where((up > down) & (up > 0), up, 0.0)
    minus = np.where((down > up) & (down > 0), down, 0.0)
    plus[0] = minus[0] = np.nan
    previous = np.concatenate([[np.nan], close[:-1]])
    true_range = np.fmax(high - low, np.fmax(np.abs(high - previous), np.abs(low - previous)))
    true_range[0] = np.nan
    atr = wilder_average(true_range, 14)
    plus_di, minus_di = 100 * wilder_average(plus, 14) / atr, 100 * wilder_average(minus, 14) / atr
    adx = wilder_average(100 * np.abs(plus_di - minus_di) / (plus_di + minus_di), 14)
    assert_after_warm_up(features["plus_di_14"], plus_di)
    assert_after_warm_up(features["minus_di_14"], minus_di)
    assert_after_warm_up(features["adx_14"], adx)


def test_cmo_is_chandes_roc_tsi_and_donchian_follow_their_definitions(long_bars):
    bars, features = long_bars
    close, high, low = bars["close"].to_numpy(), bars["high"], bars["low"]
    moves = np.diff(close, prepend=np.nan)
    up = pd.Series(np.where(moves > 0, moves, 0.0)).rolling(14).sum().to_numpy()
    down = pd.Series(np.where(moves < 0, -moves, 0.0)).rolling(14).sum().to_numpy()
    assert_after_warm_up(features["cmo_14"], 100 * (up - down) / (up + down))
    for n in (5, 10, 20):
        assert_after_warm_up(features[f"roc_{n}"], 100 * (close / np.concatenate([np.full(n, np.nan), close[:-n]]) - 1))
    tsi = 100 * textbook_ema(textbook_ema(moves, 25), 13) / textbook_ema(textbook_ema(np.abs(moves), 25), 13)
    assert_after_warm_up(features["tsi_13_25"], tsi)
    assert_after_warm_up(features["tsi_signal_13"], textbook_ema(tsi, 13))
    lowest, highest = low.rolling(20).min().to_numpy(), high.rolling(20).max().to_numpy()
    assert_after_warm_up(features["dc_width_20"], (highest - lowest) / close)
    assert_after_warm_up(features["dc_position_20"], (close - lowest) / (highest - lowest))


def trailing(values, length: int, summary) -> np.ndarray:
    """summary(window) of each bar's last ``length`` values, NaN before there are ``length``."""
    values = np.asarray(values, dtype=float)
    out = np.full(len(values), np.nan)
    for end in range(length, len(values) + 1):
        out[end - 1] = summary(values[end - length : end])
    return out


def true_range(high, low, close) -> np.ndarray:
    previous = np.concatenate([[np.nan], close[:-1]])
    return np.fmax(high - low, np.fmax(np.abs(high - previous), np.abs(low - previous)))


def test_oscillators_follow_their_authors_definitions(long_bars):
    """Williams' ultimate oscillator, Bill Williams' awesome oscillator, Chande's Aroon (25 bars) and
    stochastic RSI, and the vortex indicator of Botes and Siepman."""
    bars, features = long_bars
    high, low, close = (bars[c].to_numpy() for c in ("high", "low", "close"))
    previous = np.concatenate([[np.nan], close[:-1]])
    buying = close - np.fmin(low, previous)
    ranges = np.fmax(high, previous) - np.fmin(low, previous)
    average = {n: trailing(buying, n, np.sum) / trailing(ranges, n, np.sum) for n in (7, 14, 28)}
    assert_after_warm_up(features["uo_7_14_28"], 100 * (4 * average[7] + 2 * average[14] + average[28]) / 7)

    median = (high + low) / 2
    assert_after_warm_up(
        features["ao_pct"], 100 * (trailing(median, 5, np.mean) - trailing(median, 34, np.mean)) / close
    )

    def bars_since(window, pick):  # the most recent extreme counts, as in Chande's and TA-Lib's Aroon
        return len(window) - 1 - np.flatnonzero(window == pick(window))[-1]

    aroon_up = 100 * (25 - trailing(high, 26, lambda w: bars_since(w, np.max))) / 25
    aroon_down = 100 * (25 - trailing(low, 26, lambda w: bars_since(w, np.min))) / 25
    assert_after_warm_up(features["aroon_osc_25"], aroon_up - aroon_down)

    moves = np.diff(close, prepend=np.nan)
    gains, losses = wilder_average(np.clip(moves, 0, None), 14), wilder_average(np.clip(-moves, 0, None), 14)
    rsi = 100 - 100 * losses / (losses + gains)
    stoch = 100 * (rsi - trailing(rsi, 14, np.min)) / (trailing(rsi, 14, np.max) - trailing(rsi, 14, np.min))
    k = trailing(stoch, 3, np.mean)
    assert_after_warm_up(features["stochrsi_k_14"], k)
    assert_after_warm_up(features["stochrsi_d_14"], trailing(k, 3, np.mean))

    plus_movement = np.abs(high - np.concatenate([[np.nan], low[:-1]]))
    minus_movement = np.abs(low - np.concatenate([[np.nan], high[:-1]]))
    span = trailing(true_range(high, low, close), 14, np.sum)
    expected = (trailing(plus_movement, 14, np.sum) - trailing(minus_movement, 14, np.sum)) / span
    assert_after_warm_up(features["vortex_spread_14"], expected)


def test_keltner_channel_is_an_ema_of_close_with_two_emas_of_true_range(long_bars):
    bars, features = long_bars
    high, low, close = (bars[c].to_numpy() for c in ("high", "low", "close"))
    basis, band = textbook_ema(close, 20), textbook_ema(true_range(high, low, close), 20)
    lower, upper = basis - 2 * band, basis + 2 * band
    assert_after_warm_up(features["kc_width_20"], (upper - lower) / basis)
    assert_after_warm_up(features["kc_position_20"], (close - lower) / (upper - lower))


def test_chaikin_and_elder_volume_indicators_follow_their_definitions(long_bars):
    """Chaikin's money flow and A/D oscillator (EMA 3 - EMA 10 of the A/D line) and Elder's force
    index, each scaled by average volume as the registry says."""
    bars, features = long_bars
    high, low, close, shares = (bars[c].to_numpy() for c in ("high", "low", "close", "volume"))
    flow_volume = ((close - low) - (high - close)) / (high - low) * shares
    assert_after_warm_up(features["cmf_20"], trailing(flow_volume, 20, np.sum) / trailing(shares, 20, np.sum))
    line = np.cumsum(flow_volume)
    oscillator = textbook_ema(line, 3) - textbook_ema(line, 10)
    assert_after_warm_up(features["adosc_3_10"], oscillator / trailing(shares, 10, np.mean), rtol=1e-8)
    force = textbook_ema(np.diff(close, prepend=np.nan) * shares, 13)
    assert_after_warm_up(features["efi_13"], force / (close * trailing(shares, 13, np.mean)))


def test_averages_ratios_and_volume_features_follow_their_definitions(long_bars):
    bars, features = long_bars
    high, low, close, shares = (bars[c].to_numpy() for c in ("high", "low", "close", "volume"))
    returns = np.diff(close, prepend=np.nan) / np.concatenate([[np.nan], close[:-1]])
    sma = {n: trailing(close, n, np.mean) for n in (5, 10, 20, 50, 200)}
    ema = {n: textbook_ema(close, n) for n in (12, 26)}
    expected = {
        **{f"close_to_sma_{n}": close / sma[n] - 1 for n in sma},
        **{f"close_to_ema_{n}": close / ema[n] - 1 for n in ema},
        "sma_50_to_sma_200": sma[50] / sma[200] - 1,
        "ema_12_to_ema_26": ema[12] / ema[26] - 1,
        "sma_20_slope_5": sma[20] / np.concatenate([np.full(5, np.nan), sma[20][:-5]]) - 1,
        "sma_50_slope_10": sma[50] / np.concatenate([np.full(10, np.nan), sma[50][:-10]]) - 1,
        "macd_signal_pct": 100 * textbook_ema(ema[12] - ema[26], 9) / close,
        "macd_hist_pct": 100 * (ema[12] - ema[26] - textbook_ema(ema[12] - ema[26], 9)) / close,
        **{f"volatility_{n}": trailing(returns, n, lambda w: np.std(w, ddof=1)) for n in (5, 20, 60)},
        "parkinson_vol_20": np.sqrt(trailing(np.log(high / low) ** 2, 20, np.mean) / (4 * np.log(2))),
        "hl_range_pct": (high - low) / close,
        "volume_ratio_5": shares / trailing(shares, 5, np.mean),
        "volume_trend_5_20": trailing(shares, 5, np.mean) / trailing(shares, 20, np.mean),
        "volume_zscore_20": (shares - trailing(shares, 20, np.mean)) / trailing(shares, 20, np.std),
        "close_to_vwap_20": close
        / (trailing((high + low + close) / 3 * shares, 20, np.sum) / trailing(shares, 20, np.sum))
        - 1,
        "volume_weighted_return_20": trailing(returns * shares, 20, np.sum) / trailing(shares, 20, np.sum),
        "up_volume_share_20": trailing(np.where(returns > 0, shares, 0.0), 20, np.sum) / trailing(shares, 20, np.sum),
    }
    for name, values in expected.items():
        assert_after_warm_up(features[name], values, rtol=1e-9)


def test_statistical_and_pattern_features_follow_their_definitions(long_bars):
    bars, features = long_bars
    high, low, close = (bars[c].to_numpy() for c in ("high", "low", "close"))
    returns = np.diff(close, prepend=np.nan) / np.concatenate([[np.nan], close[:-1]])

    def lagged(values, bars_back=1):
        return np.concatenate([np.full(bars_back, np.nan), values[:-bars_back]])

    expected = {
        "zscore_20": (close - trailing(close, 20, np.mean)) / trailing(close, 20, np.std),
        "autocorr_1_20": np.array(
            [
                np.corrcoef(returns[t - 19 : t + 1], returns[t - 20 : t])[0, 1] if t >= 21 else np.nan
                for t in range(len(close))
            ]
        ),
        "sharpe_20": trailing(returns, 20, np.mean) / trailing(returns, 20, lambda w: np.std(w, ddof=1)),
        "downside_vol_20": np.sqrt(trailing(np.fmin(returns, 0) ** 2, 20, np.mean)),
        "drawdown_20": close / trailing(close, 20, np.max) - 1,
        "percentile_rank_60": trailing(close, 60, lambda w: (w <= w[-1]).mean()),
        "dist_to_support_50": close / trailing(low, 50, np.min) - 1,
        "dist_to_resistance_20": close / trailing(high, 20, np.max) - 1,
        "range_position_50": (close - trailing(low, 50, np.min))
        / (trailing(high, 50, np.max) - trailing(low, 50, np.min)),
        "breakout_up_20": (close > lagged(trailing(high, 20, np.max))).astype(float),
        "breakout_down_20": (close < lagged(trailing(low, 20, np.min))).astype(float),
        "inside_bar": ((high <= lagged(high)) & (low >= lagged(low))).astype(float),
        "higher_highs_5": trailing(((high > lagged(high)) & (low > lagged(low))).astype(float), 5, np.sum),
        "gap_pct": bars["open"].to_numpy() / lagged(close) - 1,
    }
    for name, values in expected.items():
        assert_after_warm_up(features[name], values, rtol=1e-9)
    entropy = trailing(
        returns,
        20,
        lambda w: (
            -sum(
                p * np.log2(p) for p in (np.mean(w > 0.001), np.mean(np.abs(w) <= 0.001), np.mean(w < -0.001)) if p > 0
            )
        ),
    )
    assert_after_warm_up(features["entropy_20"], entropy, rtol=1e-9)


def test_the_remaining_model_features_follow_their_definitions(long_bars):
    """Wilder's RSI 7/14/21 to 1e-9, Bollinger ratios, returns, the 60-bar moments and the rest."""
    bars, features = long_bars
    high, low, close, shares = (bars[c].to_numpy() for c in ("high", "low", "close", "volume"))
    moves = np.diff(close, prepend=np.nan)

    def back(values, bars_back):
        return np.concatenate([np.full(bars_back, np.nan), values[:-bars_back]])

    def rsi(length):
        gains, losses = (
            wilder_average(np.clip(moves, 0, None), length),
            wilder_average(np.clip(-moves, 0, None), length),
        )
        return 100 - 100 * losses / (gains + losses)

    def moment(window, power):
        deviations = window - window.mean()
        return (deviations**power).mean()

    def skew(window):  # the adjusted Fisher-Pearson coefficient G1
        n = len(window)
        return moment(window, 3) / moment(window, 2) ** 1.5 * np.sqrt(n * (n - 1)) / (n - 2)

    def kurtosis(window):  # the bias-corrected excess kurtosis G2
        n = len(window)
        excess = moment(window, 4) / moment(window, 2) ** 2 - 3
        return ((n + 1) * excess + 6) * (n - 1) / ((n - 2) * (n - 3))

    returns = moves / back(close, 1)
    middle, spread = trailing(close, 20, np.mean), 2 * trailing(close, 20, np.std)
    price_move, rsi_move = np.sign(close - back(close, 14)), np.sign(rsi(14) - back(rsi(14), 14))
    streak = np.zeros(len(close))
    for t in range(2, len(close)):
        direction = np.sign(moves[t])
        streak[t] = streak[t - 1] + direction if direction and np.sign(streak[t - 1]) == direction else direction
    expected = {
        **{f"rsi_{n}": rsi(n) for n in (7, 14, 21)},
        "bb_width_20": 100 * 2 * spread / middle,
        "close_to_bb_upper_20": close / (middle + spread) - 1,
        "close_to_bb_lower_20": close / (middle - spread) - 1,
        "volatility_ratio_5_60": trailing(returns, 5, lambda w: np.std(w, ddof=1))
        / trailing(returns, 60, lambda w: np.std(w, ddof=1)),
        "volume_ratio_20": shares / trailing(shares, 20, np.mean),
        "dist_to_support_20": close / trailing(low, 20, np.min) - 1,
        "dist_to_resistance_50": close / trailing(high, 50, np.max) - 1,
        "rsi_divergence_14": np.where(price_move * rsi_move < 0, rsi_move, 0.0),
        "lower_lows_5": trailing(((high < back(high, 1)) & (low < back(low, 1))).astype(float), 5, np.sum),
        "close_streak": streak,
        **{f"return_{n}": close / back(close, n) - 1 for n in (1, 5, 20, 60)},
        "log_return_1": np.log(close / back(close, 1)),
        "zscore_50": (close - trailing(close, 50, np.mean)) / trailing(close, 50, np.std),
        "autocorr_1_60": np.array(
            [
                np.corrcoef(returns[t - 59 : t + 1], returns[t - 60 : t])[0, 1] if t >= 61 else np.nan
                for t in range(len(close))
            ]
        ),
        **{f"skew_{n}": trailing(returns, n, skew) for n in (20, 60)},
        **{f"kurtosis_{n}": trailing(returns, n, kurtosis) for n in (20, 60)},
    }
    for name, values in expected.items():
        assert_after_warm_up(features[name], values, rtol=1e-9)


@pytest.mark.parametrize("seed", [11, 12])
def test_every_column_pandas_ta_defines_is_pandas_tas_value_after_the_warm_up(seed):
    """The stacked computation against pandas-ta's own code, symbol by symbol."""
    from tests.features.pandas_ta_reference import pandas_ta_columns
    from trading_ml.features.indicators import each_symbol_features

    bars_by_symbol = {"A": random_bars(900, seed=seed), "B": random_bars(700, seed=seed + 1)}
    ours = dict(each_symbol_features(bars_by_symbol, dict.fromkeys(bars_by_symbol, True)))
    compared = 0
    for symbol, bars in bars_by_symbol.items():
        for name, theirs in pandas_ta_columns(bars).items():
            expected = theirs.to_numpy(dtype=float)[AFTER_WARM_UP:]
            got = ours[symbol][name].to_numpy()[AFTER_WARM_UP:]
            np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-9 * np.abs(expected).max(), err_msg=name)
            compared += np.isfinite(expected).sum()
    assert compared > 2 * 40 * 200  # every column compared on real rows


def test_a_flat_stretch_gives_flat_window_values_not_rounding_noise():
    """30 bars of one unchanged price: pandas' running moments and the RSI's decay leave noise of
    1e-14 there, which a z-score or a stochastic would blow up to any value."""
    bars = random_bars(900, seed=21)
    bars.iloc[600:630, :5] = bars["close"].iloc[600]
    features = symbol_features(bars).iloc[625:630]  # the last bars of the stretch: 20-bar windows all flat
    assert features["zscore_20"].isna().all() and features["bb_percent_b_20"].isna().all()
    assert (features[["bb_width_20", "volatility_5", "stoch_k_14", "stochrsi_k_14", "hl_range_pct"]] == 0).all().all()
    assert features["sharpe_20"].isna().all() and (features["vortex_spread_14"] == 0).all()


def test_a_symbol_s_features_do_not_depend_on_the_symbols_stacked_with_it():
    from trading_ml.features.indicators import each_symbol_features

    bars_by_symbol = {"LONG": random_bars(900, seed=3), "SHORT": random_bars(260, seed=4)}
    together = dict(each_symbol_features(bars_by_symbol, {"LONG": True, "SHORT": False}))
    for symbol, bars in bars_by_symbol.items():
        alone = symbol_features(bars, has_volume=symbol == "LONG")
        pd.testing.assert_frame_equal(together[symbol], alone, check_exact=False, rtol=1e-12, atol=1e-12)
    assert "mfi_14" not in together["SHORT"] and together["SHORT"].index.equals(bars_by_symbol["SHORT"].index)
