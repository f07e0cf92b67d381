"""Per-symbol features in the plan's six categories, computed for a group of symbols at once.

The bars of a group are stacked into (bar, symbol) arrays: each symbol's first bar on row 0, its
column padded with NaN after its last bar. Every feature is then one numpy or pandas operation over
the whole array instead of one per symbol, which is what makes the stage fast. Every value at bar t
uses that symbol's bars up to and including t only (the look-ahead test proves it), so neither the
padding nor the other symbols of the group change a symbol's values.

Prices for indicators are the bar's open/high/low/close; returns use the adjusted close, so dividends
do not look like drops. Where a ratio's denominator can be zero, the catalogue says what the value is.
The definitions are pandas-ta's (``tests/features/pandas_ta_reference.py`` computes every column with
pandas-ta's own code and the tests compare them after the warm-up), except where pandas-ta departs
from the author's: the money flow index counts an unchanged typical price as no flow, the Chande
momentum oscillator sums raw moves, and the CCI subtracts before it divides. The exponential averages
start from the mean of their first ``length`` values (as TA-Lib's and pandas-ta's), Wilder's from
their first value; the stage keeps rows only after ``features.warmup_bars``, where the start no
longer shows.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from trading_ml.errors import DataError
from trading_ml.features.catalogue import symbol_feature_names

GROUP_SIZE = 64  # symbols stacked at once: large enough to share the work, small enough for memory
BAR_FIELDS = ("open", "high", "low", "close", "adj_close", "volume")
FLAT = 1e-12  # a spread this small against the level is rounding noise: the window is flat


def symbol_features(bars: pd.DataFrame, has_volume: bool = True, flat_return: float = 0.001) -> pd.DataFrame:
    """All per-symbol features of one bar frame, columns in catalogue order; warm-up rows are NaN."""
    return dict(each_symbol_features({"": bars}, {"": has_volume}, flat_return))[""]


def each_symbol_features(
    bars_by_symbol: dict[str, pd.DataFrame], has_volume: dict[str, bool], flat_return: float = 0.001
) -> Iterator[tuple[str, pd.DataFrame]]:
    """(symbol, :func:`symbol_features`) for every symbol, computed :data:`GROUP_SIZE` symbols at a
    time: only one group's arrays are in memory at once."""
    symbols = list(bars_by_symbol)
    for start in range(0, len(symbols), GROUP_SIZE):
        group = symbols[start : start + GROUP_SIZE]
        cube, names = feature_cube(StackedBars.of([bars_by_symbol[s] for s in group]), flat_return)
        for column, symbol in enumerate(group):
            bars = bars_by_symbol[symbol]
            frame = pd.DataFrame(cube[column, :, : len(bars)].T, index=bars.index, columns=names, copy=False)
            yield symbol, frame if has_volume[symbol] else frame[symbol_feature_names(False)]


@dataclass
class StackedBars:
    """The bar fields of a group of symbols as (bar, symbol) arrays, NaN after each symbol's end."""

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    adj_close: np.ndarray
    volume: np.ndarray
    _derived: dict = field(default_factory=dict, init=False, repr=False)  # series several features share

    def derived(self, key, compute: Callable[[], np.ndarray]) -> np.ndarray:
        if key not in self._derived:
            self._derived[key] = compute()
        return self._derived[key]

    @property
    def returns(self) -> np.ndarray:
        """1-bar returns of the adjusted close."""
        return self.derived("returns", lambda: ratio_change(self.adj_close))

    @property
    def true_range(self) -> np.ndarray:
        return self.derived("true_range", lambda: true_range(self.high, self.low, self.close))

    def lowest(self, length: int) -> np.ndarray:
        """The lowest low of each bar's last ``length`` bars."""
        return self.derived(("lowest", length), lambda: rolling_min(self.low, length))

    def highest(self, length: int) -> np.ndarray:
        """The highest high of each bar's last ``length`` bars."""
        return self.derived(("highest", length), lambda: rolling_max(self.high, length))

    def rsi(self, length: int) -> np.ndarray:
        return self.derived(("rsi", length), lambda: relative_strength(self.close, length))

    @classmethod
    def of(cls, frames: list[pd.DataFrame]) -> StackedBars:
        rows = max((len(frame) for frame in frames), default=0)
        arrays = {}
        for name in BAR_FIELDS:
            array = np.full((rows, len(frames)), np.nan)  # bar-major: a row of every symbol is contiguous
            for column, frame in enumerate(frames):
                array[: len(frame), column] = frame[name].to_numpy(dtype=float)
            arrays[name] = array
        return cls(**arrays)


