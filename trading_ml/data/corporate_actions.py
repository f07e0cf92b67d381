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
  quarantined with the date, the factor and the volume ratio measured.

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
MOVE_SIGMAS = 4.0  # and at most this many of the symbol's typical daily moves (robust, the 40 bars before)
MIN_MOVE_TOLERANCE = 0.02
BAR_TOLERANCE = 0.10  # |log(price x F / previous close)| for every price of the day's bar
VOLUME_TOLERANCE = np.log(1.5)  # |log(volume after / before / F)| at most, and at most half of |log F|
DAY_VOLUME_LIMIT = 3.0  # the day's volume / the typical volume after it (a split day trades about as usual)
VOLUME_BARS = 20  # bars of volume compared on each side of the day
LATER_BARS = 40  # the bars after those: a split's volume stays near F (a crash's surge decays)
MIN_VOLUME_BARS = 10  # fewer traded bars on either side: volume cannot confirm a split


@dataclass(frozen=True)
class CorporateAction:
    timestamp: pd.Timestamp
    factor: float  # new shares per old share
    confirmed_by: str  # "adjustment" or "volume"
    close_move: float  # the raw close-to-close move that day
    volume_ratio: float | None = None  # measured: typical volume after the day / before it

    @property
    def name(self) -> str:
        new, old = _ratio_text(self.factor)
        return f"{'reverse split' if self.factor < 1 else 'split'} {new}:{old}"

    def describe(self) -> str:
        return (f"{self.name} at {self.timestamp} (close {self.close_move:+.1%}; "
                f"{'the adjusted close moves on' if self.confirmed_by == 'adjustment' else self._volume_text()})")

    def _volume_text(self) -> str:
        return f"the whole bar at 1/{self.factor:.3g} of the previous close, volume x{self.volume_ratio:.3g} after it (x{self.factor:.3g} expected)"


def find_actions(bars: pd.DataFrame) -> list[CorporateAction]:
    """Every split or reverse split in the bars, with what confirms it."""
    close = bars["close"].to_numpy(dtype=float)
    ratio = close / np.roll(close, 1)
    change = (bars["adj_close"] / bars["close"]).to_numpy()
    change = change / np.roll(change, 1)
    volume = bars["volume"].to_numpy(dtype=float)
    found = []
    for position, factor in _near_factors(ratio):
        if abs(np.log(change[position] / factor)) < FACTOR_TOLERANCE:
            found.append(CorporateAction(bars.index[position], factor, "adjustment", ratio[position] - 1))
        elif (abs(np.log(change[position])) < FACTOR_TOLERANCE and _ordinary_day_move(ratio, position, factor)
              and _bar_on_new_scale(bars, position, factor)):
            volume_ratio = _volume_confirms(volume, position, factor)
            if volume_ratio is not None:
                found.append(CorporateAction(bars.index[position], factor, "volume", ratio[position] - 1, volume_ratio))
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


def _ordinary_day_move(ratio: np.ndarray, position: int, factor: float) -> bool:
    """The close's move beyond 1/F is an ordinary day's for this symbol (MOVE_SIGMAS of its typical move)."""
    before = np.log(ratio[max(1, position - 40):position])
    before = before[np.isfinite(before)]
    typical = 1.4826 * float(np.median(np.abs(before))) if len(before) >= MIN_VOLUME_BARS else MOVE_TOLERANCE
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


def _traded(volume: np.ndarray) -> np.ndarray:
    return volume[volume > 0]


def _ratio_text(factor: float) -> tuple[str, str]:
    """(new, old) shares as small whole numbers: 2 -> (2, 1), 1.5 -> (3, 2), 0.1 -> (1, 10)."""
    for old in range(1, 11):
        new = factor * old
        if abs(new - round(new)) < 1e-6:
            return str(round(new)), str(old)
    return f"{factor:.3g}", "1"
