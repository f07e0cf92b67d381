"""Per-symbol features in the plan's six categories, computed with pandas-ta from one bar frame.

Every value at bar t uses bars up to and including t only (the look-ahead test proves it). Prices
for indicators are the bar's open/high/low/close; returns use the adjusted close, so dividends do not
look like drops. Where a ratio's denominator can be zero, the catalogue says what the value is.

pandas-ta switches to TA-Lib, silently, whenever ``talib`` is importable, and some TA-Lib functions
differ (its +DI / -DI are raw directional movement in price units). :func:`symbol_features` pins
pandas-ta to its own code paths, so installing TA-Lib changes nothing. The money flow index and
the Chande momentum oscillator are the textbook ones (:func:`money_flow_index`,
:func:`chande_momentum`): pandas-ta counts an unchanged typical price as negative flow, and smooths
the CMO's moves with Wilder's average.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pandas_ta as ta

from trading_ml.errors import DataError
from trading_ml.features.catalogue import symbol_feature_names


def symbol_features(bars: pd.DataFrame, has_volume: bool = True, flat_return: float = 0.001) -> pd.DataFrame:
    """All per-symbol features of one bar frame, columns in catalogue order; warm-up rows are NaN."""
    use_pandas_ta_code()
    parts = [trend(bars), momentum(bars, has_volume), volatility(bars), pattern(bars), statistical(bars, flat_return)]
    if has_volume:
        parts.append(volume(bars))
    columns = {name: values for part in parts for name, values in part.items()}
    expected = symbol_feature_names(has_volume)
    if set(columns) != set(expected):
        raise DataError(f"feature code and the feature catalogue disagree: {sorted(set(columns) ^ set(expected))}")
    frame = pd.DataFrame({name: _float(columns[name], bars.index) for name in expected}, index=bars.index)
    return frame.replace([np.inf, -np.inf], np.nan)


def use_pandas_ta_code() -> None:
    """Make pandas-ta run its own implementations even where TA-Lib is installed: it asks
    ``Imports["talib"]`` before every TA-Lib call, including the ones its indicators make inside."""
    ta.Imports["talib"] = False


def money_flow_index(high: pd.Series, low: pd.Series, close: pd.Series, volume: pd.Series, length: int) -> pd.Series:
    """The textbook MFI: 100 x positive / (positive + negative) money flow over ``length`` bars, where
    a bar's flow (typical price x volume) is positive when the typical price rose, negative when it
    fell, and neither when it did not change."""
    typical = (high + low + close) / 3
    flow, change = typical * volume, typical.diff()
    positive = flow.where(change > 0, 0.0).rolling(length).sum()
    negative = flow.where(change < 0, 0.0).rolling(length).sum()
    return (100 * positive / (positive + negative)).where(change.notna().rolling(length).sum() == length)


def windows(values: pd.Series, length: int) -> np.ndarray:
    """Each row's last ``length`` values (NaN-padded at the start), one row per bar."""
    padded = np.concatenate([np.full(length - 1, np.nan), values.to_numpy(dtype=float)])
    return np.lib.stride_tricks.sliding_window_view(padded, length)


def window_std(values: pd.Series, length: int, ddof: int = 1) -> pd.Series:
    """The rolling standard deviation computed afresh in every window. pandas' rolling moments update
    running sums, so their last digits depend on where the series starts; these do not."""
    return pd.Series(windows(values, length).std(axis=1, ddof=ddof), index=values.index)


def window_mean(values: pd.Series, length: int) -> pd.Series:
    return pd.Series(windows(values, length).mean(axis=1), index=values.index)


def window_zscore(values: pd.Series, length: int) -> pd.Series:
    """(value - its rolling mean) / its rolling population standard deviation, as pandas-ta's zscore."""
    return (values - window_mean(values, length)) / window_std(values, length, ddof=0)


def chande_momentum(close: pd.Series, length: int) -> pd.Series:
    """Chande's CMO: 100 x (sum of up moves - sum of down moves) / (their total) over ``length`` bars.
    pandas-ta's ``cmo`` smooths the moves with Wilder's average instead (up to 18 points apart)."""
    moves = close.diff()
    up, down = windows(moves.clip(lower=0), length).sum(axis=1), windows((-moves).clip(lower=0), length).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.Series(100 * (up - down) / (up + down), index=close.index)


