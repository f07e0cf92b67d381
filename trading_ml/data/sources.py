"""Market data sources behind one interface: yahoo | csv:DIR | sample | synthetic.

Each source's ``fetch(instrument, timeframe, start, end)`` returns the normalized bar frame of
:mod:`trading_ml.data.bars` for [start, end), raises :class:`DataError` for input that will stay bad,
and :class:`SourceUnavailable` when the provider did not answer (retrying later may help).
"""

from __future__ import annotations

import csv
import datetime as dt
import importlib
import logging
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal, Protocol

import pandas as pd
from pydantic import Field, Strict

from trading_ml.config import EARLIEST_AS_OF, STRICT, Instrument, Settings, Ticker, checked, shorten
from trading_ml.data.bars import (
    BAR_COLUMNS,
    canonical_column,
    empty_bars,
    normalize_bars,
    to_utc_index,
)
from trading_ml.data.calendars import time_zone
from trading_ml.data.synthetic import DEFAULT_SIGNAL_STRENGTH, SyntheticMarket
from trading_ml.errors import ConfigError, DataError, OutsideCoverage, SourceUnavailable

log = logging.getLogger(__name__)


class MarketDataSource(Protocol):
    kind: ClassVar[str]  # what a spec starts with: `source: KIND` or `KIND:ARGUMENT` in config.yaml and --source
    argument: ClassVar[str | None]  # what follows the colon (e.g. DIR), or None when the kind takes none
    Options: ClassVar[type]  # its section of config.yaml (`sources.KIND`), checked by the schema
    label: ClassVar[str]  # what the trigger form's dropdown shows
    name: str
    timeframes: tuple[str, ...]
    symbols: tuple[str, ...] | None  # None: any ticker

    @classmethod
    def from_spec(cls, argument: str, options: Any, retries: int | None) -> MarketDataSource: ...

    def fetch(
        self, instrument: Instrument, timeframe: str, start: pd.Timestamp, end: pd.Timestamp
    ) -> pd.DataFrame: ...


@checked(frozen=True, config=STRICT)
class NoOptions:
    """A source with nothing to configure."""


def make_source(spec: str, settings: Settings, retries: int | None = None) -> MarketDataSource:
    """Build a source from its spec ('yahoo', 'csv:DIR', 'sample', 'synthetic', or any registered
    kind) with its configured options. ``retries`` overrides the configured in-call retries of a
    provider (0 when an orchestrator retries)."""
    kind = check_source(spec).partition(":")[0]
    source = SOURCES[kind]
    return source.from_spec(spec.partition(":")[2], source.Options(**settings.source_options(kind)), retries)


def spec_is_known(spec: object) -> bool:
    """Whether ``spec`` names a registered kind, with an argument exactly when the kind takes one."""
    if not isinstance(spec, str):
        return False
    kind, colon, argument = spec.partition(":")
    source = SOURCES.get(kind)
    return source is not None and (bool(argument) if source.argument else not colon)


def spec_forms() -> list[str]:
    return [f"{kind}:{source.argument}" if source.argument else kind for kind, source in SOURCES.items()]


def source_rule() -> str:
    return f"is not a source: write {spec_choices()}"


def spec_choices() -> str:
    forms = spec_forms()
    return f"{', '.join(forms[:-1])} or {forms[-1]}"


def spec_pattern() -> str:
    """A regular expression of every spec (the DAG's `source` parameter)."""
    return "^(" + "|".join(re.escape(kind) + (":.+" if source.argument else "") for kind, source in SOURCES.items()) + ")$"


def check_source(spec: object) -> str:
    """The spec, or a ConfigError naming it and the forms a spec takes."""
    if not spec_is_known(spec):
        raise ConfigError(f"unknown source {shorten(spec)}; use {spec_choices()}")
    return spec


def source_options() -> dict[str, type]:
    """Each source kind's section of config.yaml (`sources.KIND`)."""
    return {kind: source.Options for kind, source in SOURCES.items()}


