"""What every market data source is: its interface, the empty options, and the window cut."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol

import pandas as pd

from trading_ml.config import STRICT, Instrument, checked


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

    def fetch(self, instrument: Instrument, timeframe: str, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame: ...


@checked(frozen=True, config=STRICT)
class NoOptions:
    """A source with nothing to configure."""


def within(bars: pd.DataFrame, start: pd.Timestamp, end: pd.Timestamp) -> pd.DataFrame:
    return bars[(bars.index >= start) & (bars.index < end)]