def trend(bars: pd.DataFrame) -> dict[str, pd.Series]:
    high, low, close = bars["high"], bars["low"], bars["close"]
    sma = {n: _series(ta.sma(close, n), close.index) for n in (5, 10, 20, 50, 200)}
    ema = {n: _series(ta.ema(close, n), close.index) for n in (12, 26)}
    macd = _frame(ta.macd(close, fast=12, slow=26, signal=9), bars.index, 3)
    adx = _frame(ta.adx(high, low, close, 14), bars.index, 4)
    vortex = _frame(ta.vortex(high, low, close, 14), bars.index, 2)
    return {
        **{f"sma_{n}": values for n, values in sma.items()},
        **{f"ema_{n}": values for n, values in ema.items()},
        **{f"close_to_sma_{n}": close / values - 1 for n, values in sma.items()},
        **{f"close_to_ema_{n}": close / values - 1 for n, values in ema.items()},
        "sma_50_to_sma_200": sma[50] / sma[200] - 1,
        "ema_12_to_ema_26": ema[12] / ema[26] - 1,
        "macd_pct": 100 * macd.iloc[:, 0] / close,
        "macd_hist_pct": 100 * macd.iloc[:, 1] / close,
        "macd_signal_pct": 100 * macd.iloc[:, 2] / close,
        "adx_14": adx.iloc[:, 0],
        "plus_di_14": adx.iloc[:, -2],
        "minus_di_14": adx.iloc[:, -1],
        "cci_20": commodity_channel_index(high, low, close, 20),
        "aroon_osc_25": aroon_oscillator(high, low, 25),
        "vortex_spread_14": vortex.iloc[:, 0] - vortex.iloc[:, 1],
        "sma_20_slope_5": sma[20] / sma[20].shift(5) - 1,
        "sma_50_slope_10": sma[50] / sma[50].shift(10) - 1,
    }


def momentum(bars: pd.DataFrame, has_volume: bool) -> dict[str, pd.Series]:
    high, low, close = bars["high"], bars["low"], bars["close"]
    stoch = _frame(ta.stoch(high, low, close, k=14, d=3, smooth_k=3), bars.index, 3)
    stochrsi = _frame(ta.stochrsi(close, length=14, rsi_length=14, k=3, d=3), bars.index, 2)
    tsi = _frame(ta.tsi(close, fast=13, slow=25, signal=13), bars.index, 2)
    features = {
        **{f"rsi_{n}": _series(ta.rsi(close, n), close.index) for n in (7, 14, 21)},
        "stoch_k_14": stoch.iloc[:, 0],
        "stoch_d_14": stoch.iloc[:, 1],
        "williams_r_14": _series(ta.willr(high, low, close, 14), close.index),
        **{f"roc_{n}": _series(ta.roc(close, n), close.index) for n in (5, 10, 20)},
        "uo_7_14_28": _series(ta.uo(high, low, close, 7, 14, 28), close.index),
        "cmo_14": chande_momentum(close, 14),
        "stochrsi_k_14": stochrsi.iloc[:, 0],
        "stochrsi_d_14": stochrsi.iloc[:, 1],
        "tsi_13_25": tsi.iloc[:, 0],
        "tsi_signal_13": tsi.iloc[:, 1],
        "ao_pct": 100 * _series(ta.ao(high, low, 5, 34), bars.index) / close,
    }
    if has_volume:
        features["mfi_14"] = money_flow_index(high, low, close, bars["volume"], 14)
    return features