def within(bars: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    return bars[(bars.index >= start) & (bars.index < end)]


class SyntheticSource:
    """The seeded simulated market of :mod:`trading_ml.data.synthetic`; any ticker, both timeframes."""

    kind, argument = "synthetic", None
    label = "Synthetic market (seeded, offline)"
    timeframes = ("1d", "1h")
    symbols = None

    @checked(frozen=True, config=STRICT)
    class Options:
        seed: Annotated[int, Strict(), Field(ge=0)] = 42
        epoch: dt.date = dt.date(2000, 1, 3)
        signal_strength: Annotated[float, Field(ge=0, lt=0.5)] = DEFAULT_SIGNAL_STRENGTH  # 0 plants no signal
        market: Literal["regimes", "random_walk"] = "regimes"  # random_walk: no regimes, constant volatility
        faults: dict[Ticker, list[str]] | None = None  # tests' injected faults; kinds checked by the synthetic market

    @classmethod
    def from_spec(cls, argument: str, options: Options, retries: int | None) -> SyntheticSource:
        return cls(seed=options.seed, epoch=options.epoch.isoformat(), faults=options.faults,
                   signal_strength=options.signal_strength, market=options.market)

    def __init__(self, seed: int = 42, epoch: str = "2000-01-03", faults=None, signal_strength: float = DEFAULT_SIGNAL_STRENGTH,
                 market: str = "regimes"):
        self.market = SyntheticMarket(seed=seed, epoch=epoch, faults=faults, signal_strength=signal_strength, market=market)
        self.name = f"synthetic(seed={self.market.seed})"

    def fetch(self, instrument, timeframe, start, end):
        return self.market.bars(instrument, timeframe, start, end)


class SampleSource:
    """Real daily series that the `arch` package ships (S&P 500, NASDAQ Composite, VIX)."""

    kind, argument, Options = "sample", None, NoOptions
    label = "Sample daily series that arch ships (offline)"
    name = "sample"
    timeframes = ("1d",)
    # symbol: (arch.data module, what it holds)
    SERIES = {
        "^GSPC": ("sp500", "S&P 500 daily OHLCV, 1999-01-04 to 2018-12-31"),
        "^IXIC": ("nasdaq", "NASDAQ Composite daily OHLCV, 1999-01-04 to 2018-12-31"),
        "^VIX": ("vix", "CBOE VIX daily close only, 2014-01-03 to 2019-01-03"),
    }
    symbols = tuple(SERIES)
    SLACK = pd.Timedelta(days=7)  # window edges may fall on holidays or weekends

    @classmethod
    def from_spec(cls, argument: str, options: NoOptions, retries: int | None) -> SampleSource:
        return cls()

    def fetch(self, instrument, timeframe, start, end):
        if instrument.symbol not in self.SERIES:
            raise DataError(
                f"the sample source has no {instrument.symbol}; it ships "
                f"{', '.join(self.SERIES)} (use --source synthetic or yahoo for other symbols)"
            )
        if timeframe != "1d":
            raise DataError(f"the sample source has daily bars only, not {timeframe}")
        bars = self.load(instrument.symbol)
        first, last = bars.index[0], bars.index[-1]
        if start < first - self.SLACK or end > last + self.SLACK:
            raise OutsideCoverage(
                f"sample {instrument.symbol} covers {first.date()} to {last.date()}, but the "
                f"window is {start.date()} to {end.date()}; pick an --as-of so the window fits"
            )
        return within(bars, start, end)

    def load(self, symbol: str) -> pd.DataFrame:
        module = importlib.import_module(f"arch.data.{self.SERIES[symbol][0]}")
        frame = module.load().dropna(how="all")  # the VIX file lists holidays as empty rows
        if "vix" in frame.columns:  # close only: a flat bar, no volume
            close = frame["vix"]
            frame = pd.DataFrame({c: close for c in ("open", "high", "low", "close")})
            frame["volume"] = 0.0
        return normalize_bars(frame, "1d", origin=f"sample {symbol} (arch.data)")


class CsvSource:
    """The user's own files: DIR/{SYMBOL}_{timeframe}.csv with a timestamp column and OHLCV.

    The timestamp column may be called timestamp, date or datetime; adj_close is optional. Intraday
    timestamps need a UTC offset. Errors name the file, the data row or column, and what is expected.
    """

    kind, argument, Options = "csv", "DIR", NoOptions
    label = "CSV files in a folder"
    timeframes = ("1d", "1h")  # what it reads; a pair without its file fails at ingest, naming the file expected
    TIME_COLUMNS = ("timestamp", "datetime", "date", "time")

    @classmethod
    def from_spec(cls, argument: str, options: NoOptions, retries: int | None) -> CsvSource:
        return cls(Path(argument))

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise ConfigError(f"csv source folder {self.directory} does not exist")
        self.name = f"csv:{self.directory}"

    def _files(self) -> list[tuple[str, str]]:
        """(symbol, timeframe) of every SYMBOL_TIMEFRAME.csv in the folder."""
        names = (path.name.removesuffix(".csv").rpartition("_") for path in self.directory.glob("*_*.csv"))
        return [(symbol, timeframe) for symbol, _, timeframe in names if timeframe in self.timeframes]

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols the folder has a file for: a run's configured universe narrows to them."""
        return tuple(sorted({symbol for symbol, _ in self._files()}))


    def path(self, symbol: str, timeframe: str) -> Path:
        return self.directory / f"{symbol}_{timeframe}.csv"

    def fetch(self, instrument, timeframe, start, end):
        path = self.path(instrument.symbol, timeframe)
        if not path.is_file():
            raise DataError(
                f"no file for {instrument.symbol} {timeframe}: expected {path} "
                f"(name files SYMBOL_TIMEFRAME.csv)"
            )
        return read_bars_csv(path, timeframe, start, end, time_zone(instrument.exchange))


def read_bars_csv(path: Path, timeframe: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None,
                  zone: str = "UTC") -> pd.DataFrame:
    """Parse one bars CSV into the normalized frame (the rows in [start, end) when given: rows outside
    the window are never checked), or raise DataError naming what to fix. Timestamps whose UTC
    offsets change with daylight saving are accepted when they follow ``zone`` (the exchange's)."""
    header = _read_header(path)
    frame = _read_table(path)
    time_column = next((c for c in frame.columns if canonical_column(c) in CsvSource.TIME_COLUMNS), None)
    if time_column is None:
        raise DataError(
            f"{path}: no timestamp column; name one of {', '.join(CsvSource.TIME_COLUMNS)} "
            f"(found {', '.join(header)})"
        )
    stamps = _parse_timestamps(frame[time_column], path, zone)
    bars = frame.drop(columns=[time_column]).set_axis(stamps, axis=0)
    if start is not None and end is not None:
        utc = to_utc_index(stamps, timeframe, str(path))
        inside = (utc >= start) & (utc < end)
        if not inside.any():
            raise DataError(f"{path}: no rows in [{start}, {end}); the file covers {utc.min()} to {utc.max()}")
        bars = bars[inside]
    return normalize_bars(bars, timeframe, origin=str(path))


def _read_header(path: Path) -> list[str]:
    try:
        with path.open(newline="", encoding="utf-8-sig") as handle:
            header = next(csv.reader(handle), [])
    except UnicodeDecodeError as error:
        raise DataError(f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); save it as UTF-8") from error
    if not header:
        raise DataError(f"{path}: the file is empty; expected a header line timestamp,open,high,low,close,volume")
    if len(header) == 1 and any(mark in header[0] for mark in (";", "\t", "|")):
        raise DataError(f"{path}: columns are not separated by commas (header {header[0]!r}); use commas")
    names = [canonical_column(h) for h in header]
    repeated = sorted({h for h in names if names.count(h) > 1})
    if repeated:
        raise DataError(f"{path}: column(s) {', '.join(repeated)} appear more than once in the header")
    return header


def _read_table(path: Path) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, encoding="utf-8-sig", skipinitialspace=True)
    except pd.errors.ParserError as error:
        raise DataError(f"{path}: malformed CSV ({error}); every row needs as many fields as the header") from error
    if frame.empty:
        raise DataError(f"{path}: a header but no rows; expected one bar per line")
    missing = [c for c in BAR_COLUMNS if c != "adj_close" and c not in map(canonical_column, frame.columns)]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; expected timestamp,{','.join(BAR_COLUMNS)}")
    return frame


