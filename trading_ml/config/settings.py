"""What a run reads from its settings once config.yaml is checked: the universe, timeframes, storage
and every section, plus the run's as-of date. Every date window is derived from the as-of date."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from trading_ml.config.schema import (
    EARLIEST_AS_OF,
    AirflowSettings,
    ApiSettings,
    FeatureSettings,
    ModelSettings,
    ValidationSettings,
    check_ticker,
    parse_lookback,
)
from trading_ml.errors import ConfigError


@dataclass(frozen=True)
class Instrument:
    """One symbol of the universe: where it trades and what kind of series it is."""

    symbol: str
    kind: str  # "index" or "equity"
    exchange: str
    sector: str | None = None
    name: str | None = None
    has_volume: bool = True
    max_abs_return: float | None = None  # overrides validation.max_abs_return (e.g. for ^VIX)


@dataclass(frozen=True)
class Timeframe:
    """A bar size and how far back from the as-of date a run reaches for it."""

    name: str
    lookback: str

    @property
    def offset(self) -> pd.DateOffset:
        return parse_lookback(self.lookback)


@dataclass(frozen=True)
class StorageSettings:
    mongo_uri: str | None
    database: str
    ping_timeout_ms: int
    fallback_dir: Path


@dataclass(frozen=True)
class Settings:
    """Everything config.yaml says, after environment overrides."""

    config_path: Path
    universe: dict[str, Instrument]
    default_exchange: str  # the calendar of a symbol not in the universe (universe.default_exchange), always stated
    timeframes: dict[str, Timeframe]
    data_dir: Path
    source: str
    storage: StorageSettings
    validation: ValidationSettings
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)  # source kind -> its options as written
    features: FeatureSettings = field(default_factory=FeatureSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    airflow: AirflowSettings = field(default_factory=AirflowSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    parts: Any = field(
        default=None, compare=False, repr=False
    )  # the ConfigParts they were checked with (config.loader)

    def instrument(self, symbol: str) -> Instrument:
        """The configured instrument, or an equity on the default exchange for symbols outside it."""
        if symbol in self.universe:
            return self.universe[symbol]
        check_ticker(symbol)
        return Instrument(symbol=symbol, kind="equity", exchange=self.default_exchange)

    def calendar_source(self, symbol: str) -> str:
        """Where a symbol's calendar comes from: its config entry, or the declared default."""
        if symbol in self.universe:
            return f"{self.universe[symbol].exchange} (config.yaml)"
        return f"{self.default_exchange} (not in config.yaml: universe.default_exchange)"

    @property
    def symbols(self) -> list[str]:
        return list(self.universe)

    def timeframe(self, name: str) -> Timeframe:
        if name not in self.timeframes:
            raise ConfigError(
                f"unknown timeframe {name!r}; configured timeframes are "
                f"{', '.join(self.timeframes)} (config.yaml `timeframes`)"
            )
        return self.timeframes[name]

    def source_options(self, kind: str) -> dict[str, Any]:
        return dict(self.sources.get(kind) or {})


def parse_as_of(text: str | dt.date | None, today: dt.date | None = None) -> dt.date:
    """The run's as-of date: YYYY-MM-DD, not in the future; defaults to today (UTC)."""
    today = today or dt.datetime.now(dt.UTC).date()
    if text is None or text == "":
        return today
    if isinstance(text, dt.datetime):
        as_of = text.date()
    elif isinstance(text, dt.date):
        as_of = text
    else:
        try:
            as_of = dt.date.fromisoformat(str(text))
        except ValueError as error:
            raise ConfigError(f"as-of date {text!r} is not YYYY-MM-DD") from error
    if as_of < EARLIEST_AS_OF:
        raise ConfigError(
            f"as-of date {as_of} is before {EARLIEST_AS_OF}; no market data reaches back that far: pass a later date"
        )
    if as_of > today:
        raise ConfigError(f"as-of date {as_of} is in the future (today is {today}); pass today or an earlier date")
    return as_of


def settings_document(settings: Settings) -> dict[str, Any]:
    """The settings in config.yaml's own shape, as JSON values, without secrets (the MongoDB URI) and
    without the data folder (where the run's folder is found, given again when it is read): what a
    run freezes into its folder when it starts (``settings.json``). Read back through the schema with
    the same data folder, it gives the same settings."""
    from pydantic_core import to_jsonable_python

    instruments = list(settings.universe.values())
    equities = [i for i in instruments if i.kind == "equity"]
    sectors: dict[str, list[str]] = {}
    for instrument in equities:
        sectors.setdefault(str(instrument.sector), []).append(instrument.symbol)
    indices = [
        {
            "symbol": i.symbol,
            "name": i.name,
            "exchange": i.exchange,
            "has_volume": i.has_volume,
            "max_abs_return": i.max_abs_return,
        }
        for i in instruments
        if i.kind == "index"
    ]
    models = to_jsonable_python(settings.models)
    storage = settings.storage
    fallback = storage.fallback_dir
    return {
        "universe": {
            "indices": indices,
            "equities": {
                "exchange": equities[0].exchange if equities else settings.default_exchange,
                "sectors": sectors,
            },
            "fx": [i.symbol for i in instruments if i.kind == "fx"],
            "crypto": [i.symbol for i in instruments if i.kind == "crypto"],
            "default_exchange": settings.default_exchange,
        },
        "timeframes": {name: {"lookback": timeframe.lookback} for name, timeframe in settings.timeframes.items()},
        "source": settings.source,
        "storage": {
            "database": storage.database,
            "ping_timeout_ms": storage.ping_timeout_ms,
            "fallback_dir": str(
                fallback.relative_to(settings.data_dir) if fallback.is_relative_to(settings.data_dir) else fallback
            ),
        },
        "validation": to_jsonable_python(settings.validation),
        "sources": to_jsonable_python(settings.sources),
        "features": to_jsonable_python(settings.features),
        "models": {**{key: value for key, value in models.items() if key != "params"}, **models["params"]},
        "airflow": to_jsonable_python(settings.airflow),
        "api": to_jsonable_python(settings.api),
    }


def settings_differences(first: dict[str, Any], second: dict[str, Any], prefix: str = "") -> list[tuple[str, Any, Any]]:
    """Each dotted key whose value differs between two settings documents: (key, first, second);
    a key one of them lacks is None there."""
    found = []
    for key in sorted(set(first) | set(second), key=str):
        a, b, name = first.get(key), second.get(key), f"{prefix}{key}"
        if isinstance(a, dict) and isinstance(b, dict):
            found.extend(settings_differences(a, b, f"{name}."))
        elif a != b:
            found.append((name, a, b))
    return found
