"""A seeded simulator of the whole universe that behaves like a market.

What it models, and why:
- a hidden regime chain (bull / bear / sideways / high-vol) that sets the market's drift and
  volatility, so regime models have something real to find;
- GARCH(1,1) volatility clustering in the market factor, so volatility models can beat naive;
- sector factors, so equities of one sector move together; India's indices follow a factor of their
  own loosely tied to the US market;
- volume that rises with the size of the move; a VIX-like index that tracks the market's
  conditional volatility;
- exchange calendars (sessions, holidays, trading hours) for daily and hourly bars; hourly bars
  aggregate exactly to the daily bar;
- a planted, known signal: a short-term reversal of each symbol's own (idiosyncratic) return over
  the last week, of strength ``signal_strength``: the correlation of the planted expected return
  with the symbol's own next-day move, about its information coefficient (0 gives none). The models
  see total returns (market and sector included), so what they can recover is somewhat lower.

``market="random_walk"`` is the null market: no regimes, constant volatility (no clustering), the
same factors and volume model; with ``signal_strength`` 0 nothing in it is predictable, so no model
of any task should be promoted on it. ``market="garch"`` has no regimes and no drift, only the
market's GARCH(1,1) clustering (alpha 0.10, beta 0.85: a shock's effect halves in about two weeks,
so a flat EWMA forecast is not the best one), which every symbol's sector moves share, and each
symbol's own moves cluster the same way on their own shocks: volatility is predictable there and
nothing else is.

Determinism: every random stream is keyed by (seed, what it drives) and simulated from a fixed
epoch, day by day, so a symbol's bar at a timestamp is the same whatever window or universe is asked
for. Faults the validator must catch can be injected per symbol.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
import pandas as pd

from trading_ml.config import Instrument
from trading_ml.data import calendars
from trading_ml.data.bars import BAR_COLUMNS, bar_index, empty_bars
from trading_ml.errors import ConfigError, OutsideCoverage, SourceUnavailable

REGIMES = ("bull", "bear", "sideways", "high_vol")
# Per regime: daily drift of the market factor and multiplier on its GARCH volatility.
REGIME_DRIFT = np.array([0.0010, -0.0008, 0.0002, -0.0003])
REGIME_VOL = np.array([0.75, 1.3, 0.6, 2.2])
# Daily transition probabilities (rows: from, columns: to); regimes last weeks to months.
REGIME_TRANSITIONS = np.array(
    [
        [0.985, 0.004, 0.008, 0.003],
        [0.010, 0.970, 0.010, 0.010],
        [0.010, 0.005, 0.980, 0.005],
        [0.004, 0.012, 0.004, 0.980],
    ]
)
GARCH_ALPHA, GARCH_BETA, MARKET_DAILY_VOL = 0.08, 0.90, 0.010
CLUSTERING_ALPHA, CLUSTERING_BETA = 0.10, 0.85  # the garch market: strong clustering that reverts in weeks
NON_SESSION_VOL = 0.3  # weekend and holiday news moves, as a share of a weekday's volatility
OVERNIGHT_SHARE = 0.3  # share of a session's move that happens between the close and the open
FAULT_KINDS = ("gap", "duplicates", "ohlc", "split", "zero_volume", "outage")  # outage: the source does not answer
VIX_HALFLIFE_DAYS = 3  # implied volatility reacts to a new regime within days, not at once
GAP_SHARE = 0.08  # a 'gap' fault removes this share of the window's bars (over the 5% limit)
DEFAULT_SIGNAL_STRENGTH = 0.15  # the planted reversal's information coefficient (see the module docstring)
REVERSAL_DAYS = 7  # calendar days (about five sessions) of own moves the planted reversal looks back on

INDEX_PROFILES = {  # symbol: (start price, market beta, sector or factor, own volatility, volume)
    "^GSPC": (1450.0, 1.0, None, 0.001, 3.5e9),
    "^IXIC": (4100.0, 1.15, "Technology", 0.002, 4.5e9),
    "^DJI": (11300.0, 0.9, None, 0.002, 3.0e8),
    "^NSEI": (1550.0, 0.35, "India", 0.003, 2.5e5),
    "^NSEBANK": (1400.0, 0.35, "India:Bank", 0.006, 1.5e5),
}
SECTOR_VOL = {"India": 0.009, "India:Bank": 0.011}
DEFAULT_SECTOR_VOL = 0.006


@dataclass(frozen=True)
class SymbolProfile:
    start_price: float
    beta: float
    sector: str | None
    idio_vol: float
    base_volume: float


def stream(seed: int, name: str) -> np.random.Generator:
    """An independent random stream for (seed, name), stable across processes."""
    digest = hashlib.sha256(name.encode()).digest()
    return np.random.default_rng([seed, int.from_bytes(digest[:8], "little")])


MARKETS = ("regimes", "random_walk", "garch")  # garch: one regime of no drift, GARCH(1,1) clustering only


@lru_cache(maxsize=8)
def market_path(seed: int, epoch: pd.Timestamp, days: int, kind: str = "regimes") -> pd.DataFrame:
    """Daily market state on every calendar day from epoch: regime, conditional vol, return."""
    uniforms = stream(seed, "regime").random(days)
    shocks = stream(seed, "market").standard_normal(days)
    dates = pd.date_range(epoch, periods=days, freq="D")
    news_scale = np.where(dates.day_of_week >= 5, NON_SESSION_VOL, 1.0)
    if kind == "random_walk":  # one regime of no drift, constant volatility
        vols = np.full(days, MARKET_DAILY_VOL)
        return pd.DataFrame(
            {"regime": np.zeros(days, dtype=np.int8), "vol": vols, "ret": vols * shocks * news_scale}, index=dates
        )
    clustering_only = kind == "garch"
    cumulative = REGIME_TRANSITIONS.cumsum(axis=1)
    alpha, beta = (CLUSTERING_ALPHA, CLUSTERING_BETA) if clustering_only else (GARCH_ALPHA, GARCH_BETA)
    omega = MARKET_DAILY_VOL**2 * (1 - alpha - beta)
    regime, variance = 0, MARKET_DAILY_VOL**2
    regimes = np.empty(days, dtype=np.int8)
    vols = np.empty(days)
    returns = np.empty(days)
    for day in range(days):
        if not clustering_only:
            regime = min(int(np.searchsorted(cumulative[regime], uniforms[day], side="right")), len(REGIMES) - 1)
        garch_shock = np.sqrt(variance) * shocks[day]
        scale, drift = (1.0, 0.0) if clustering_only else (REGIME_VOL[regime], REGIME_DRIFT[regime])
        regimes[day], vols[day] = regime, np.sqrt(variance) * scale
        returns[day] = (drift + scale * garch_shock) * news_scale[day]
        variance = omega + alpha * garch_shock**2 + beta * variance
    return pd.DataFrame({"regime": regimes, "vol": vols, "ret": returns}, index=dates)


def own_clustering(shocks: np.ndarray) -> np.ndarray:
    """A symbol's own GARCH(1,1) volatility (CLUSTERING_ALPHA, CLUSTERING_BETA), relative to its long-run
    level, driven by its own standardized shocks: idiosyncratic clustering, independent across symbols."""
    relative = np.empty(len(shocks))
    variance = 1.0
    for day, shock in enumerate(shocks):
        relative[day] = np.sqrt(variance)
        variance = (
            (1 - CLUSTERING_ALPHA - CLUSTERING_BETA)
            + CLUSTERING_ALPHA * variance * shock**2
            + CLUSTERING_BETA * variance
        )
    return relative


def symbol_profile(seed: int, instrument: Instrument) -> SymbolProfile:
    """Start price, beta, sector, own volatility and typical volume, from the symbol's own stream."""
    if instrument.symbol in INDEX_PROFILES:
        return SymbolProfile(*INDEX_PROFILES[instrument.symbol])
    draws = stream(seed, f"profile:{instrument.symbol}").random(4)
    return SymbolProfile(
        start_price=float(np.exp(np.log(15) + draws[0] * np.log(20))),
        beta=0.7 + 0.7 * draws[1],
        sector=instrument.sector or "Other",
        idio_vol=0.009 + 0.009 * draws[2],
        base_volume=float(np.exp(np.log(3e6) + draws[3] * np.log(25))),
    )