def feature_cube(bars: StackedBars, flat_return: float) -> tuple[np.ndarray, list[str]]:
    """Every catalogue feature as a (symbol, feature, bar) array (infinities as NaN), and the names."""
    with np.errstate(invalid="ignore", divide="ignore"):
        columns = {
            **trend(bars),
            **momentum(bars),
            **volatility(bars),
            **volume(bars),
            **pattern(bars),
            **statistical(bars, flat_return),
        }
    names = symbol_feature_names(True)
    if set(columns) != set(names):
        raise DataError(f"feature code and the feature catalogue disagree: {sorted(set(columns) ^ set(names))}")
    cube = np.empty((columns["sma_5"].shape[1], len(names), len(columns["sma_5"])))
    for position, name in enumerate(names):
        cube[:, position, :] = columns[name].T
    cube[np.isinf(cube)] = np.nan
    return cube, names


# --- building blocks over (bar, symbol) arrays; time runs down axis 0 --------------------------------


def lag(values: np.ndarray, bars: int = 1) -> np.ndarray:
    """The value ``bars`` rows earlier (NaN for the first rows)."""
    out = np.full_like(values, np.nan)
    out[bars:] = values[:-bars]
    return out


def change(values: np.ndarray, bars: int = 1) -> np.ndarray:
    return values - lag(values, bars)


def ratio_change(values: np.ndarray, bars: int = 1) -> np.ndarray:
    """values / values ``bars`` earlier - 1 (pandas' ``pct_change``)."""
    return values / lag(values, bars) - 1


def rolling_sum(values: np.ndarray, length: int) -> np.ndarray:
    """The sum of each bar's last ``length`` values (NaN while one is missing)."""
    return rolling_reduce(values, length, np.add)


def rolling_mean(values: np.ndarray, length: int) -> np.ndarray:
    return rolling_reduce(values, length, np.add) / length


def rolling_min(values: np.ndarray, length: int) -> np.ndarray:
    return rolling_reduce(values, length, np.minimum)


def rolling_max(values: np.ndarray, length: int) -> np.ndarray:
    return rolling_reduce(values, length, np.maximum)


def rolling_reduce(values: np.ndarray, length: int, combine: np.ufunc) -> np.ndarray:
    """``combine`` (add, minimum, maximum) over each bar's last ``length`` values, NaN while one is
    missing, by doubling: windows of 1, 2, 4, ... bars, each two of the previous, and ``length`` put
    together from them by its binary digits. A window's result depends on its own values only, in an
    order fixed relative to its last bar, never on where the series starts (running totals would);
    it costs O(bars x log length)."""
    result: np.ndarray | None = None
    covered, width, span, remaining = 0, 1, values, length
    while remaining:
        if remaining & 1:
            part = lag(span, covered) if covered else span
            result = part if result is None else combine(result, part)
            covered += width
        remaining >>= 1
        if remaining:
            span = combine(span, lag(span, width))
            width *= 2
    if result is None:
        raise ValueError(f"a rolling window needs at least one bar, not {length}")
    return result


def rolling_percentile_rank(values: np.ndarray, length: int) -> np.ndarray:
    """The value's rank among its last ``length`` values / ``length``, ties at their average rank
    (pandas' ``rolling(...).rank(pct=True)``)."""
    below, equal = np.zeros(values.shape), np.ones(values.shape)
    for back in range(1, length):
        earlier, now = values[:-back], values[back:]
        below[back:] += earlier < now
        equal[back:] += earlier == now
    return _complete((below + (equal + 1) / 2) / length, values, length)


