"""The plan's data quality checks, cleaning, and the per-symbol verdict.

Each check is a function returning a :class:`CheckResult` (check, passed, rows affected, detail) and
the rows it removes. Soft checks repair (duplicates, broken OHLC rows and zero-volume bars are
dropped, never filled; splits the adjusted close confirms are adjusted for); hard checks
(completeness, unadjusted splits, price sanity) quarantine the symbol. The hard checks judge the
run's window only: an unadjusted split or a jump in the warm-up bars fetched before it cuts the
warm-up at that bar (reported) and never quarantines. The sixth check of the plan, no look-ahead in
features, lives with the features.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from trading_ml.config import Instrument, ValidationSettings
from trading_ml.data.bars import BAR_COLUMNS, percent
from trading_ml.data.corporate_actions import CorporateAction, adjusted, find_actions

PRICE_TOLERANCE = 1e-9  # relative slack for float rounding in OHLC comparisons


@dataclass
class CheckResult:
    check: str
    passed: bool
    rows_affected: int
    detail: str
    hard: bool = False  # a failed hard check quarantines the symbol


@dataclass
class ValidationReport:
    symbol: str
    timeframe: str
    rows_in: int
    rows_out: int
    expected_rows: int
    checks: list[CheckResult] = field(default_factory=list)

    @property
    def quarantined(self) -> bool:
        return self.rows_out == 0 or any(c.hard and not c.passed for c in self.checks)

    @property
    def reasons(self) -> list[str]:
        reasons = [f"{c.check}: {c.detail}" for c in self.checks if c.hard and not c.passed]
        if self.rows_out == 0 and not reasons:
            reasons.append("no bars left after cleaning")
        return reasons

    def to_dict(self) -> dict:
        return {
            **{k: v for k, v in asdict(self).items() if k != "checks"},
            "quarantined": self.quarantined,
            "reasons": self.reasons,
            "checks": [asdict(c) for c in self.checks],
        }


def check_temporal_integrity(bars: pd.DataFrame, expected: pd.DatetimeIndex) -> tuple[CheckResult, pd.Series]:
    """No duplicate timestamps, time order, and no expected bar missing (holidays are not expected)."""
    duplicated = pd.Series(bars.index.duplicated(keep="last"), index=bars.index)
    out_of_order = int((bars.index[1:] < bars.index[:-1]).sum())
    present = bars.index.unique()
    missing = expected.difference(present)
    off_calendar = present.difference(expected)
    problems = []
    if duplicated.any():
        problems.append(f"{int(duplicated.sum())} duplicate timestamp(s), kept the last print")
    if out_of_order:
        problems.append(f"{out_of_order} timestamp(s) out of order")
    if len(missing):
        problems.append(f"{len(missing)} expected bar(s) missing, {_longest_gap(expected, missing)}")
    if len(off_calendar):
        problems.append(f"{len(off_calendar)} bar(s) outside the exchange calendar (kept)")
    passed = not (duplicated.any() or out_of_order or len(missing))
    detail = "; ".join(problems) or "timestamps unique, ordered and complete"
    affected = int(duplicated.sum()) + out_of_order + len(missing)
    return CheckResult("temporal_integrity", passed, affected, detail), duplicated


def check_ohlc_logic(bars: pd.DataFrame) -> tuple[CheckResult, pd.Series]:
    """High >= Low and Open, Close within [Low, High]; offending bars are dropped."""
    slack_high = bars["high"] * (1 + PRICE_TOLERANCE)
    slack_low = bars["low"] * (1 - PRICE_TOLERANCE)
    broken = (
        (bars["high"] < bars["low"])
        | (bars["open"] > slack_high)
        | (bars["open"] < slack_low)
        | (bars["close"] > slack_high)
        | (bars["close"] < slack_low)
    )
    count = int(broken.sum())
    detail = "every bar has low <= open, close <= high"
    if count:
        detail = f"{count} bar(s) break OHLC logic, first at {_first(broken)}; dropped"
    return CheckResult("ohlc_logic", count == 0, count, detail), broken


def check_corporate_actions(bars: pd.DataFrame, actions: list[CorporateAction]) -> CheckResult:
    """Splits the adjusted close confirms are repaired (the window goes on the adjusted scale, as are
    dividends); a split the adjusted close does not adjust for (confirmed by volume, or by the bar,
    the market and the level) cannot be, and quarantines the symbol."""
    repaired = [a for a in actions if not a.unadjusted]
    unadjusted = [a for a in actions if a.unadjusted]
    factor = bars["adj_close"] / bars["close"]
    other = int((np.abs(np.log(factor / factor.shift())) > 1e-9).sum()) - len(repaired)
    parts = [f"repaired {a.describe()}: prices before it scaled by 1/{a.factor:.3g}, volume by {a.factor:.3g}" for a in repaired]
    if other > 0:
        parts.append(f"{other} other adjustment(s) (dividends) applied from adj_close")
    if unadjusted:
        first = unadjusted[0]
        parts.insert(0, f"unadjusted {first.describe()}, and adj_close does not adjust for it: supply split-adjusted "
                        f"adj_close (as Yahoo's Adj Close), or start the window after {first.timestamp.date()}")
    detail = "; ".join(parts) or "no split, reverse split or other adjustment in the window"
    return CheckResult("corporate_actions", not unadjusted, len(actions), detail, hard=True)


def price_jumps(bars: pd.DataFrame, max_abs_return: float, unadjusted_splits=()) -> pd.Series:
    """Bars whose adjusted close moved more than the limit from the bar before (not unadjusted splits)."""
    moves = bars["adj_close"].pct_change()
    return (moves.abs() > max_abs_return) & ~bars.index.isin(list(unadjusted_splits))


def check_price_sanity(bars: pd.DataFrame, max_abs_return: float, unadjusted_splits: Sequence[pd.Timestamp] = ()) -> CheckResult:
    """No bar-to-bar move of the adjusted close above the limit: what is left after splits are told
    apart is a crash or a bad print, which a person must look at. The days of unadjusted splits
    (reported by the corporate-actions check) are not counted twice."""
    moves = bars["adj_close"].pct_change()
    jumps = price_jumps(bars, max_abs_return, unadjusted_splits)
    count = int(jumps.sum())
    detail = f"no adjusted close-to-close move above {max_abs_return:.0%}"
    if count:
        when = _first(jumps)
        detail = (
            f"{count} move(s) above {max_abs_return:.0%}, first {percent(moves[jumps].iloc[0])} at {when}, that are not splits "
            "(no standard split factor confirmed by the adjusted close, or by the bar's level and the volume): a crash or a bad "
            "print; if it is real, raise validation.max_abs_return (or the symbol's max_abs_return), else fix that row"
        )
    return CheckResult("price_sanity", count == 0, count, detail, hard=True)


def cut_warmup(bars: pd.DataFrame, actions: list[CorporateAction], max_abs_return: float,
               window_start: pd.Timestamp | None) -> tuple[pd.DataFrame, list[CorporateAction], str | None]:
    """The bars from the last unadjusted split or price jump before the window on (the warm-up is
    only context for features: a problem there shortens it and quarantines nothing), the actions
    left, and a note saying what was cut."""
    if window_start is None:
        return bars, actions, None
    unadjusted = [a.timestamp for a in actions if a.unadjusted]
    problems = [*unadjusted, *bars.index[price_jumps(bars, max_abs_return, unadjusted).to_numpy()]]
    problems = [when for when in problems if when < window_start]
    if not problems:
        return bars, actions, None
    cut = max(problems)
    kept = bars[bars.index >= cut]
    note = (f"the warm-up before the window had {len(problems)} unadjusted split(s) or move(s) above {max_abs_return:.0%}, "
            f"the last at {cut}: the warm-up starts there ({int((bars.index < cut).sum())} earlier bar(s) dropped)")
    return kept, [a for a in actions if a.timestamp > cut], note


def check_volume_sanity(bars: pd.DataFrame, instrument: Instrument) -> tuple[CheckResult, pd.Series]:
    """Volume > 0 on trading days; zero-volume bars are dropped. Skipped for series without volume."""
    if not instrument.has_volume:
        none = pd.Series(False, index=bars.index)
        return CheckResult("volume_sanity", True, 0, f"not applicable: {instrument.symbol} has no volume"), none
    empty = bars["volume"] <= 0
    count = int(empty.sum())
    detail = "every bar traded"
    if count:
        detail = f"{count} bar(s) with zero volume, first at {_first(empty)}; dropped"
    return CheckResult("volume_sanity", count == 0, count, detail), empty


def check_completeness(bars: pd.DataFrame, expected: pd.DatetimeIndex, max_missing_share: float) -> CheckResult:
    """Fewer than max_missing_share of the calendar's expected bars are missing after cleaning."""
    if len(expected) == 0:
        return CheckResult("completeness", False, 0, "the calendar expects no bars in this window", hard=True)
    missing = len(expected.difference(bars.index))
    share = missing / len(expected)
    detail = f"{missing} of {len(expected)} expected bars missing ({share:.1%}; limit {max_missing_share:.0%})"
    return CheckResult("completeness", share < max_missing_share, missing, detail, hard=True)