def volatility(bars: pd.DataFrame) -> dict[str, pd.Series]:
    high, low, close = bars["high"], bars["low"], bars["close"]
    returns = bars["adj_close"].pct_change()
    bands = bollinger(close, 20, 2.0)
    keltner = _frame(ta.kc(high, low, close, length=20, scalar=2.0), bars.index, 3)
    donchian = _frame(ta.donchian(high, low, lower_length=20, upper_length=20), bars.index, 3)
    vol = {n: window_std(returns, n) for n in (5, 20, 60)}
    atr = _series(ta.atr(high, low, close, 14), close.index)
    return {
        "bb_lower_20": bands.iloc[:, 0],
        "bb_middle_20": bands.iloc[:, 1],
        "bb_upper_20": bands.iloc[:, 2],
        "bb_width_20": bands.iloc[:, 3],
        "bb_percent_b_20": bands.iloc[:, 4],
        "close_to_bb_upper_20": close / bands.iloc[:, 2] - 1,
        "close_to_bb_lower_20": close / bands.iloc[:, 0] - 1,
        "atr_14": atr,
        "atr_14_pct": 100 * atr / close,  # ta.natr would smooth with an EMA, not Wilder's average
        "kc_lower_20": keltner.iloc[:, 0],
        "kc_upper_20": keltner.iloc[:, 2],
        "kc_width_20": (keltner.iloc[:, 2] - keltner.iloc[:, 0]) / keltner.iloc[:, 1],
        "kc_position_20": _position(close, keltner.iloc[:, 0], keltner.iloc[:, 2]),
        "dc_lower_20": donchian.iloc[:, 0],
        "dc_upper_20": donchian.iloc[:, 2],
        "dc_width_20": (donchian.iloc[:, 2] - donchian.iloc[:, 0]) / close,
        "dc_position_20": _position(close, donchian.iloc[:, 0], donchian.iloc[:, 2]),
        **{f"volatility_{n}": values for n, values in vol.items()},
        "parkinson_vol_20": np.sqrt((np.log(high / low) ** 2).rolling(20).mean() / (4 * np.log(2))),
        "hl_range_pct": (high - low) / close,
        "volatility_ratio_5_60": vol[5] / vol[60],
    }


def bollinger(close: pd.Series, length: int, width: float) -> pd.DataFrame:
    """pandas-ta's bbands (lower, middle, upper, bandwidth in % of the middle, %B) from exact window
    moments (population standard deviation)."""
    middle, spread = window_mean(close, length), width * window_std(close, length, ddof=0)
    lower, upper = middle - spread, middle + spread
    return pd.DataFrame(
        {
            0: lower,
            1: middle,
            2: upper,
            3: 100 * (upper - lower) / middle,
            4: (close - lower) / (upper - lower).where(upper > lower),
        },
        index=close.index,
    )


def volume(bars: pd.DataFrame) -> dict[str, pd.Series]:
    high, low, close, shares = bars["high"], bars["low"], bars["close"], bars["volume"]
    traded_20 = shares.rolling(20).sum()
    average = {n: shares.rolling(n).mean() for n in (5, 10, 13, 20)}
    typical = (high + low + close) / 3
    vwap = (typical * shares).rolling(20).sum() / traded_20
    up_volume = shares.where(close.diff() > 0, 0.0).rolling(20).sum()
    # No cumulative levels (OBV, the A/D line): their value depends on the bar the data starts at.
    return {
        "vwap_20": vwap,
        "close_to_vwap_20": close / vwap - 1,
        "volume_ratio_5": shares / average[5],
        "volume_ratio_20": shares / average[20],
        "volume_trend_5_20": average[5] / average[20],
        "volume_zscore_20": window_zscore(shares, 20),
        "obv_change_20": (np.sign(close.diff()) * shares).rolling(20).sum() / traded_20,
        "volume_weighted_return_20": (bars["adj_close"].pct_change() * shares).rolling(20).sum() / traded_20,
        "cmf_20": _series(ta.cmf(high, low, close, shares, length=20), close.index),
        "adosc_3_10": _series(ta.adosc(high, low, close, shares, fast=3, slow=10), bars.index) / average[10],
        "efi_13": _series(ta.efi(close, shares, 13), bars.index) / (close * average[13]),
        "up_volume_share_20": up_volume / traded_20,
    }


