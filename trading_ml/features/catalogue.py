"""Every feature by name, category and meaning: the one list models, reports and tests read.

Windows are counted in bars (a 20-bar average is 20 days on 1d and 20 hours on 1h). A feature is
*scale-free* when it does not depend on the symbol's price or volume level (ratios, percentages,
oscillators), so a model trained across symbols can use it; price-level columns (``sma_50``,
``bb_upper_20``, ``atr_14``) are kept in the per-symbol files for people and plots. Models use
:func:`model_features`.
"""

from __future__ import annotations

from dataclasses import dataclass

from trading_ml.features.cross_section import SECTOR_RETURNS, STANDARDIZED

SYMBOL_CATEGORIES = ("trend", "momentum", "volatility", "volume", "pattern", "statistical")
MARKET_CATEGORY = "market"
CROSS_SECTION_CATEGORY = "cross_section"
TARGET_PREFIX = "target_"


@dataclass(frozen=True)
class Feature:
    name: str
    category: str
    description: str
    scale_free: bool = True
    needs_volume: bool = False  # not computed for instruments without volume (e.g. ^VIX)


def _features(category: str, rows: list[tuple], needs_volume: bool = False) -> list[Feature]:
    return [
        Feature(name, category, text, scale_free=bool(flags[0]) if flags else True, needs_volume=needs_volume)
        for name, text, *flags in rows
    ]


LEVEL = False  # marks a price- or volume-level column (not scale-free)

TREND = _features(
    "trend",
    [
        ("sma_5", "5-bar simple moving average of close", LEVEL),
        ("sma_10", "10-bar simple moving average", LEVEL),
        ("sma_20", "20-bar simple moving average", LEVEL),
        ("sma_50", "50-bar simple moving average", LEVEL),
        ("sma_200", "200-bar simple moving average", LEVEL),
        ("ema_12", "12-bar exponential moving average", LEVEL),
        ("ema_26", "26-bar exponential moving average", LEVEL),
        ("close_to_sma_5", "close / SMA(5) - 1"),
        ("close_to_sma_10", "close / SMA(10) - 1"),
        ("close_to_sma_20", "close / SMA(20) - 1"),
        ("close_to_sma_50", "close / SMA(50) - 1"),
        ("close_to_sma_200", "close / SMA(200) - 1"),
        ("close_to_ema_12", "close / EMA(12) - 1"),
        ("close_to_ema_26", "close / EMA(26) - 1"),
        ("sma_50_to_sma_200", "SMA(50) / SMA(200) - 1: the golden/death cross as a distance"),
        ("ema_12_to_ema_26", "EMA(12) / EMA(26) - 1"),
        ("macd_pct", "MACD(12, 26) line as % of close"),
        ("macd_signal_pct", "MACD signal line (9) as % of close"),
        ("macd_hist_pct", "MACD histogram as % of close"),
        ("adx_14", "average directional index (trend strength, 0-100)"),
        ("plus_di_14", "+DI, upward directional movement"),
        ("minus_di_14", "-DI, downward directional movement"),
        ("cci_20", "commodity channel index (Lambert, 0.015 x mean absolute deviation)"),
        ("aroon_osc_25", "Aroon up - Aroon down over 25 bars"),
        ("vortex_spread_14", "vortex VI+ - VI-"),
        ("sma_20_slope_5", "SMA(20) / SMA(20) five bars ago - 1"),
        ("sma_50_slope_10", "SMA(50) / SMA(50) ten bars ago - 1"),
    ],
)

MOMENTUM = _features(
    "momentum",
    [
        ("rsi_7", "relative strength index, 7 bars (Wilder smoothing)"),
        ("rsi_14", "relative strength index, 14 bars"),
        ("rsi_21", "relative strength index, 21 bars"),
        ("stoch_k_14", "stochastic %K (14, 3)"),
        ("stoch_d_14", "stochastic %D, the 3-bar average of %K"),
        ("williams_r_14", "Williams %R (-100..0)"),
        ("roc_5", "rate of change over 5 bars, %"),
        ("roc_10", "rate of change over 10 bars, %"),
        ("roc_20", "rate of change over 20 bars, %"),
        ("uo_7_14_28", "ultimate oscillator"),
        ("cmo_14", "Chande momentum oscillator"),
        ("stochrsi_k_14", "stochastic RSI %K"),
        ("stochrsi_d_14", "stochastic RSI %D"),
        ("tsi_13_25", "true strength index"),
        ("tsi_signal_13", "true strength index signal line"),
        ("ao_pct", "awesome oscillator (5/34 median-price SMAs) as % of close"),
    ],
) + _features("momentum", [("mfi_14", "money flow index (volume-weighted RSI)")], needs_volume=True)

