"""A run's bar files: the CSV a source or a stage wrote, read back into the normalized bar frame
(strictly: errors name the file, the data row or column, and what is expected), and written."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path
from typing import TextIO

import pandas as pd

from trading_ml.config import EARLIEST_AS_OF, shorten
from trading_ml.data.bars import (
    BAR_COLUMNS,
    canonical_column,
    normalize_bars,
    to_utc_index,
)
from trading_ml.errors import DataError
from trading_ml.io import write_table_csv

TIME_COLUMNS = ("timestamp", "datetime", "date", "time")


def write_bars_csv(path: Path, bars: pd.DataFrame) -> Path:
    """Bars as CSV: an ISO 8601 UTC timestamp column, then the bar columns at full precision."""
    return write_table_csv(path, bars[BAR_COLUMNS])


def read_bars_csv(path: Path, timeframe: str, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None,
                  zone: str = "UTC", content: bytes | None = None) -> pd.DataFrame:
    """Parse one bars CSV into the normalized frame (the rows in [start, end) when given: rows outside
    the window are never checked), or raise DataError naming what to fix. Timestamps whose UTC
    offsets change with daylight saving are accepted when they follow ``zone`` (the exchange's).
    ``content``: the file's bytes, already read (and checked: :func:`trading_ml.io.checked_bytes`)."""
    header = _read_header(path, content)
    frame = _read_table(path, time_column_of(h.lstrip() for h in header), content)
    time_column = time_column_of(frame.columns)
    if time_column is None:
        raise DataError(
            f"{path}: no timestamp column; name one of {', '.join(TIME_COLUMNS)} "
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


def time_column_of(names) -> str | None:
    """The first of ``names`` that is a timestamp column (timestamp, datetime, date, time), or None."""
    return next((name for name in names if canonical_column(name) in TIME_COLUMNS), None)


def _read_header(path: Path, content: bytes | None = None) -> list[str]:
    try:
        lines: TextIO = (
            io.TextIOWrapper(io.BytesIO(content), encoding="utf-8-sig", newline="")
            if content is not None
            else path.open(newline="", encoding="utf-8-sig")
        )
        with lines as handle:
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


def _read_table(path: Path, text_column: str | None, content: bytes | None = None) -> pd.DataFrame:
    """The CSV (``content`` when given) with ``text_column`` (the timestamps) as text and numbers parsed
    by the CSV reader; a column that holds something else than numbers stays text, for
    ``normalize_bars`` to name the value."""
    text = {text_column: str} if text_column else None
    source = io.BytesIO(content) if content is not None else path
    try:
        frame = pd.read_csv(source, dtype=text, encoding="utf-8-sig", skipinitialspace=True, low_memory=False)
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