def pattern(bars: pd.DataFrame) -> dict[str, pd.Series]:
    open_, high, low, close = bars["open"], bars["high"], bars["low"], bars["close"]
    low_20, high_20 = low.rolling(20).min(), high.rolling(20).max()
    low_50, high_50 = low.rolling(50).min(), high.rolling(50).max()
    higher = (high > high.shift()) & (low > low.shift())
    lower = (high < high.shift()) & (low < low.shift())
    bar_range = high - low
    rsi = _series(ta.rsi(close, 14), bars.index)
    price_move, rsi_move = np.sign(close.diff(14)), np.sign(rsi.diff(14))
    return {
        "dist_to_support_20": close / low_20 - 1,
        "dist_to_resistance_20": close / high_20 - 1,
        "dist_to_support_50": close / low_50 - 1,
        "dist_to_resistance_50": close / high_50 - 1,
        "range_position_50": _position(close, low_50, high_50),
        "breakout_up_20": _flag(close > high.shift().rolling(20).max(), high.shift().rolling(20).max()),
        "breakout_down_20": _flag(close < low.shift().rolling(20).min(), low.shift().rolling(20).min()),
        "rsi_divergence_14": rsi_move.where(price_move * rsi_move < 0, 0.0).where(rsi_move.notna()),
        "higher_highs_5": higher.astype(float).rolling(5).sum().where(high.shift(5).notna()),
        "lower_lows_5": lower.astype(float).rolling(5).sum().where(high.shift(5).notna()),
        "inside_bar": _flag((high <= high.shift()) & (low >= low.shift()), high.shift()),
        "gap_pct": open_ / close.shift() - 1,
        "candle_body": _share_of_range(close - open_, bar_range),
        "upper_shadow": _share_of_range(high - np.maximum(open_, close), bar_range),
        "lower_shadow": _share_of_range(np.minimum(open_, close) - low, bar_range),
        "close_streak": _streak(close),
    }


def statistical(bars: pd.DataFrame, flat_return: float) -> dict[str, pd.Series]:
    price = bars["adj_close"]
    returns = price.pct_change()
    lagged = returns.shift()
    moments = {n: central_moments(windows(returns, n)) for n in (20, 60)}
    return {
        **{f"return_{n}": price.pct_change(n) for n in (1, 5, 20, 60)},
        "log_return_1": np.log(price).diff(),
        "zscore_20": window_zscore(bars["close"], 20),
        "zscore_50": window_zscore(bars["close"], 50),
        "autocorr_1_20": window_correlation(returns, lagged, 20),
        "autocorr_1_60": window_correlation(returns, lagged, 60),
        "entropy_20": _sign_entropy(returns, 20, flat_return),
        **{f"skew_{n}": window_skew(moments[n], bars.index) for n in (20, 60)},
        **{f"kurtosis_{n}": window_kurtosis(moments[n], bars.index) for n in (20, 60)},
        "sharpe_20": window_mean(returns, 20) / window_std(returns, 20),
        "downside_vol_20": np.sqrt((returns.clip(upper=0) ** 2).rolling(20).mean()),
        "drawdown_20": bars["close"] / bars["close"].rolling(20).max() - 1,
        "percentile_rank_60": bars["close"].rolling(60).rank(pct=True),
    }


def window_correlation(first: pd.Series, second: pd.Series, length: int) -> pd.Series:
    """The rolling Pearson correlation, computed afresh in every window."""
    a, b = windows(first, length), windows(second, length)
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        values = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return pd.Series(values, index=first.index)


def window_skew(moments: tuple, index: pd.Index) -> pd.Series:
    """Bias-corrected skewness (G1, what pandas' rolling skew gives) of each window row, from its
    :func:`central_moments`."""
    n, m2, m3, _ = moments
    with np.errstate(invalid="ignore", divide="ignore"):
        return pd.Series(m3 / m2**1.5 * np.sqrt(n * (n - 1)) / (n - 2), index=index)


def window_kurtosis(moments: tuple, index: pd.Index) -> pd.Series:
    """Bias-corrected excess kurtosis (G2, what pandas' rolling kurt gives) of each window row, from
    its :func:`central_moments`."""
    n, m2, _, m4 = moments
    with np.errstate(invalid="ignore", divide="ignore"):
        excess = m4 / m2**2 - 3
        return pd.Series(((n + 1) * excess + 6) * (n - 1) / ((n - 2) * (n - 3)), index=index)