VOLATILITY = _features(
    "volatility",
    [
        ("bb_upper_20", "Bollinger upper band: SMA(20) + 2 population standard deviations", LEVEL),
        ("bb_middle_20", "Bollinger middle band", LEVEL),
        ("bb_lower_20", "Bollinger lower band", LEVEL),
        ("bb_width_20", "Bollinger bandwidth, % of the middle band"),
        ("bb_percent_b_20", "Bollinger %B: where close sits between the bands"),
        ("close_to_bb_upper_20", "close / upper band - 1"),
        ("close_to_bb_lower_20", "close / lower band - 1"),
        ("atr_14", "average true range (Wilder)", LEVEL),
        ("atr_14_pct", "ATR(14) as % of close"),
        ("kc_upper_20", "Keltner channel upper (EMA 20 ± 2 ATR)", LEVEL),
        ("kc_lower_20", "Keltner channel lower", LEVEL),
        ("kc_width_20", "Keltner width / middle"),
        ("kc_position_20", "(close - lower) / (upper - lower) in the Keltner channel"),
        ("dc_upper_20", "Donchian upper: highest high of 20 bars", LEVEL),
        ("dc_lower_20", "Donchian lower: lowest low of 20 bars", LEVEL),
        ("dc_width_20", "Donchian width / close"),
        ("dc_position_20", "(close - lower) / (upper - lower) in the Donchian channel"),
        ("volatility_5", "standard deviation of 1-bar returns over 5 bars"),
        ("volatility_20", "standard deviation of returns over 20 bars"),
        ("volatility_60", "standard deviation of returns over 60 bars"),
        ("parkinson_vol_20", "Parkinson high-low volatility over 20 bars"),
        ("hl_range_pct", "(high - low) / close of the bar"),
        ("volatility_ratio_5_60", "volatility_5 / volatility_60: volatility regime shifts"),
    ],
)

VOLUME = _features(
    "volume",
    [
        ("vwap_20", "20-bar volume-weighted average of the typical price", LEVEL),
        ("close_to_vwap_20", "close / VWAP(20) - 1"),
        ("volume_ratio_5", "volume / its 5-bar average"),
        ("volume_ratio_20", "volume / its 20-bar average"),
        ("volume_trend_5_20", "5-bar average volume / 20-bar average volume"),
        ("volume_zscore_20", "z-score of volume over 20 bars"),
        (
            "obv_change_20",
            "on-balance volume added over 20 bars (volume signed by the close's move) / volume traded in them",
        ),
        ("volume_weighted_return_20", "volume-weighted mean of the 1-bar returns over 20 bars"),
        ("cmf_20", "Chaikin money flow"),
        ("adosc_3_10", "Chaikin A/D oscillator / 10-bar average volume"),
        ("efi_13", "Elder force index / (close x 13-bar average volume)"),
        ("up_volume_share_20", "share of the last 20 bars' volume traded on up bars"),
    ],
    needs_volume=True,
)

PATTERN = _features(
    "pattern",
    [
        ("dist_to_support_20", "close / lowest low of 20 bars - 1"),
        ("dist_to_resistance_20", "close / highest high of 20 bars - 1"),
        ("dist_to_support_50", "close / lowest low of 50 bars - 1"),
        ("dist_to_resistance_50", "close / highest high of 50 bars - 1"),
        ("range_position_50", "(close - 50-bar low) / (50-bar high - 50-bar low)"),
        ("breakout_up_20", "1 when close is above the previous 20 bars' highest high"),
        ("breakout_down_20", "1 when close is below the previous 20 bars' lowest low"),
        ("rsi_divergence_14", "+1 bullish (price down, RSI up over 14 bars), -1 bearish, else 0"),
        ("higher_highs_5", "bars of the last 5 with a higher high and a higher low"),
        ("lower_lows_5", "bars of the last 5 with a lower high and a lower low"),
        ("inside_bar", "1 when the bar's range lies inside the previous bar's"),
        ("gap_pct", "open / previous close - 1"),
        ("candle_body", "(close - open) / (high - low); 0 for a bar without range"),
        ("upper_shadow", "(high - max(open, close)) / (high - low)"),
        ("lower_shadow", "(min(open, close) - low) / (high - low)"),
        ("close_streak", "consecutive up closes (positive) or down closes (negative)"),
    ],
)

