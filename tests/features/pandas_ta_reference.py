"""The per-symbol features that pandas-ta computes, computed with pandas-ta's own code, one symbol at
a time: the reference the stacked computation in ``trading_ml.features.indicators`` is held to.

Only the columns whose definition is pandas-ta's are here; the money flow index, the Chande momentum
oscillator and the CCI follow their authors instead and are checked against textbook code in
``test_indicators.py``, as are the features pandas-ta has no function for.
"""

from __future__ import annotations

import pandas as pd
import pandas_ta as ta


def pandas_ta_columns(bars: pd.DataFrame) -> dict[str, pd.Series]:
    """Feature name -> pandas-ta's value for one symbol's bars, without TA-Lib (``conftest.py`` switches
    it off: pandas-ta otherwise uses it wherever it is importable, and some values then differ)."""
    high, low, close, shares = bars["high"], bars["low"], bars["close"], bars["volume"]
    sma = {n: ta.sma(close, n, talib=False) for n in (5, 10, 20, 50, 200)}
    ema = {n: ta.ema(close, n, talib=False) for n in (12, 26)}
    macd = ta.macd(close, fast=12, slow=26, signal=9, talib=False)
    adx = ta.adx(high, low, close, 14, talib=False)
    vortex = ta.vortex(high, low, close, 14)
    stoch = ta.stoch(high, low, close, k=14, d=3, smooth_k=3, talib=False)
    stochrsi = ta.stochrsi(close, length=14, rsi_length=14, k=3, d=3, talib=False)
    tsi = ta.tsi(close, fast=13, slow=25, signal=13)
    bands = ta.bbands(close, 20, 2.0, 2.0, ddof=0, talib=False)
    keltner = ta.kc(high, low, close, length=20, scalar=2.0)
    donchian = ta.donchian(high, low, lower_length=20, upper_length=20)
    atr = ta.atr(high, low, close, 14, talib=False)
    average = {n: shares.rolling(n).mean() for n in (10, 13)}
    return {
        **{f"sma_{n}": values for n, values in sma.items()},
        **{f"ema_{n}": values for n, values in ema.items()},
        "macd_pct": 100 * macd.iloc[:, 0] / close,
        "macd_hist_pct": 100 * macd.iloc[:, 1] / close,
        "macd_signal_pct": 100 * macd.iloc[:, 2] / close,
        "adx_14": adx.iloc[:, 0],
        "plus_di_14": adx.iloc[:, -2],
        "minus_di_14": adx.iloc[:, -1],
        "vortex_spread_14": vortex.iloc[:, 0] - vortex.iloc[:, 1],
        **{f"rsi_{n}": ta.rsi(close, n, talib=False) for n in (7, 14, 21)},
        "stoch_k_14": stoch.iloc[:, 0],
        "stoch_d_14": stoch.iloc[:, 1],
        "williams_r_14": ta.willr(high, low, close, 14, talib=False),
        **{f"roc_{n}": ta.roc(close, n, talib=False) for n in (5, 10, 20)},
        "uo_7_14_28": ta.uo(high, low, close, 7, 14, 28, talib=False),
        "stochrsi_k_14": stochrsi.iloc[:, 0],
        "stochrsi_d_14": stochrsi.iloc[:, 1],
        "tsi_13_25": tsi.iloc[:, 0],
        "tsi_signal_13": tsi.iloc[:, 1],
        "ao_pct": 100 * ta.ao(high, low, 5, 34) / close,
        "bb_lower_20": bands.iloc[:, 0],
        "bb_middle_20": bands.iloc[:, 1],
        "bb_upper_20": bands.iloc[:, 2],
        "bb_width_20": bands.iloc[:, 3],
        "bb_percent_b_20": bands.iloc[:, 4],
        "atr_14": atr,
        "kc_lower_20": keltner.iloc[:, 0],
        "kc_upper_20": keltner.iloc[:, 2],
        "dc_lower_20": donchian.iloc[:, 0],
        "dc_upper_20": donchian.iloc[:, 2],
        "zscore_20": ta.zscore(close, 20, ddof=0, talib=False),
        "cmf_20": ta.cmf(high, low, close, shares, length=20),
        "adosc_3_10": ta.adosc(high, low, close, shares, fast=3, slow=10, talib=False) / average[10],
        "efi_13": ta.efi(close, shares, 13) / (close * average[13]),
        "skew_20": ta.skew(bars["adj_close"].pct_change(), 20),
        "kurtosis_60": ta.kurtosis(bars["adj_close"].pct_change(), 60),
    }