def _complete(result: np.ndarray, values: np.ndarray, length: int) -> np.ndarray:
    """``result`` where the bar's last ``length`` values are all known, else NaN."""
    return np.where(np.isnan(rolling_sum(values, length)), np.nan, result)


def ema(values: np.ndarray, length: int) -> np.ndarray:
    """The exponential average (alpha 2 / (length + 1)), started at the mean of the first ``length``
    known values, as TA-Lib's and pandas-ta's ``ema``."""
    return smoothed(values, 2 / (length + 1), length)


def wilder(values: np.ndarray, length: int, seed_values: int = 1) -> np.ndarray:
    """Wilder's average (alpha 1 / length), started at the mean of the first ``seed_values`` values."""
    return smoothed(values, 1 / length, seed_values)


def smoothed(values: np.ndarray, alpha: float, seed_values: int) -> np.ndarray:
    """s_t = s_(t-1) + alpha (x_t - s_(t-1)) from the row where ``seed_values`` values are known, s
    starting there at their mean. A missing value inside a symbol's bars is stepped over, as pandas'
    ``ewm(adjust=False)`` does (a run without one is one linear filter over every symbol)."""
    known = ~np.isnan(values).all(axis=1)
    first = int(known.argmax()) if known.any() else len(values)
    seed_row = first + seed_values - 1
    out = np.full_like(values, np.nan)
    if seed_row >= len(values):
        return out
    seed, rest = values[first : seed_row + 1].mean(axis=0), values[seed_row + 1 :]
    if _has_gaps(rest):
        seeded = out.copy()
        seeded[seed_row], seeded[seed_row + 1 :] = seed, rest
        return pd.DataFrame(seeded).ewm(alpha=alpha, adjust=False).mean().to_numpy()
    from scipy.signal import lfilter  # here: scipy.signal takes 0.6 s to import, which training and the DAG skip

    out[seed_row] = seed
    out[seed_row + 1 :] = lfilter([alpha], [1.0, alpha - 1.0], rest, axis=0, zi=((1.0 - alpha) * seed)[None, :])[0]
    return out


def _has_gaps(values: np.ndarray) -> bool:
    """Whether a column has a missing value before its last known one (not just padding at its end)."""
    missing = np.isnan(values)
    if not missing.any():
        return False
    trailing = np.flip(np.logical_and.accumulate(np.flip(missing, axis=0), axis=0), axis=0)
    return bool((missing & ~trailing).any())


def non_zero(values: np.ndarray) -> np.ndarray:
    """A range with its zeros replaced by machine epsilon, as pandas-ta's ``non_zero_range``."""
    return np.where(values == 0, np.finfo(float).eps, values)


def rolling_zscore(values: np.ndarray, length: int) -> np.ndarray:
    """(value - its rolling mean) / its rolling population standard deviation, as pandas-ta's zscore with ``ddof=0``."""
    mean, variance = rolling_mean_and_variance(values, length)
    return (values - mean) / np.sqrt(variance)


def central_moments(values: np.ndarray, length: int) -> tuple[int, np.ndarray, np.ndarray, np.ndarray]:
    """(n, m2, m3, m4): the central moments of each bar's last ``length`` values, from their window
    power sums (precise for returns, whose mean is small beside their spread). A flat window (m2
    rounding noise beside the mean square) gives NaN."""
    mean, m2 = rolling_mean_and_variance(values, length)
    cubed = values * values * values
    s3, s4 = rolling_mean(cubed, length), rolling_mean(cubed * values, length)
    m3 = s3 - 3 * mean * (m2 + mean**2) + 2 * mean**3
    m4 = s4 - 4 * mean * s3 + 6 * mean**2 * (m2 + mean**2) - 3 * mean**4
    return length, np.where(m2 > 0, m2, np.nan), m3, m4


