"""Splits and adjustments: tell a split from a crash, and put every price of a window on one scale.

A bar's adjustment factor is ``adj_close / close``. On a split of F new shares for one old (2:1 is
F = 2, a 1:10 reverse split F = 0.1) the close falls to about 1/F of the day before, and a vendor's
adjusted close does not: the factor changes by F that day. Dividends change it by a few percent.
A move of about 1/F is called a split only when something confirms it:

- **the adjustment**: the factor changes by F (the vendor adjusted for it): the window is put on
  the adjusted scale (prices times the day's factor relative to the window's last bar, volume
  divided by it), so indicators, returns and targets all see one continuous series;
- **the bar and the volume**: with no adjustment, an unadjusted split needs all of: the whole bar
  of the day (open, high, low, close) within BAR_TOLERANCE of the previous close / F (a split acts
  overnight: the stock never trades at the old level again, where an intraday crash opens near it);
  the typical volume of the month after the day F times that of the month before it, tight around
  F and nearer F than 1, and still nearer F than 1 in the two months after that (share counts
  changed for good, where a crash's volume surges and decays); and the day's own volume no frenzy
  (at most DAY_VOLUME_LIMIT times the new typical volume; a crash trades many times its normal
  volume). That cannot be repaired without adjusted prices, so the pair is
  quarantined with the date, the factor and the volume ratio measured;
- **the bar, the market and the level** (files without an adjusted close, whose vendor already
  split-adjusted the volume, so volume cannot move by F): the whole bar of the day at 1/F of the
  previous close, its range an ordinary day's (at most RANGE_SIGMAS of the symbol's typical
  high-low range: a split day trades like any other, a crash does not); its volume no surge (at most
  PRICE_DAY_VOLUME times the typical volume before it, and the month after within
  VOLUME_TOLERANCE of the month before: shares did not change hands in a panic); the market not
  moving that day (the benchmark's move at most MARKET_CALM, when the run has the benchmark); and the
  level staying there (the next LEVEL_BARS bars as calm as the ones before, with no rebound
  towards the old level). Also quarantined, with what was measured.

Yahoo needs none of this: its open, high, low and close are already split-adjusted, even with
auto_adjust off, and a split it reports (its split actions) that its prices miss is applied by
``apply_reported_splits`` before the bars are stored, for any reported ratio (7:1 and 20:1 too).

A move with none of these (a crash, a +30% day, a bad print) is not a split and is never
"repaired": price sanity judges it on the adjusted closes. The false-positive rate on split-free
synthetic and real series, and the power on planted splits, are measured in
``tests/data/test_split_detector.py``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SPLIT_FACTORS = (2.0, 3.0, 1.5, 4.0, 5.0, 10.0, 1 / 2, 1 / 3, 2 / 3, 1 / 4, 1 / 5, 1 / 10)
FACTOR_TOLERANCE = 0.02  # |log(change of the adjustment factor / F)| for "adjusted by F"
MOVE_TOLERANCE = 0.15  # |log(close ratio x F)|: a split day's own move, on top of the split, at most
MOVE_SIGMAS = 4.0  # and at most this many of the symbol's typical daily moves (robust, the BEFORE_BARS before)
BEFORE_BARS = 40  # the bars before a candidate day that say what is typical for the symbol
MIN_MOVE_TOLERANCE = 0.02
BAR_TOLERANCE = 0.10  # |log(price x F / previous close)| for every price of the day's bar
VOLUME_TOLERANCE = np.log(1.5)  # |log(volume after / before / F)| at most, and at most half of |log F|
DAY_VOLUME_LIMIT = 3.0  # the day's volume / the typical volume after it (a split day trades about as usual)
VOLUME_BARS = 20  # bars of volume compared on each side of the day
LATER_BARS = 40  # the bars after those: a split's volume stays near F (a crash's surge decays)
MIN_VOLUME_BARS = 10  # fewer traded bars on either side: volume cannot confirm a split
RANGE_SIGMAS = 3.0  # the split day's log(high / low) at most this many times its median over BEFORE_BARS
MARKET_CALM = 0.03  # |the benchmark's log move| on a split day at most (the market did not move)
LEVEL_BARS = 20  # bars after the day that must stay at the new level, as calm as before
PRICE_DAY_VOLUME = 2.0  # without volume at F: the day's volume at most this many times the typical before it
CALM_AFTER = 2.5  # their median |log move| at most this many times the typical move before
REBOUND_SIGMAS = 6.0  # |log(close LEVEL_BARS later / the day's close)| at most this many typical moves x sqrt(LEVEL_BARS)


@dataclass(frozen=True)
class CorporateAction:
    timestamp: pd.Timestamp
    factor: float  # new shares per old share
    confirmed_by: str  # "adjustment", "volume" or "price" (the bar, the market and the level)
    close_move: float  # the raw close-to-close move that day
    volume_ratio: float | None = None  # measured: typical volume after the day / before it

    @property
    def name(self) -> str:
        new, old = _ratio_text(self.factor)
        return f"{'reverse split' if self.factor < 1 else 'split'} {new}:{old}"

    @property
    def unadjusted(self) -> bool:
        """Whether the prices around it are on two scales (only the adjusted close can repair that)."""
        return self.confirmed_by != "adjustment"

    def describe(self) -> str:
        if self.confirmed_by == "volume":
            evidence = self._volume_text()
        elif self.confirmed_by == "price":
            evidence = (
                f"the whole bar at 1/{self.factor:.3g} of the previous close on an ordinary day's range and volume, "
                "the market calm, the level kept"
            )
        else:
            evidence = "the adjusted close moves on"
        return f"{self.name} at {self.timestamp} (close {self.close_move:+.1%}; {evidence})"

    def _volume_text(self) -> str:
        return f"the whole bar at 1/{self.factor:.3g} of the previous close, volume x{self.volume_ratio:.3g} after it (x{self.factor:.3g} expected)"


def find_actions(bars: pd.DataFrame, market: pd.Series | None = None) -> list[CorporateAction]:
    """Every split or reverse split in the bars, with what confirms it. ``market`` is the benchmark's
    close (its move on a candidate day is looked up by timestamp; None: not asked)."""
    close = bars["close"].to_numpy(dtype=float)
    ratio = close / np.roll(close, 1)
    change = (bars["adj_close"] / bars["close"]).to_numpy()
    change = change / np.roll(change, 1)
    volume = bars["volume"].to_numpy(dtype=float)
    found = []
    for position, factor in _near_factors(ratio):
        when, move = bars.index[position], ratio[position] - 1
        if abs(np.log(change[position] / factor)) < FACTOR_TOLERANCE:
            found.append(CorporateAction(when, factor, "adjustment", move))
        elif (
            abs(np.log(change[position])) < FACTOR_TOLERANCE
            and _ordinary_day_move(ratio, position, factor)
            and _bar_on_new_scale(bars, position, factor)
        ):
            volume_ratio = _volume_confirms(volume, position, factor)
            if volume_ratio is not None:
                found.append(CorporateAction(when, factor, "volume", move, volume_ratio))
            elif _price_confirms(bars, volume, ratio, position) and _market_calm(market, when):
                found.append(CorporateAction(when, factor, "price", move))
    return found


def adjusted(bars: pd.DataFrame) -> pd.DataFrame:
    """The bars on the adjusted scale of their last bar: open, high, low and close times the day's
    adjustment factor relative to the last bar's, volume divided by it; adj_close is the close."""
    factor = bars["adj_close"] / bars["close"]
    relative = factor / factor.iloc[-1] if len(bars) else factor
    out = bars.copy()
    for column in ("open", "high", "low", "close"):
        out[column] = bars[column] * relative
    out["volume"] = bars["volume"] / relative
    out["adj_close"] = out["close"]
    return out


