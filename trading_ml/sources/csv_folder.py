"""The user's own CSV files in a folder, as a source."""

from __future__ import annotations

from pathlib import Path

from trading_ml.data.bar_files import read_bars_csv
from trading_ml.data.calendars import time_zone
from trading_ml.errors import ConfigError, DataError
from trading_ml.sources.base import NoOptions


class CsvSource:
    """The user's own files: DIR/{SYMBOL}_{timeframe}.csv with a timestamp column and OHLCV.

    The timestamp column may be called timestamp, date or datetime; adj_close is optional. Intraday
    timestamps need a UTC offset. Errors name the file, the data row or column, and what is expected.
    """

    kind, argument, Options = "csv", "DIR", NoOptions
    label = "CSV files in a folder"
    timeframes = ("1d", "1h")  # what it reads; a pair without its file fails at ingest, naming the file expected

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
                f"no file for {instrument.symbol} {timeframe}: expected {path} (name files SYMBOL_TIMEFRAME.csv)"
            )
        return read_bars_csv(path, timeframe, start, end, time_zone(instrument.exchange))