def rolling_mean_and_variance(values: np.ndarray, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The mean and population variance of each bar's last ``length`` values, from their power sums;
    0 where the variance is rounding noise beside the mean square (a flat window)."""
    mean, square = rolling_mean(values, length), rolling_mean(values * values, length)
    variance = square - mean * mean
    return mean, np.where(variance <= FLAT * square, 0.0, variance)


def rolling_std(values: np.ndarray, length: int, ddof: int = 1) -> np.ndarray:
    """The standard deviation of each bar's last ``length`` values (sample one by default)."""
    return np.sqrt(rolling_mean_and_variance(values, length)[1] * length / (length - ddof))


def window_skew(moments: tuple) -> np.ndarray:
    """Bias-corrected skewness (G1, what pandas' rolling skew gives) from :func:`central_moments`."""
    n, m2, m3, _ = moments
    return m3 / m2**1.5 * np.sqrt(n * (n - 1)) / (n - 2)


def window_kurtosis(moments: tuple) -> np.ndarray:
    """Bias-corrected excess kurtosis (G2, what pandas' rolling kurt gives) from :func:`central_moments`."""
    n, m2, _, m4 = moments
    excess = m4 / m2**2 - 3
    return ((n + 1) * excess + 6) * (n - 1) / ((n - 2) * (n - 3))


def window_correlation(first: np.ndarray, second: np.ndarray, length: int) -> np.ndarray:
    """The rolling Pearson correlation of two return series, from their window sums."""
    mean_a, variance_a = rolling_mean_and_variance(first, length)
    mean_b, variance_b = rolling_mean_and_variance(second, length)
    covariance = rolling_mean(first * second, length) - mean_a * mean_b
    return covariance / np.sqrt(variance_a * variance_b)


def window_mad(values: np.ndarray, length: int) -> np.ndarray:
    """The mean absolute deviation from the window's mean (pandas-ta's ``mad``), computed per window."""
    mean = rolling_mean(values, length)
    total = np.abs(values - mean)
    for back in range(1, length):
        total[back:] += np.abs(values[:-back] - mean[back:])
    return total / length


def true_range(high: np.ndarray, low: np.ndarray, close: np.ndarray) -> np.ndarray:
    """max(high - low, |high - previous close|, |low - previous close|); high - low on the first bar."""
    previous = lag(close)
    return np.fmax(non_zero(high - low), np.fmax(np.abs(high - previous), np.abs(previous - low)))


def position(close: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Where close sits between two bands (0..1); NaN where they meet."""
    width = upper - lower
    return np.where(width > 0, (close - lower) / width, np.nan)


def flag(condition: np.ndarray, defined_by: np.ndarray) -> np.ndarray:
    """1.0/0.0 where the reference exists, NaN during its warm-up."""
    return np.where(np.isnan(defined_by), np.nan, condition.astype(float))


def share_of_range(part: np.ndarray, bar_range: np.ndarray) -> np.ndarray:
    """part / (high - low); 0 for a bar without range."""
    share = np.where(bar_range > 0, part / bar_range, 0.0)
    return np.where(np.isnan(bar_range), np.nan, share)


# --- the six categories ------------------------------------------------------------------------------


def trend(bars: StackedBars) -> dict[str, np.ndarray]:
    high, low, close = bars.high, bars.low, bars.close
    sma = {n: rolling_mean(close, n) for n in (5, 10, 20, 50, 200)}
    averages = {n: ema(close, n) for n in (12, 26)}
    macd = averages[12] - averages[26]
    signal = ema(macd, 9)
    adx, plus_di, minus_di = directional_movement(bars, 14)
    return {
        **{f"sma_{n}": values for n, values in sma.items()},
        **{f"ema_{n}": values for n, values in averages.items()},
        **{f"close_to_sma_{n}": close / values - 1 for n, values in sma.items()},
        **{f"close_to_ema_{n}": close / values - 1 for n, values in averages.items()},
        "sma_50_to_sma_200": sma[50] / sma[200] - 1,
        "ema_12_to_ema_26": averages[12] / averages[26] - 1,
        "macd_pct": 100 * macd / close,
        "macd_hist_pct": 100 * (macd - signal) / close,
        "macd_signal_pct": 100 * signal / close,
        "adx_14": adx,
        "plus_di_14": plus_di,
        "minus_di_14": minus_di,
        "cci_20": commodity_channel_index(high, low, close, 20),
        "aroon_osc_25": aroon_oscillator(high, low, 25),
        "vortex_spread_14": vortex_spread(bars, 14),
        "sma_20_slope_5": ratio_change(sma[20], 5),
        "sma_50_slope_10": ratio_change(sma[50], 10),
    }


def directional_movement(bars: StackedBars, length: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Wilder's ADX, +DI and -DI: directional moves and the true range smoothed with his average."""
    up, down = change(bars.high), -change(bars.low)
    plus = np.where(np.isnan(up), np.nan, np.where((up > down) & (up > 0), up, 0.0))
    minus = np.where(np.isnan(up), np.nan, np.where((down > up) & (down > 0), down, 0.0))
    average_range = average_true_range(bars.true_range, length, first_bar=False)
    plus_di = 100 * wilder(plus, length) / average_range
    minus_di = 100 * wilder(minus, length) / average_range
    adx = wilder(100 * np.abs(plus_di - minus_di) / (plus_di + minus_di), length)
    return adx, plus_di, minus_di


def average_true_range(ranges: np.ndarray, length: int, first_bar: bool = True) -> np.ndarray:
    """Wilder's ATR of the true ``ranges``, started at the mean of the first ``length`` of them (the
    first bar's, high - low, counted when ``first_bar``)."""
    if not first_bar:
        ranges = ranges.copy()
        ranges[0] = np.nan
    return wilder(ranges, length, seed_values=length)


def commodity_channel_index(high, low, close, length: int) -> np.ndarray:
    """Lambert's CCI: (typical price - its SMA) / (0.015 x its mean absolute deviation). pandas-ta's own
    ``cci`` in 0.4.71b0 divides before subtracting (``tp - sma / (c * mad)``)."""
    typical = (high + low + close) / 3
    return (typical - rolling_mean(typical, length)) / (0.015 * window_mad(typical, length))


def aroon_oscillator(high, low, length: int) -> np.ndarray:
    """Aroon up - Aroon down: 100 x (``length`` - bars since the window's highest high, or lowest low)
    / ``length``, over ``length`` + 1 bars, the most recent extreme counting (as pandas-ta's ``aroon``)."""
    since_high = bars_since_extreme(high, length + 1, np.greater)
    since_low = bars_since_extreme(low, length + 1, np.less)
    return _complete(100.0 * (since_low - since_high) / length, high + low, length + 1)


def bars_since_extreme(values: np.ndarray, length: int, beyond: np.ufunc) -> np.ndarray:
    """Bars since the most extreme of each bar's last ``length`` values (``beyond`` = greater: the
    highest), the most recent one on a tie."""
    best, since = values.copy(), np.zeros(values.shape)
    for back in range(1, length):
        earlier = values[:-back]
        further = beyond(earlier, best[back:])
        best[back:] = np.where(further, earlier, best[back:])
        since[back:] = np.where(further, back, since[back:])
    return since


def vortex_spread(bars: StackedBars, length: int) -> np.ndarray:
    """VI+ - VI- of Botes and Siepman: |high - previous low| and |low - previous high| summed over
    ``length`` bars, each divided by the true range summed over them."""
    span = rolling_sum(bars.true_range, length)
    plus = rolling_sum(np.abs(bars.high - lag(bars.low)), length)
    minus = rolling_sum(np.abs(bars.low - lag(bars.high)), length)
    return (plus - minus) / span


def momentum(bars: StackedBars) -> dict[str, np.ndarray]:
    high, low, close = bars.high, bars.low, bars.close
    lowest, highest = bars.lowest(14), bars.highest(14)
    stoch_k = rolling_mean(stochastic(close, lowest, highest), 3)
    rsi = {n: bars.rsi(n) for n in (7, 14, 21)}
    stochrsi_k = rolling_mean(stochastic(rsi[14], rolling_min(rsi[14], 14), rolling_max(rsi[14], 14)), 3)
    tsi, tsi_signal = true_strength(close, 13, 25, 13)
    median = (high + low) / 2
    return {
        **{f"rsi_{n}": values for n, values in rsi.items()},
        "stoch_k_14": stoch_k,
        "stoch_d_14": rolling_mean(stoch_k, 3),
        "williams_r_14": 100 * ((close - lowest) / (highest - lowest) - 1),
        **{f"roc_{n}": 100 * ratio_change(close, n) for n in (5, 10, 20)},
        "uo_7_14_28": ultimate_oscillator(high, low, close),
        "cmo_14": chande_momentum(close, 14),
        "stochrsi_k_14": stochrsi_k,
        "stochrsi_d_14": rolling_mean(stochrsi_k, 3),
        "tsi_13_25": tsi,
        "tsi_signal_13": tsi_signal,
        "ao_pct": 100 * (rolling_mean(median, 5) - rolling_mean(median, 34)) / close,
        "mfi_14": money_flow_index(high, low, close, bars.volume, 14),
    }


def stochastic(values, lowest, highest) -> np.ndarray:
    """100 x (value - lowest) / (highest - lowest), a flat window giving 0 (as pandas-ta's ``stoch``),
    also when rounding noise is all that moved in it."""
    span = highest - lowest
    flat = span <= FLAT * np.abs(highest)
    return np.where(flat, 0.0 * values, 100 * (values - lowest) / np.where(flat, 1.0, span))


def relative_strength(close, length: int) -> np.ndarray:
    """Wilder's RSI: 100 x average gain / (average gain + average loss), both his averages."""
    moves = change(close)
    gains, losses = wilder(np.clip(moves, 0, None), length), wilder(np.clip(-moves, 0, None), length)
    return 100 * gains / (gains + losses)


def true_strength(close, fast: int, slow: int, signal: int) -> tuple[np.ndarray, np.ndarray]:
    """Blau's TSI: 100 x the double-smoothed move / the double-smoothed absolute move, and its signal."""
    moves = change(close)
    tsi = 100 * ema(ema(moves, slow), fast) / ema(ema(np.abs(moves), slow), fast)
    return tsi, ema(tsi, signal)


def ultimate_oscillator(high, low, close) -> np.ndarray:
    """Williams' ultimate oscillator: buying pressure over the true range, 7, 14 and 28 bars weighted 4:2:1."""
    previous = lag(close)
    floor = np.fmin(low, previous)
    buying, ranges = close - floor, np.fmax(high, previous) - floor
    averages = {n: rolling_sum(buying, n) / rolling_sum(ranges, n) for n in (7, 14, 28)}
    return 100 * (4 * averages[7] + 2 * averages[14] + averages[28]) / 7


def chande_momentum(close, length: int) -> np.ndarray:
    """Chande's CMO: 100 x (sum of up moves - sum of down moves) / (their total) over ``length`` bars.
    pandas-ta's ``cmo`` smooths the moves with Wilder's average instead (up to 18 points apart)."""
    moves = change(close)
    up, down = rolling_sum(np.clip(moves, 0, None), length), rolling_sum(np.clip(-moves, 0, None), length)
    return 100 * (up - down) / (up + down)


def money_flow_index(high, low, close, shares, length: int) -> np.ndarray:
    """The textbook MFI: 100 x positive / (positive + negative) money flow over ``length`` bars, where
    a bar's flow (typical price x volume) is positive when the typical price rose, negative when it
    fell, and neither when it did not change (pandas-ta counts it as negative)."""
    typical = (high + low + close) / 3
    flow, moved = typical * shares, change(typical)
    positive = rolling_sum(np.where(moved > 0, flow, 0.0), length)
    negative = rolling_sum(np.where(moved < 0, flow, 0.0), length)
    known = rolling_sum((~np.isnan(moved)).astype(float), length) == length
    return np.where(known, 100 * positive / (positive + negative), np.nan)


def volatility(bars: StackedBars) -> dict[str, np.ndarray]:
    high, low, close = bars.high, bars.low, bars.close
    returns = bars.returns
    middle, variance = rolling_mean_and_variance(close, 20)
    spread = 2.0 * np.sqrt(variance)
    lower, upper = middle - spread, middle + spread
    basis, band = ema(close, 20), ema(bars.true_range, 20)
    keltner_lower, keltner_upper = basis - 2.0 * band, basis + 2.0 * band
    donchian_lower, donchian_upper = bars.lowest(20), bars.highest(20)
    vol = {n: rolling_std(returns, n) for n in (5, 20, 60)}
    atr = average_true_range(bars.true_range, 14)
    return {
        "bb_lower_20": lower,
        "bb_middle_20": middle,
        "bb_upper_20": upper,
        "bb_width_20": 100 * (upper - lower) / middle,
        "bb_percent_b_20": np.where(upper > lower, (close - lower) / (upper - lower), np.nan),
        "close_to_bb_upper_20": close / upper - 1,
        "close_to_bb_lower_20": close / lower - 1,
        "atr_14": atr,
        "atr_14_pct": 100 * atr / close,
        "kc_lower_20": keltner_lower,
        "kc_upper_20": keltner_upper,
        "kc_width_20": (keltner_upper - keltner_lower) / basis,
        "kc_position_20": position(close, keltner_lower, keltner_upper),
        "dc_lower_20": donchian_lower,
        "dc_upper_20": donchian_upper,
        "dc_width_20": (donchian_upper - donchian_lower) / close,
        "dc_position_20": position(close, donchian_lower, donchian_upper),
        **{f"volatility_{n}": values for n, values in vol.items()},
        "parkinson_vol_20": np.sqrt(rolling_mean(np.log(high / low) ** 2, 20) / (4 * np.log(2))),
        "hl_range_pct": (high - low) / close,
        "volatility_ratio_5_60": vol[5] / vol[60],
    }


def volume(bars: StackedBars) -> dict[str, np.ndarray]:
    """Volume features (computed for every symbol; dropped for instruments without volume). No
    cumulative levels (OBV, the A/D line): their value depends on the bar the data starts at."""
    high, low, close, shares = bars.high, bars.low, bars.close, bars.volume
    traded_20 = rolling_sum(shares, 20)
    average = {n: rolling_mean(shares, n) for n in (5, 10, 13, 20)}
    vwap = rolling_sum((high + low + close) / 3 * shares, 20) / traded_20
    moved = change(close)
    flow = (2 * close - (high + low)) * shares / non_zero(high - low)  # Chaikin's money flow volume
    accumulation = np.cumsum(flow, axis=0)
    return {
        "vwap_20": vwap,
        "close_to_vwap_20": close / vwap - 1,
        "volume_ratio_5": shares / average[5],
        "volume_ratio_20": shares / average[20],
        "volume_trend_5_20": average[5] / average[20],
        "volume_zscore_20": rolling_zscore(shares, 20),
        "obv_change_20": rolling_sum(np.sign(moved) * shares, 20) / traded_20,
        "volume_weighted_return_20": rolling_sum(bars.returns * shares, 20) / traded_20,
        "cmf_20": rolling_sum(flow, 20) / traded_20,
        "adosc_3_10": (ema(accumulation, 3) - ema(accumulation, 10)) / average[10],
        "efi_13": ema(moved * shares, 13) / (close * average[13]),
        "up_volume_share_20": rolling_sum(np.where(moved > 0, shares, 0.0), 20) / traded_20,
    }


def pattern(bars: StackedBars) -> dict[str, np.ndarray]:
    open_, high, low, close = bars.open, bars.high, bars.low, bars.close
    low_20, high_20 = bars.lowest(20), bars.highest(20)
    low_50, high_50 = bars.lowest(50), bars.highest(50)
    previous_high, previous_low = lag(high), lag(low)
    higher = ((high > previous_high) & (low > previous_low)).astype(float)
    lower = ((high < previous_high) & (low < previous_low)).astype(float)
    bar_range = high - low
    rsi = bars.rsi(14)
    price_move, rsi_move = np.sign(change(close, 14)), np.sign(change(rsi, 14))
    prior_high_20, prior_low_20 = lag(high_20), lag(low_20)
    five_back = lag(high, 5)
    return {
        "dist_to_support_20": close / low_20 - 1,
        "dist_to_resistance_20": close / high_20 - 1,
        "dist_to_support_50": close / low_50 - 1,
        "dist_to_resistance_50": close / high_50 - 1,
        "range_position_50": position(close, low_50, high_50),
        "breakout_up_20": flag(close > prior_high_20, prior_high_20),
        "breakout_down_20": flag(close < prior_low_20, prior_low_20),
        "rsi_divergence_14": np.where(np.isnan(rsi_move), np.nan, np.where(price_move * rsi_move < 0, rsi_move, 0.0)),
        "higher_highs_5": np.where(np.isnan(five_back), np.nan, rolling_sum(higher, 5)),
        "lower_lows_5": np.where(np.isnan(five_back), np.nan, rolling_sum(lower, 5)),
        "inside_bar": flag((high <= previous_high) & (low >= previous_low), previous_high),
        "gap_pct": open_ / lag(close) - 1,
        "candle_body": share_of_range(close - open_, bar_range),
        "upper_shadow": share_of_range(high - np.maximum(open_, close), bar_range),
        "lower_shadow": share_of_range(np.minimum(open_, close) - low, bar_range),
        "close_streak": close_streak(close),
    }


def close_streak(close: np.ndarray) -> np.ndarray:
    """+n after n up closes in a row, -n after n down closes, 0 on an unchanged close."""
    direction = np.sign(change(close))
    rows = np.arange(len(close))[:, None]
    starts = np.ones(direction.shape, dtype=bool)
    starts[1:] = direction[1:] != direction[:-1]  # a NaN direction starts a run, as pandas' groupby
    run_start = np.maximum.accumulate(np.where(starts, rows, 0), axis=0)
    return (rows - run_start + 1) * direction


def statistical(bars: StackedBars, flat_return: float) -> dict[str, np.ndarray]:
    price, close = bars.adj_close, bars.close
    returns = bars.returns
    moments = {n: central_moments(returns, n) for n in (20, 60)}
    return {
        **{f"return_{n}": ratio_change(price, n) for n in (1, 5, 20, 60)},
        "log_return_1": change(np.log(price)),
        "zscore_20": rolling_zscore(close, 20),
        "zscore_50": rolling_zscore(close, 50),
        "autocorr_1_20": window_correlation(returns, lag(returns), 20),
        "autocorr_1_60": window_correlation(returns, lag(returns), 60),
        "entropy_20": sign_entropy(returns, 20, flat_return),
        **{f"skew_{n}": window_skew(moments[n]) for n in (20, 60)},
        **{f"kurtosis_{n}": window_kurtosis(moments[n]) for n in (20, 60)},
        "sharpe_20": rolling_mean(returns, 20) / rolling_std(returns, 20),
        "downside_vol_20": np.sqrt(rolling_mean(np.clip(returns, None, 0) ** 2, 20)),
        "drawdown_20": close / rolling_max(close, 20) - 1,
        "percentile_rank_60": rolling_percentile_rank(close, 60),
    }


def sign_entropy(returns: np.ndarray, bars: int, flat: float) -> np.ndarray:
    """Entropy in bits of the share of up (> flat), flat and down (< -flat) returns in a window."""
    shares = [
        rolling_mean((returns > flat).astype(float), bars),
        rolling_mean((np.abs(returns) <= flat).astype(float), bars),
        rolling_mean((returns < -flat).astype(float), bars),
    ]
    entropy = sum(-(p * np.log2(np.where(p > 0, p, 1.0))) for p in shares)
    return np.where(np.isnan(lag(returns, bars - 1)), np.nan, entropy)
