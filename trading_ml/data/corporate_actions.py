"""Splits and adjustments: tell a split from a crash, and put every price of a window on one scale.

A bar's adjustment factor is ``adj_close / close``. On a split of F new shares for one old (2:1 is
F = 2, a 1:10 reverse split F = 0.1) the close falls to about 1/F of the day before, and a vendor's
adjusted close does not: the factor changes by F that day. Dividends change it by a few percent.
A move of about 1/F is called a split only when something confirms it:

- **the adjustment**: the factor changes by F (the vendor adjusted for it): the window is put on
  the adjusted scale (prices times the day's factor relative to the window's last bar, volume
  divided by it), so indicators, returns and targets all see one continuous series;
- **the volume**: with no adjustment, the typical volume after the day is about F times the volume
  before it (share counts changed): an unadjusted split, which cannot be repaired without adjusted
  prices, so the pair is quarantined with the date and the factor.

A move with neither (a crash, a bad print) is not a split and is never "repaired": price sanity
judges it on the adjusted closes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

SPLIT_FACTORS = (2.0, 3.0, 1.5, 4.0, 5.0, 10.0, 1 / 2, 1 / 3, 2 / 3, 1 / 4, 1 / 5, 1 / 10)
FACTOR_TOLERANCE = 0.02  # |log(change of the adjustment factor / F)| for "adjusted by F"
MOVE_TOLERANCE = 0.15  # |log(close ratio x F)|: a split day's own move, on top of the split
VOLUME_TOLERANCE = np.log(1.5)  # |log(volume after / before / F)| for "volume confirms F"
VOLUME_BARS = 10  # bars of volume compared on each side of the day


@dataclass(frozen=True)
class CorporateAction:
    timestamp: pd.Timestamp
    factor: float  # new shares per old share
    confirmed_by: str  # "adjustment" or "volume"
    close_move: float  # the raw close-to-close move that day

    @property
    def name(self) -> str:
        new, old = _ratio_text(self.factor)
        return f"{'reverse split' if self.factor < 1 else 'split'} {new}:{old}"

    def describe(self) -> str:
        return (f"{self.name} at {self.timestamp} (close {self.close_move:+.1%}; "
                f"{'the adjusted close moves on' if self.confirmed_by == 'adjustment' else 'volume x' + format(self.factor, '.3g') + ' after it'})")


def find_actions(bars: pd.DataFrame) -> list[CorporateAction]:
    """Every split or reverse split in the bars, with what confirms it."""
    ratio = (bars["close"] / bars["close"].shift()).to_numpy()
    change = (bars["adj_close"] / bars["close"]).to_numpy()
    change = change / np.roll(change, 1)
    found = []
    for position in range(1, len(bars)):
        factor = _near_factor(ratio[position])
        if factor is None:
            continue
        if abs(np.log(change[position] / factor)) < FACTOR_TOLERANCE:
            found.append(CorporateAction(bars.index[position], factor, "adjustment", ratio[position] - 1))
        elif abs(np.log(change[position])) < FACTOR_TOLERANCE and _volume_confirms(bars["volume"].to_numpy(), position, factor):
            found.append(CorporateAction(bars.index[position], factor, "volume", ratio[position] - 1))
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


def _near_factor(ratio: float) -> float | None:
    """The split factor F whose 1/F the close ratio is near, if any (never 1: no split)."""
    if not np.isfinite(ratio) or ratio <= 0:
        return None
    best = min(SPLIT_FACTORS, key=lambda factor: abs(np.log(ratio * factor)))
    return best if abs(np.log(ratio * best)) < MOVE_TOLERANCE else None


def _volume_confirms(volume: np.ndarray, position: int, factor: float) -> bool:
    before, after = volume[max(0, position - VOLUME_BARS):position], volume[position + 1:position + 1 + VOLUME_BARS]
    before, after = before[before > 0], after[after > 0]
    if len(before) < 3 or len(after) < 3:
        return False
    return abs(np.log(np.median(after) / np.median(before) / factor)) < VOLUME_TOLERANCE


def _ratio_text(factor: float) -> tuple[str, str]:
    """(new, old) shares as small whole numbers: 2 -> (2, 1), 1.5 -> (3, 2), 0.1 -> (1, 10)."""
    for old in range(1, 11):
        new = factor * old
        if abs(new - round(new)) < 1e-6:
            return str(round(new)), str(old)
    return f"{factor:.3g}", "1"