def central_moments(values: np.ndarray) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(n, m2, m3, m4) of each row, NaN for a row with a NaN; m2 = 0 (a flat window) gives NaN moments."""
    deviations = values - values.mean(axis=1, keepdims=True)
    squared = deviations * deviations
    m2 = squared.mean(axis=1)
    m2 = np.where(m2 > 0, m2, np.nan)
    return values.shape[1], m2, (squared * deviations).mean(axis=1), (squared * squared).mean(axis=1)


def aroon_oscillator(high: pd.Series, low: pd.Series, length: int) -> pd.Series:
    """Aroon up - Aroon down: 100 x (``length`` - bars since the window's highest high, or lowest low)
    / ``length``, over ``length`` + 1 bars, the most recent extreme counting (as pandas-ta's ``aroon``)."""
    since_high = windows(high, length + 1)[:, ::-1].argmax(axis=1)
    since_low = windows(low, length + 1)[:, ::-1].argmin(axis=1)
    oscillator = 100.0 * (since_low - since_high) / length
    complete = high.notna().rolling(length + 1).sum().eq(length + 1) & low.notna().rolling(length + 1).sum().eq(
        length + 1
    )
    return pd.Series(oscillator, index=high.index).where(complete.to_numpy())


def window_mad(values: pd.Series, length: int) -> pd.Series:
    """The mean absolute deviation from the window's mean (pandas-ta's ``mad``), computed per window."""
    rows = windows(values, length)
    return pd.Series(np.abs(rows - rows.mean(axis=1, keepdims=True)).mean(axis=1), index=values.index)


def commodity_channel_index(high: pd.Series, low: pd.Series, close: pd.Series, length: int) -> pd.Series:
    """Lambert's CCI: (typical price - its SMA) / (0.015 x its mean absolute deviation).

    Built from pandas-ta's parts: its own ``ta.cci`` in 0.4.71b0 divides before subtracting
    (``tp - sma / (c * mad)``), which gives values in the thousands.
    """
    typical = _series(ta.hlc3(high, low, close), close.index)
    return (typical - _series(ta.sma(typical, length), close.index)) / (0.015 * window_mad(typical, length))


def _sign_entropy(returns: pd.Series, bars: int, flat: float) -> pd.Series:
    """Entropy in bits of the share of up (> flat), flat and down (< -flat) returns in a window."""
    shares = [
        (returns > flat).astype(float).rolling(bars).mean(),
        (returns.abs() <= flat).astype(float).rolling(bars).mean(),
        (returns < -flat).astype(float).rolling(bars).mean(),
    ]
    entropy = sum(-(p * np.log2(p.where(p > 0, 1.0))) for p in shares)
    return entropy.where(returns.shift(bars - 1).notna())


def _streak(close: pd.Series) -> pd.Series:
    """+n after n up closes in a row, -n after n down closes, 0 on an unchanged close."""
    direction = np.sign(close.diff())
    run_id = (direction != direction.shift()).cumsum()
    return (direction.groupby(run_id).cumcount() + 1) * direction


def _position(close: pd.Series, lower: pd.Series, upper: pd.Series) -> pd.Series:
    width = upper - lower
    return ((close - lower) / width).where(width > 0)


def _share_of_range(part: pd.Series, bar_range: pd.Series) -> pd.Series:
    return (part / bar_range.where(bar_range > 0)).fillna(0.0).where(bar_range.notna())


def _flag(condition: pd.Series, defined_by: pd.Series) -> pd.Series:
    """1.0/0.0 where the reference exists, NaN during its warm-up."""
    return condition.astype(float).where(defined_by.notna())


def _float(values, index: pd.Index) -> pd.Series:
    return _series(values, index).astype("float64")


def _series(values, index: pd.Index) -> pd.Series:
    """pandas-ta returns None when the history is shorter than the window: that is all NaN."""
    if values is None:
        return pd.Series(np.nan, index=index)
    return values


def _frame(values, index: pd.Index, width: int) -> pd.DataFrame:
    if values is None:
        return pd.DataFrame(np.nan, index=index, columns=range(width))
    return values