def validate_bars(
    bars: pd.DataFrame,
    instrument: Instrument,
    timeframe: str,
    expected: pd.DatetimeIndex,
    settings: ValidationSettings,
    window_start: pd.Timestamp | None = None,
    market: pd.Series | None = None,
) -> tuple[ValidationReport, pd.DataFrame]:
    """Run every check in order, dropping what the soft checks reject; return report and clean bars.
    Bars before ``window_start`` are the warm-up: cleaned and adjusted like the rest, but only the
    window's bars can fail a hard check (None: every bar is in the window). ``market`` (the
    benchmark's close, when the run has it) tells the split detector whether the market moved."""
    report = ValidationReport(instrument.symbol, timeframe, len(bars), 0, len(expected))
    temporal, duplicated = check_temporal_integrity(bars, expected)
    clean = bars[~duplicated.to_numpy()].sort_index(kind="stable")
    ohlc, broken = check_ohlc_logic(clean)
    clean = clean[~broken]
    volume, empty = check_volume_sanity(clean, instrument)
    clean = clean[~empty]
    limit = instrument.max_abs_return or settings.max_abs_return
    found = find_actions(clean, market)
    clean, found, warmup_note = cut_warmup(clean, found, limit, window_start)  # adj_close's moves are the adjusted scale's
    actions = check_corporate_actions(clean, found)
    clean = adjusted(clean)
    sanity = check_price_sanity(clean, limit, [a.timestamp for a in found if a.unadjusted])
    for check in (actions, sanity):
        check.detail = "; ".join(filter(None, [check.detail, warmup_note]))
    in_window = expected if window_start is None else expected[expected >= window_start]
    report.checks = [
        check_completeness(clean, in_window, settings.max_missing_share),
        ohlc,
        actions,
        sanity,
        volume,
        temporal,
    ]
    report.rows_out = len(clean)
    return report, clean[BAR_COLUMNS]


def _first(mask: pd.Series) -> object:
    return mask.index[int(np.argmax(mask.to_numpy()))]


def _longest_gap(expected: pd.DatetimeIndex, missing: pd.DatetimeIndex) -> str:
    """'longest run 10 bars from X' over consecutive expected positions."""
    positions = np.sort(expected.get_indexer(missing))
    breaks = np.flatnonzero(np.diff(positions) != 1) + 1
    runs = np.split(positions, breaks)
    longest = max(runs, key=len)
    return f"longest run {len(longest)} bar(s) from {expected[longest[0]]}"