def apply_reported_splits(bars: pd.DataFrame, splits: pd.Series) -> tuple[pd.DataFrame, list[tuple[bool, str]]]:
    """Bars with every split the vendor reports (``splits``: F new shares per old, by date) but its
    prices do not show adjusted: where the close moves to 1/F (within MOVE_TOLERANCE) on the split's
    first bar and that whole bar sits at 1/F of the previous close, the bars before it are put on the
    new scale (prices / F, volume x F; the adjusted close too when it moves the same way). A reported
    split whose bars show no such move (already adjusted, or a move that is not 1/F) changes nothing.
    Also returns, per split, whether it was applied and one line saying what was done or why not."""
    out, notes = bars.copy(), []
    for when, factor in splits.items():
        position = int(out.index.searchsorted(when))
        if not (np.isfinite(factor) and factor > 0 and factor != 1) or not 0 < position < len(out):
            continue
        day = out.index[position]
        close = out["close"].to_numpy(dtype=float)
        move = np.log(close[position] / close[position - 1] * factor)
        if abs(move) > MOVE_TOLERANCE or not _bar_on_new_scale(out, position, factor):
            change = close[position] / close[position - 1] - 1
            notes.append(
                (
                    False,
                    f"split {factor:g} reported at {day}: the close moved {change:+.1%}, not to 1/{factor:g} of "
                    "the day before, so the prices already reflect it; kept as they are",
                )
            )
            continue
        earlier = out.index < day
        adj = out["adj_close"].to_numpy(dtype=float)
        columns = ["open", "high", "low", "close"]
        columns += ["adj_close"] if abs(np.log(adj[position] / adj[position - 1] * factor)) <= MOVE_TOLERANCE else []
        out.loc[earlier, columns] = out.loc[earlier, columns] / factor
        out.loc[earlier, "volume"] = out.loc[earlier, "volume"] * factor
        notes.append(
            (
                True,
                f"split {factor:g} reported at {day} but not in the prices (close "
                f"{np.expm1(move - np.log(factor)):+.1%}): the bars before it are put on the new scale",
            )
        )
    return out, notes