STATISTICAL = _features(
    "statistical",
    [
        ("return_1", "1-bar return of the adjusted close"),
        ("return_5", "5-bar return"),
        ("return_20", "20-bar return"),
        ("return_60", "60-bar return"),
        ("log_return_1", "1-bar log return"),
        ("zscore_20", "z-score of close over 20 bars"),
        ("zscore_50", "z-score of close over 50 bars"),
        ("autocorr_1_20", "lag-1 autocorrelation of returns over 20 bars"),
        ("autocorr_1_60", "lag-1 autocorrelation of returns over 60 bars"),
        ("entropy_20", "Shannon entropy (bits) of up / flat / down returns over 20 bars"),
        ("skew_20", "skewness of returns over 20 bars"),
        ("skew_60", "skewness of returns over 60 bars"),
        ("kurtosis_20", "excess kurtosis of returns over 20 bars"),
        ("kurtosis_60", "excess kurtosis of returns over 60 bars"),
        ("sharpe_20", "mean / standard deviation of returns over 20 bars"),
        ("downside_vol_20", "root mean square of negative returns over 20 bars"),
        ("drawdown_20", "close / highest close of 20 bars - 1"),
        ("percentile_rank_60", "rank of close among the last 60 closes (0..1)"),
    ],
)

MARKET = _features(
    MARKET_CATEGORY,
    [
        ("vix_level", "the volatility index's close"),
        ("vix_change_1", "its 1-bar change, in points"),
        ("vix_change_5", "its 5-bar change, %"),
        ("vix_to_sma_20", "VIX / its 20-bar average - 1"),
        ("breadth_above_sma_50", "share of the universe's equities closing above their 50-bar average"),
        ("advance_decline", "(advancers - decliners) / equities, this bar"),
        ("advance_decline_10", "advance_decline averaged over 10 bars"),
        ("benchmark_return_1", "the benchmark index's 1-bar return"),
        ("benchmark_return_5", "its 5-bar return"),
        ("benchmark_return_20", "its 20-bar return"),
        ("benchmark_close_to_sma_200", "benchmark close / its SMA(200) - 1"),
        ("benchmark_volatility_20", "standard deviation of the benchmark's returns over 20 bars"),
        ("relative_strength_20", "the symbol's 20-bar return - the benchmark's"),
    ],
)

CROSS_SECTION = _features(
    CROSS_SECTION_CATEGORY,
    [(f"cs_z_{name}", f"{name} standardized across the symbols of the date (z-score)") for name in STANDARDIZED]
    + [(f"sector_relative_{name}", f"{name} minus its sector's mean that date") for name in SECTOR_RETURNS],
)

SYMBOL_FEATURES = TREND + MOMENTUM + VOLATILITY + VOLUME + PATTERN + STATISTICAL
FEATURES = {feature.name: feature for feature in SYMBOL_FEATURES + MARKET + CROSS_SECTION}

MARKET_INPUTS = {  # which market input each market feature needs
    "vix": [f.name for f in MARKET if f.name.startswith("vix_")],
    "breadth": ["breadth_above_sma_50", "advance_decline", "advance_decline_10"],
    "benchmark": [f.name for f in MARKET if f.name.startswith("benchmark_")] + ["relative_strength_20"],
}


def symbol_feature_names(has_volume: bool = True) -> list[str]:
    """Per-symbol feature columns, in registry order; volume features only for instruments with volume."""
    return [f.name for f in SYMBOL_FEATURES if has_volume or not f.needs_volume]


def model_features(names: list[str]) -> list[str]:
    """The scale-free subset of ``names``, in order: what models trained across symbols use."""
    return [name for name in names if FEATURES[name].scale_free]


# Model features the training table keeps in float64: GARCH, HAR-RV, the EWMA anchor and the
# baselines compute with them in float64. Every other model feature is stored as float32, what the
# models that read it (XGBoost, the LSTMs, the forest) convert it to anyway.
FLOAT64_FEATURES = ("return_1", "hl_range_pct")


def float32_features(names: list[str]) -> list[str]:
    """The model features among ``names`` the training table stores as float32."""
    return [name for name in model_features(names) if name not in FLOAT64_FEATURES]


def describe(names: list[str]) -> list[dict]:
    """Name, category, description and scale-free flag of each feature, for manifests and reports."""
    return [
        {
            "name": n,
            "category": FEATURES[n].category,
            "description": FEATURES[n].description,
            "scale_free": FEATURES[n].scale_free,
        }
        for n in names
    ]