OFFSET = re.compile(r"(Z|[+-]\d{2}:?\d{2})$")


def _parse_timestamps(values: pd.Series, path: Path, zone: str = "UTC") -> pd.DatetimeIndex:
    """ISO 8601 timestamps; several UTC offsets are fine when they are one zone's across daylight
    saving (-05:00 in winter, -04:00 in summer in New York), and converted to UTC."""
    text = values.astype(str).str.strip()
    offsets = text.str.extract(OFFSET, expand=False)
    mixed = offsets.notna().any() and (offsets.isna().any() or offsets.nunique() > 1)
    parsed = pd.to_datetime(text, errors="coerce", format="ISO8601", utc=bool(mixed))
    bad = parsed.isna()
    if bad.any():
        row = int(bad.to_numpy().argmax())
        raise DataError(
            f"{path}: data row {row + 1} has timestamp {shorten(values.iloc[row])}, which is not a "
            "date or time; use ISO 8601 (2024-08-01 or 2024-08-01T13:30:00Z)"
        )
    if mixed:
        _check_one_zone(parsed, offsets, path, zone)
    stamps = pd.DatetimeIndex(parsed)
    naive = stamps.tz_localize(None) if stamps.tz is not None else stamps
    latest = pd.Timestamp.now("UTC").tz_localize(None) + pd.Timedelta(days=2)
    outside = (naive < pd.Timestamp(EARLIEST_AS_OF)) | (naive > latest)
    if outside.any():
        row = int(outside.argmax())
        raise DataError(f"{path}: data row {row + 1} has timestamp {shorten(values.iloc[row])}, outside {EARLIEST_AS_OF} to today: "
                        "fix or remove that row (a bar cannot be dated before market data or in the future)")
    return stamps