def _near_factors(ratio: np.ndarray) -> list[tuple[int, float]]:
    """(position, F) for every bar after the first whose close ratio is within MOVE_TOLERANCE of 1/F."""
    if len(ratio) < 2:  # no bar after the first
        return []
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.abs(np.log(ratio[:, None] * np.array(SPLIT_FACTORS)[None, :]))
    distance[0] = np.inf
    distance[~np.isfinite(distance)] = np.inf
    nearest = distance.argmin(axis=1)
    near = np.flatnonzero(distance[np.arange(len(ratio)), nearest] < MOVE_TOLERANCE)
    return [(int(position), SPLIT_FACTORS[nearest[position]]) for position in near]


def _typical_move(ratio: np.ndarray, position: int) -> float | None:
    """The symbol's typical |log move| (robust: 1.4826 x the median) over the BEFORE_BARS before the
    day; None with fewer than MIN_VOLUME_BARS of them."""
    before = np.abs(np.log(ratio[max(1, position - BEFORE_BARS) : position]))
    before = before[np.isfinite(before)]
    return 1.4826 * float(np.median(before)) if len(before) >= MIN_VOLUME_BARS else None


def _ordinary_day_move(ratio: np.ndarray, position: int, factor: float) -> bool:
    """The close's move beyond 1/F is an ordinary day's for this symbol (MOVE_SIGMAS of its typical move)."""
    typical = _typical_move(ratio, position)
    typical = MOVE_TOLERANCE if typical is None else typical
    return abs(np.log(ratio[position] * factor)) < min(MOVE_TOLERANCE, max(MOVE_SIGMAS * typical, MIN_MOVE_TOLERANCE))


def _bar_on_new_scale(bars: pd.DataFrame, position: int, factor: float) -> bool:
    """Every price of the day's bar within BAR_TOLERANCE of the previous close / F."""
    previous = float(bars["close"].iloc[position - 1])
    prices = bars[["open", "high", "low", "close"]].iloc[position].to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        distance = np.abs(np.log(prices * factor / previous))
    return bool(np.all(distance < BAR_TOLERANCE))