class SyntheticMarket:
    """Bars for any symbol of a seeded simulated market; see the module docstring."""

    def __init__(
        self,
        seed: int = 42,
        epoch: str | pd.Timestamp = "2000-01-03",
        faults=None,
        signal_strength: float = DEFAULT_SIGNAL_STRENGTH,
        market: str = "regimes",
    ):
        if market not in MARKETS:
            raise ConfigError(f"sources.synthetic.market {market!r} is unknown; choose from {', '.join(MARKETS)}")
        self.kind = market
        self.seed = int(seed)
        self.epoch = pd.Timestamp(epoch).normalize()
        self.signal_strength = float(signal_strength)
        if not 0 <= self.signal_strength < 0.5:
            raise ConfigError(
                f"sources.synthetic.signal_strength {signal_strength!r} must be in [0, 0.5); 0 plants no signal"
            )
        self.faults = {s: list(kinds) for s, kinds in (faults or {}).items()}
        for symbol, kinds in self.faults.items():
            unknown = sorted(set(kinds) - set(FAULT_KINDS))
            if unknown:
                raise ConfigError(
                    f"synthetic fault(s) {unknown} for {symbol} are unknown; choose from {', '.join(FAULT_KINDS)}"
                )

    def bars(self, instrument: Instrument, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
        """The normalized bars of one symbol in [start, end), with any configured faults."""
        if pd.Timestamp(start).tz_localize(None) < self.epoch:
            raise OutsideCoverage(
                f"synthetic {instrument.symbol} {timeframe}: the window starts {start.date()}, "
                f"before the simulated market's epoch {self.epoch.date()}; use a later as-of or "
                "an earlier sources.synthetic.epoch"
            )
        if "outage" in self.faults.get(instrument.symbol, []):
            raise SourceUnavailable(
                f"synthetic {instrument.symbol} {timeframe}: the source did not answer (injected 'outage' fault)"
            )
        if timeframe == "1d":
            bars = self._daily(instrument, start, end)
        elif timeframe == "1h":
            bars = self._hourly(instrument, start, end)
        else:
            raise ConfigError(f"timeframe {timeframe!r} is not supported; use 1d or 1h")
        for kind in self.faults.get(instrument.symbol, []):
            bars = inject_fault(bars, kind)
        return bars

    def regimes(self, end: pd.Timestamp) -> pd.Series:
        """The hidden regime of every calendar day up to end, by name (for tests and reports)."""
        path = self._market(end)
        return path["regime"].map(dict(enumerate(REGIMES)))

    def _market(self, end: pd.Timestamp) -> pd.DataFrame:
        days = (pd.Timestamp(end).tz_localize(None).normalize() - self.epoch).days + 1
        return market_path(self.seed, self.epoch, max(days, 1), self.kind)

    def _daily_all(self, instrument: Instrument, end: pd.Timestamp) -> pd.DataFrame:
        """Daily OHLCV for every session from the epoch to end (simulated on all calendar days)."""
        market = self._market(end)
        profile = symbol_profile(self.seed, instrument)
        days = len(market)
        own = stream(self.seed, f"symbol:{instrument.symbol}").standard_normal((days, 5))
        relative_vol = market["vol"].to_numpy() / MARKET_DAILY_VOL
        news_scale = np.where(market.index.day_of_week >= 5, NON_SESSION_VOL, 1.0)
        returns = profile.beta * market["ret"].to_numpy()
        if profile.sector:
            factor_vol = SECTOR_VOL.get(profile.sector, DEFAULT_SECTOR_VOL)
            factor = stream(self.seed, f"sector:{profile.sector}").standard_normal(days)
            returns = returns + factor_vol * relative_vol * factor * news_scale
        own_relative = own_clustering(own[:, 0]) if self.kind == "garch" else relative_vol
        own_move = profile.idio_vol * own_relative * news_scale
        returns = returns + own_move * (own[:, 0] + planted_reversal(own[:, 0], news_scale, self.signal_strength))
        # Convexity: without it, own and sector noise alone would drag every price towards zero.
        own_variance = (profile.idio_vol * own_relative) ** 2
        if profile.sector:
            own_variance = own_variance + (factor_vol * relative_vol) ** 2
        returns = returns + 0.5 * own_variance * news_scale
        total_vol = np.sqrt((profile.beta * market["vol"].to_numpy()) ** 2 + profile.idio_vol**2)

        log_close = np.log(profile.start_price) + np.cumsum(returns)
        session_days = calendars.sessions(instrument.exchange, pd.Timestamp(self.epoch, tz="UTC"), pd.Timestamp(end))
        rows = market.index.get_indexer(session_days)
        rows = rows[rows >= 0]
        if instrument.symbol == "^VIX":
            return self._vix(market, own, rows)
        return self._ohlcv(profile, log_close, returns, total_vol, own, rows, market.index)

    def _ohlcv(self, profile, log_close, returns, total_vol, own, rows, dates) -> pd.DataFrame:
        close = log_close[rows]
        previous_close = np.concatenate([[close[0] - returns[rows[0]]], close[:-1]])
        move = close - previous_close
        vol = total_vol[rows]
        log_open = previous_close + OVERNIGHT_SHARE * move + 0.15 * vol * own[rows, 1]
        top = np.maximum(log_open, close) + np.abs(own[rows, 2]) * 0.5 * vol
        bottom = np.minimum(log_open, close) - np.abs(own[rows, 3]) * 0.5 * vol
        surprise = np.abs(move) / np.maximum(vol, 1e-6)
        volume = profile.base_volume * np.exp(0.35 * surprise + 0.25 * own[rows, 4] - 0.3)
        frame = pd.DataFrame(
            {
                "open": np.exp(log_open),
                "high": np.exp(top),
                "low": np.exp(bottom),
                "close": np.exp(close),
                "volume": np.round(volume),
            },
            index=bar_index(dates[rows]),
        )
        frame["adj_close"] = frame["close"]
        return frame[BAR_COLUMNS]

    def _vix(self, market: pd.DataFrame, own: np.ndarray, rows: np.ndarray) -> pd.DataFrame:
        """A fear gauge: annualised conditional volatility in points, with a premium and noise."""
        smoothed_vol = market["vol"].ewm(halflife=VIX_HALFLIFE_DAYS).mean().to_numpy()
        level = 100 * np.sqrt(252) * smoothed_vol * 1.1 + 3.0
        level = level * np.exp(0.05 * own[:, 0])
        close = np.clip(level[rows], 9.0, 90.0)
        previous = np.concatenate([[close[0]], close[:-1]])
        opened = previous * np.exp(0.02 * own[rows, 1])
        spread = np.abs(own[rows, 2:4]) * 0.03
        frame = pd.DataFrame(
            {
                "open": opened,
                "high": np.maximum(opened, close) * np.exp(spread[:, 0]),
                "low": np.minimum(opened, close) * np.exp(-spread[:, 1]),
                "close": close,
                "volume": 0.0,
            },
            index=bar_index(market.index[rows]),
        )
        frame["adj_close"] = frame["close"]
        return frame[BAR_COLUMNS]

    def _daily(self, instrument: Instrument, start, end) -> pd.DataFrame:
        daily = self._daily_all(instrument, end)
        return daily[(daily.index >= start) & (daily.index < end)]

    def _hourly(self, instrument: Instrument, start, end) -> pd.DataFrame:
        """Hourly bars that aggregate exactly to the daily bar of their session. Each touched session
        is simulated whole and then cut to the window, so a bar is the same whatever window cuts its
        session (FX sessions run from Sunday evening, across midnight UTC). Sessions of the same
        length are simulated together."""
        around = pd.Timedelta(days=3)
        stamps = calendars.expected_timestamps(instrument.exchange, "1h", start - around, end + around)
        if stamps.empty:
            return empty_bars()
        daily = self._daily_all(instrument, end + around)
        sessions = calendars.session_days(instrument.exchange, stamps).tz_localize("UTC")
        inside = np.asarray((stamps >= start) & (stamps < end))
        days, first, counts = np.unique(sessions.asi8, return_index=True, return_counts=True)
        touched = np.add.reduceat(inside, first) > 0
        days = pd.DatetimeIndex(days, tz="UTC")
        wanted = touched & np.asarray(days.isin(daily.index))
        rows = np.full((len(stamps), len(BAR_COLUMNS)), np.nan)
        for count in np.unique(counts[wanted]):
            chosen = wanted & (counts == count)
            simulated = self._sessions_hours(instrument.symbol, daily.loc[days[chosen]], int(count))
            positions = first[chosen][:, None] + np.arange(count)
            rows[positions.ravel()] = simulated.reshape(-1, len(BAR_COLUMNS))
        kept = inside & ~np.isnan(rows[:, 0])
        if not kept.any():
            return empty_bars()
        return pd.DataFrame(rows[kept], index=bar_index(stamps[kept].tz_convert(None).to_numpy()), columns=BAR_COLUMNS)

    def _sessions_hours(self, symbol: str, days: pd.DataFrame, count: int) -> np.ndarray:
        """The hourly bars of sessions of ``count`` hours each, as (session, hour, BAR_COLUMNS): per
        session a Brownian bridge from open to close that stays inside the day's range and touches
        its high and low, drawn from the session's own random stream."""
        draws = np.stack(
            [stream(self.seed, f"hours:{symbol}:{day.date()}").standard_normal((count, 4)) for day in days.index]
        )
        steps = np.cumsum(draws[..., 0], axis=1)
        share = np.arange(1, count + 1) / count
        bridge = steps - share * steps[:, -1:]
        log_open, log_close, log_high, log_low = (
            np.log(days[c].to_numpy())[:, None] for c in ("open", "close", "high", "low")
        )
        scale = (log_high - log_low) / (2.5 * np.sqrt(count))
        path = log_open + (log_close - log_open) * share + scale * bridge
        closes = np.clip(path, log_low, log_high)
        opens = np.concatenate([log_open, closes[:, :-1]], axis=1)
        highs = np.minimum(np.maximum(opens, closes) + np.abs(draws[..., 1]) * scale, log_high)
        lows = np.maximum(np.minimum(opens, closes) - np.abs(draws[..., 2]) * scale, log_low)
        sessions = np.arange(len(days))
        highs[sessions, highs.argmax(axis=1)] = log_high[:, 0]
        lows[sessions, lows.argmin(axis=1)] = log_low[:, 0]
        centre = (count - 1) / 2 or 1.0
        weights = (1 + 0.8 * ((np.arange(count) - centre) / centre) ** 2) * np.exp(0.2 * draws[..., 3])
        day_volume = days["volume"].to_numpy()[:, None]
        volume = np.floor(day_volume * weights / weights.sum(axis=1, keepdims=True))
        volume[:, -1] += day_volume[:, 0] - volume.sum(axis=1)
        prices = np.exp(np.stack([opens, highs, lows, closes], axis=2))
        prices[:, 0, 0], prices[:, -1, 3] = days["open"].to_numpy(), days["close"].to_numpy()
        return np.concatenate([prices, prices[..., 3:4], volume[..., None]], axis=2)


def configured_strength(options: dict) -> float:
    """The planted signal's strength from ``sources.synthetic`` options (the default when unset)."""
    return float(options.get("signal_strength", DEFAULT_SIGNAL_STRENGTH))


def planted_reversal(shocks: np.ndarray, news_scale: np.ndarray, strength: float) -> np.ndarray:
    """Each day's planted expected own move, in units of that day's own volatility: minus ``strength``
    times the symbol's own moves over the previous REVERSAL_DAYS days, standardized (it uses only
    earlier days, so it is known the evening before)."""
    if strength == 0:
        return np.zeros_like(shocks)
    weights = np.ones(REVERSAL_DAYS)
    past_moves = np.convolve(shocks * news_scale, weights)[: len(shocks)]
    past_scale = np.sqrt(np.convolve(news_scale**2, weights)[: len(shocks)])
    standardized = np.concatenate([[0.0], (past_moves / past_scale)[:-1]])
    return -strength * standardized


def inject_fault(bars: pd.DataFrame, kind: str) -> pd.DataFrame:
    """One of FAULT_KINDS, placed at fixed positions of the window so tests know where to look."""
    if len(bars) < 20 or kind == "outage":
        return bars
    bars = bars.copy()
    middle = len(bars) // 2
    if kind == "gap":
        width = int(np.ceil(len(bars) * GAP_SHARE))
        return bars.drop(bars.index[middle : middle + width])
    if kind == "duplicates":
        repeated = bars.iloc[[middle, middle + 1, middle + 2]].copy()
        repeated["volume"] = repeated["volume"] + 100  # a second, conflicting print
        return pd.concat([bars, repeated]).sort_index(kind="stable")
    if kind == "ohlc":
        high, low = bars.columns.get_loc("high"), bars.columns.get_loc("low")
        bars.iloc[middle, high] = bars.iloc[middle, low] * 0.98
        bars.iloc[middle + 5, bars.columns.get_loc("close")] = bars.iloc[middle + 5, high] * 1.02
        return bars
    if kind == "split":  # an unadjusted 3:1 split: prices fall to a third, share volume triples
        prices = ["open", "high", "low", "close", "adj_close"]
        bars.loc[bars.index[middle:], prices] = bars.loc[bars.index[middle:], prices] / 3.0
        bars.loc[bars.index[middle:], "volume"] = bars.loc[bars.index[middle:], "volume"] * 3.0
        return bars
    if kind == "zero_volume":
        bars.iloc[[middle, middle + 3, middle + 7], bars.columns.get_loc("volume")] = 0.0
        return bars
    raise ConfigError(f"unknown synthetic fault {kind!r}; choose from {', '.join(FAULT_KINDS)}")