def _check_one_zone(utc: pd.Series, offsets: pd.Series, path: Path, zone: str) -> None:
    """Refuse offsets that are not ``zone``'s at their instants (genuinely different zones, or
    zoned and unzoned values mixed), naming the first row that breaks the rule."""
    if offsets.isna().any():
        row = int(offsets.isna().to_numpy().argmax())
        raise DataError(f"{path}: timestamps mix zoned and unzoned values: data row {row + 1} has no UTC offset while others do; "
                        "write every timestamp in UTC (2024-08-01T13:30:00Z) or all with their offsets")
    stamps = pd.DatetimeIndex(utc)
    expected = (stamps.tz_convert(zone).tz_localize(None) - stamps.tz_localize(None)) // pd.Timedelta(minutes=1)
    written = offsets.map(_offset_minutes).to_numpy()
    in_utc = written == 0
    if in_utc.sum() > (written == expected.to_numpy()).sum():  # the file writes UTC: name the row that does not
        row = int((~in_utc).argmax())
        raise DataError(f"{path}: the timestamps are written in UTC, but data row {row + 1} has {offsets.iloc[row]}; "
                        "write that row in UTC too (2024-08-01T13:30:00Z)")
    wrong = ~(written == expected.to_numpy())
    if wrong.any():
        row = int(wrong.argmax())
        raise DataError(
            f"{path}: timestamps mix time zones: data row {row + 1} has {offsets.iloc[row]}, but {zone} (the exchange's zone) "
            f"is at {_offset_text(expected[row])} then; write every timestamp in UTC (2024-08-01T13:30:00Z) "
            "or all in the exchange's local time with its offsets"
        )


def _offset_minutes(text) -> float:
    if not isinstance(text, str):
        return float("nan")
    if text == "Z":
        return 0.0
    sign = -1 if text[0] == "-" else 1
    digits = text[1:].replace(":", "")
    return sign * (int(digits[:2]) * 60 + int(digits[2:]))


def _offset_text(minutes: int) -> str:
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


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
            actions=False,
        )
    finally:
        yfinance.config.debug.hide_exceptions = previous


def is_rate_limit(error: Exception) -> bool:
    text = f"{type(error).__name__} {error}".lower()
    return "ratelimit" in text or "too many requests" in text or "429" in text


UNREACHABLE_SIGNS = ("could not resolve host", "failed to perform", "timed out", "connection refused", "connection reset",
                     "network is unreachable", "name or service not known", "temporary failure in name resolution")


def is_unreachable(error: Exception) -> bool:
    """The provider did not answer (DNS, refused or reset connections, time-outs): retrying later may help."""
    if isinstance(error, (ConnectionError, TimeoutError)):
        return True
    text = f"{type(error).__name__} {error}".lower()
    return any(sign in text for sign in UNREACHABLE_SIGNS)


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
        return within(normalize_bars(bars, timeframe, origin), start, end)

    def _fetch_with_retries(self, symbol, start, end, interval, origin) -> pd.DataFrame:
        for attempt in range(self.retries + 1):
            try:
                answer = self._fetch(symbol, start, end, interval)
                return empty_bars() if answer is None else answer
            except Exception as error:  # yfinance raises many kinds; only rate limits are retried
                if is_unreachable(error):
                    raise SourceUnavailable(f"{origin}: Yahoo did not answer ({' '.join(str(error).split())[:160]}); "
                                            "check the network and retry later") from error
                if not is_rate_limit(error):
                    raise DataError(f"{origin}: Yahoo request failed: {error}") from error
                if attempt == self.retries:
                    raise SourceUnavailable(
                        f"{origin}: still rate-limited by Yahoo after {self.retries + 1} tries; "
                        "retry later or lower the ingestion concurrency"
                    ) from error
                delay = self.backoff_seconds * 2**attempt
                log.warning("%s: rate-limited, retry %d in %.1fs", origin, attempt + 1, delay)
                self.sleep(delay)
        raise AssertionError("unreachable")


def flatten_yfinance_columns(frame: pd.DataFrame, symbol: str) -> pd.DataFrame:
    """yf.download's (Price, Ticker) or (Ticker, Price) column levels down to one level of prices."""
    if not isinstance(frame.columns, pd.MultiIndex):
        return frame
    for level in range(frame.columns.nlevels):
        values = frame.columns.get_level_values(level)
        if symbol in set(values):
            return frame.xs(symbol, axis=1, level=level)
    return frame.droplevel(
        [lvl for lvl in range(frame.columns.nlevels) if "Close" not in set(frame.columns.get_level_values(lvl))],
        axis=1,
    )


SOURCES: dict[str, type[MarketDataSource]] = {source.kind: source for source in (YahooSource, SyntheticSource, SampleSource, CsvSource)}
SOURCE_KINDS = tuple(spec_forms())
