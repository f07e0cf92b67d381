"""Yahoo Finance through yfinance, as a source: rate limits retried with exponential backoff
(tenacity), an unreachable provider reported as SourceUnavailable, anything else as DataError.
Yahoo's prices are split-adjusted; a split it reports (its split actions) that its prices do not
show adjusted is applied here (trading_ml.data.corporate_actions.apply_reported_splits)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Annotated

import pandas as pd
import tenacity
from pydantic import Field, Strict

from trading_ml.config import STRICT, checked
from trading_ml.data.bars import BAR_COLUMNS, canonical_column, empty_bars, normalize_bars, to_utc_index
from trading_ml.data.corporate_actions import apply_reported_splits
from trading_ml.errors import DataError, SourceUnavailable
from trading_ml.sources.base import within

log = logging.getLogger(__name__)

YahooFetch = Callable[[str, pd.Timestamp, pd.Timestamp, str], pd.DataFrame]


def yfinance_history(symbol: str, start: pd.Timestamp, end: pd.Timestamp, interval: str) -> pd.DataFrame:
    """Ask Yahoo through yfinance, with its exceptions raised rather than logged and swallowed."""
    import yfinance

    previous = yfinance.config.debug.hide_exceptions
    yfinance.config.debug.hide_exceptions = False
    try:
        return yfinance.Ticker(symbol).history(
            start=start.strftime("%Y-%m-%d"),
            end=end.strftime("%Y-%m-%d"),
            interval=interval,
            auto_adjust=False,
            actions=True,  # the split actions: a split Yahoo reports but its prices miss is applied here
        )
    finally:
        yfinance.config.debug.hide_exceptions = previous


def rate_limited(error: BaseException) -> bool:
    """yfinance's own answer to HTTP 429."""
    from yfinance.exceptions import YFRateLimitError

    return isinstance(error, YFRateLimitError)


def unreachable(error: BaseException) -> bool:
    """The provider did not answer (DNS, refused or reset connections, time-outs): retrying later may help."""
    from curl_cffi.requests.exceptions import ConnectionError as CurlConnectionError
    from curl_cffi.requests.exceptions import Timeout as CurlTimeout

    return isinstance(error, (ConnectionError, TimeoutError, CurlConnectionError, CurlTimeout))


class YahooSource:
    """Yahoo Finance through yfinance, with retries and exponential backoff on rate limits."""

    kind, argument = "yahoo", None
    label = "Yahoo Finance (yfinance)"
    name = "yahoo"
    timeframes = ("1d", "1h")
    symbols = None

    @checked(frozen=True, config=STRICT)
    class Options:
        retries: Annotated[int, Strict(), Field(ge=1)] = 5
        backoff_seconds: Annotated[float, Field(ge=0)] = 2.0

    @classmethod
    def from_spec(cls, argument: str, options: Options, retries: int | None) -> YahooSource:
        return cls(retries=options.retries if retries is None else retries, backoff_seconds=options.backoff_seconds)

    def __init__(
        self,
        fetch: YahooFetch = yfinance_history,
        retries: int = 5,
        backoff_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ):
        self._fetch, self.retries, self.backoff_seconds, self.sleep = fetch, retries, backoff_seconds, sleep

    def fetch(self, instrument, timeframe, start, end):
        origin = f"yahoo {instrument.symbol} {timeframe}"
        answer = self._fetch_with_retries(instrument.symbol, start, end, timeframe, origin)
        bars = flatten_yfinance_columns(answer, instrument.symbol).rename(columns=canonical_column)
        bars = bars.dropna(how="all")
        if bars.empty:
            raise DataError(
                f"{origin}: Yahoo returned no bars for {start.date()} to {end.date()}; "
                "check the ticker (delisted or misspelt?) and the window"
            )
        partial = bars[[c for c in BAR_COLUMNS if c in bars.columns]].isna().any(axis=1)
        if partial.any():
            raise DataError(
                f"{origin}: Yahoo returned {int(partial.sum())} partial bar(s), the first at "
                f"{bars.index[partial.to_numpy().argmax()]}; retry later or use another source"
            )
        normalized = normalize_bars(bars, timeframe, origin)
        splits = reported_splits(bars, timeframe, origin)
        if not splits.empty:
            normalized, notes = apply_reported_splits(normalized, splits)
            for applied, note in notes:  # an applied split is news; one already in the prices is Yahoo's norm
                log.log(logging.WARNING if applied else logging.INFO, "%s: %s", origin, note)
        return within(normalized, start, end)

    def _fetch_with_retries(self, symbol, start, end, interval, origin) -> pd.DataFrame:
        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception(rate_limited),
            stop=tenacity.stop_after_attempt(self.retries + 1),
            wait=tenacity.wait_exponential(multiplier=self.backoff_seconds, min=0),
            sleep=self.sleep,
            before_sleep=lambda state: log.warning(
                "%s: rate-limited, retry %d in %.1fs", origin, state.attempt_number, state.upcoming_sleep
            ),
            reraise=True,
        )
        try:
            answer = retrying(self._fetch, symbol, start, end, interval)
        except Exception as error:  # yfinance raises many kinds; only rate limits were retried
            if rate_limited(error):
                raise SourceUnavailable(
                    f"{origin}: still rate-limited by Yahoo after {self.retries + 1} tries; "
                    "retry later or lower the ingestion concurrency"
                ) from error
            if unreachable(error):
                raise SourceUnavailable(
                    f"{origin}: Yahoo did not answer ({' '.join(str(error).split())[:160]}); "
                    "check the network and retry later"
                ) from error
            raise DataError(f"{origin}: Yahoo request failed: {error}") from error
        return empty_bars() if answer is None else answer


def reported_splits(bars: pd.DataFrame, timeframe: str, origin: str) -> pd.Series:
    """Yahoo's split actions (its ``Stock Splits`` column: new shares per old, 0 on other days) by bar time."""
    if "stock_splits" not in bars.columns:
        return pd.Series(dtype="float64")
    ratios = pd.to_numeric(bars["stock_splits"], errors="coerce")
    ratios.index = to_utc_index(ratios.index, timeframe, origin)
    return ratios[ratios.notna() & (ratios > 0) & (ratios != 1)]


def flatten_yfinance_columns(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """yf.download's (Price, Ticker) or (Ticker, Price) column levels down to one level of prices."""
    if not isinstance(frame.columns, pd.MultiIndex):
        return frame
    for level in range(frame.columns.nlevels):
        values = frame.columns.get_level_values(level)
        if symbol in set(values):
            return frame.xs(symbol, axis=1, level=level)
    return frame.droplevel(
        [lvl for lvl in range(frame.columns.nlevels) if "Close" not in set(frame.columns.get_level_values(lvl))], axis=1
    )