def _volume_confirms(volume: np.ndarray, position: int, factor: float) -> float | None:
    """The measured volume ratio (the next VOLUME_BARS over the VOLUME_BARS before) when it confirms
    F: tight around F and nearer F than 1, still nearer F than 1 over the LATER_BARS after those
    (where the data has them), and the day itself no frenzy; None otherwise, or with too few traded
    bars to tell."""
    before = _traded(volume[max(0, position - VOLUME_BARS):position])
    after = _traded(volume[position + 1:position + 1 + VOLUME_BARS])
    later = _traded(volume[position + 1 + VOLUME_BARS:position + 1 + VOLUME_BARS + LATER_BARS])
    if len(before) < MIN_VOLUME_BARS or len(after) < MIN_VOLUME_BARS:
        return None
    typical_before, typical_after = float(np.median(before)), float(np.median(after))
    measured, nearer_f = typical_after / typical_before, abs(np.log(factor)) / 2
    if abs(np.log(measured / factor)) >= min(VOLUME_TOLERANCE, nearer_f) or volume[position] > DAY_VOLUME_LIMIT * typical_after:
        return None
    if len(later) >= MIN_VOLUME_BARS and abs(np.log(np.median(later) / typical_before / factor)) >= nearer_f:
        return None
    return measured


def _price_confirms(bars: pd.DataFrame, volume: np.ndarray, ratio: np.ndarray, position: int) -> bool:
    """A split's day without volume at F: an ordinary range, volume no surge, the level kept calmly."""
    typical_move = _typical_move(ratio, position)
    if position < BEFORE_BARS or position + LEVEL_BARS >= len(bars) or typical_move is None:
        return False  # too little on either side to tell
    log_range = np.log(bars["high"].to_numpy(dtype=float) / bars["low"].to_numpy(dtype=float))
    typical_range = float(np.median(log_range[position - BEFORE_BARS : position]))
    if not log_range[position] <= RANGE_SIGMAS * max(typical_range, 1e-4):
        return False
    before = _traded(volume[position - VOLUME_BARS : position])
    after = _traded(volume[position + 1 : position + 1 + VOLUME_BARS])
    if len(before) < MIN_VOLUME_BARS or len(after) < MIN_VOLUME_BARS:
        return False
    typical_before = float(np.median(before))
    if volume[position] > PRICE_DAY_VOLUME * typical_before:
        return False
    if abs(np.log(np.median(after) / typical_before)) >= VOLUME_TOLERANCE:
        return False
    typical_move = max(typical_move, 1e-4)
    after = 1.4826 * np.median(np.abs(np.log(ratio[position + 1 : position + 1 + LEVEL_BARS])))
    close = bars["close"].to_numpy(dtype=float)
    drift = abs(np.log(close[position + LEVEL_BARS] / close[position]))
    return bool(after <= CALM_AFTER * typical_move and drift <= REBOUND_SIGMAS * typical_move * np.sqrt(LEVEL_BARS))


def _market_calm(market: pd.Series | None, when: pd.Timestamp) -> bool:
    """The benchmark's log move that day at most MARKET_CALM; True without a benchmark (nothing to ask)."""
    if market is None or when not in market.index:
        return True
    position = market.index.get_loc(when)
    if not isinstance(position, int) or position == 0:
        return True
    move = np.log(float(market.iloc[position]) / float(market.iloc[position - 1]))
    return bool(abs(move) <= MARKET_CALM)


def _traded(volume: np.ndarray) -> np.ndarray:
    return volume[volume > 0]


def _ratio_text(factor: float) -> tuple[str, str]:
    """(new, old) shares as small whole numbers: 2 -> (2, 1), 1.5 -> (3, 2), 0.1 -> (1, 10)."""
    for old in range(1, 11):
        new = factor * old
        if abs(new - round(new)) < 1e-6:
            return str(round(new)), str(old)
    return f"{factor:.3g}", "1"
