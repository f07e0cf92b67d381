"""Settings: config.yaml plus environment overrides, checked when read against one typed schema.

Every key has a type and bounds (pydantic v2); unknown keys are refused with the nearest valid name;
the environment overrides go through the same schema. Any error is one line naming the key (or the
environment variable) and what to write instead. Nothing here hard-codes a year: every date window
is derived from a run's as-of date (trading_ml.run).
"""

from __future__ import annotations

import datetime as dt
import difflib
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import pandas as pd
import yaml
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, ValidationError, model_validator
from pydantic.dataclasses import dataclass as checked

from trading_ml.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.yaml"

ENV_CONFIG = "TRADING_ML_CONFIG"
ENV_DATA_DIR = "TRADING_ML_DATA_DIR"
ENV_MONGO_URI = "TRADING_ML_MONGO_URI"
ENV_SOURCE = "TRADING_ML_SOURCE"

TICKER_PATTERN = re.compile(r"^[\^A-Z0-9][A-Z0-9.\-=^]{0,19}$")
LOOKBACK_PATTERN = re.compile(r"^(\d+)(y|mo|w|d)$")
SOURCE_PATTERN = re.compile(r"^(yahoo|synthetic|sample|csv:.+)$")
TICKER_RULE = "is not a ticker: use upper-case letters, digits and . - = ^ (for example AAPL, ^GSPC, BRK-B)"
SOURCE_RULE = "is not a source: write yahoo, synthetic, sample or csv:DIR"
STRICT = ConfigDict(extra="forbid")


def _ticker(value: str) -> str:
    if not TICKER_PATTERN.match(value):
        raise ValueError(TICKER_RULE)
    return value


def _lookback(value: str) -> str:
    try:
        parse_lookback(value)
    except ConfigError as error:
        if "more than" in str(error):
            raise ValueError(f"reaches back more than {MAX_LOOKBACK_YEARS} years; use at most {MAX_LOOKBACK_YEARS}y") from None
        raise ValueError("is not a lookback: write e.g. 5y, 6mo, 4w or 30d") from None
    return value.strip()


def _source(value: str) -> str:
    if not SOURCE_PATTERN.match(value):
        raise ValueError(SOURCE_RULE)
    return value


def _mongo_uri(value: str) -> str:
    """A mongodb:// URI pymongo can parse (host, port, options), or mongodb+srv:// with a host."""
    from pymongo.errors import PyMongoError
    from pymongo.uri_parser import parse_uri

    if value.startswith("mongodb+srv://"):
        if not re.match(r"^mongodb\+srv://([^@/]+@)?[A-Za-z0-9.-]+\.[A-Za-z]{2,}(/[^ ]*)?$", value):
            raise ValueError("is not a MongoDB URI: write mongodb+srv://USER:PASSWORD@CLUSTER.example.net/")
        return value
    try:
        parse_uri(value)
    except (PyMongoError, ValueError, TypeError) as error:
        reason = re.split(r"[:.](?:\s|$)", str(error))[0][:80]  # the first clause: never the URI itself (it may hold a password)
        raise ValueError(f"is not a MongoDB URI ({reason}): write mongodb://HOST:PORT/ or mongodb+srv://CLUSTER/") from None
    return value


Count = Annotated[int, Strict(), Field(ge=1)]


def at_most(limit: int):
    """A count (an integer, not a boolean) from 1 to ``limit``."""
    return Annotated[int, Strict(), Field(ge=1, le=limit)]
Share = Annotated[float, Field(ge=0, le=1)]
Positive = Annotated[float, Field(gt=0)]
Rate = Annotated[float, Field(gt=0, le=1)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")]
Ticker = Annotated[str, AfterValidator(_ticker)]
Calendar = Annotated[str, Field(pattern=r"^[A-Z0-9_/]{2,12}$")]


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

    @property
    def is_intraday(self) -> bool:
        return not self.name.endswith("d")


@dataclass(frozen=True)
class StorageSettings:
    mongo_uri: str | None
    database: str
    ping_timeout_ms: int
    fallback_dir: Path


@checked(frozen=True, config=STRICT)
class ValidationSettings:
    max_missing_share: Share = 0.05  # completeness: at most this share of expected bars missing
    max_abs_return: Positive = 0.5  # price sanity: a bigger bar-to-bar move is a crash or a bad print
    min_pass_share: Annotated[float, Field(gt=0, le=1)] = 0.8  # the validate stage fails below this share


@checked(frozen=True, config=STRICT)
class RegimeRules:
    """Thresholds of the plan's regime rules (see trading_ml.features.targets.regime_labels)."""

    calm_vix: Positive = 20.0  # Bull needs the fear gauge below this
    fear_vix: Positive = 30.0  # Bear and High-Vol need it above this
    trend_adx: Annotated[float, Field(ge=0, le=100)] = 20.0  # below this the market is choppy: Sideways
    return_bars: Count = 20  # the 'returns' of the rules: the return over this many bars
    horizon: Count = 5  # the forecast target is the label this many bars ahead

    @model_validator(mode="after")
    def fear_above_calm(self):
        if self.fear_vix < self.calm_vix:
            raise ValueError(f"fear_vix {self.fear_vix} is below calm_vix {self.calm_vix}; make fear_vix at least calm_vix")
        return self


@checked(frozen=True, config=STRICT)
class FeatureSettings:
    """What the feature stage needs beyond the bars: market inputs and target definitions."""

    benchmark: Ticker = "^GSPC"
    volatility_index: Ticker = "^VIX"
    direction_threshold: Annotated[float, Field(ge=0, lt=0.1)] = 0.001  # Up above +0.1%, Down below -0.1%, Neutral between
    volatility_window: Annotated[int, Strict(), Field(ge=2)] = 20  # the plan's volatility target: this rolling std, one bar ahead
    forward_volatility_bars: Count = 5  # realized volatility over the next h bars
    warmup_bars: Annotated[int, Strict(), Field(ge=0)] = 500  # bars fetched before each window so every recursive indicator has converged
    regime: RegimeRules = field(default_factory=RegimeRules)


@checked(frozen=True, config=STRICT)
class ModelSettings:
    """Training, splits and evaluation (trading_ml.models)."""

    timeframe: Literal["1d", "1h"] = "1d"  # the training table the models learn from
    seed: Annotated[int, Strict(), Field(ge=0)] = 42
    folds: at_most(20) = 4  # walk-forward: this many test segments at the end of the table, judged pooled
    test_share: Annotated[float, Field(gt=0, lt=0.5)] = 0.1  # each test segment's share of the table's time span
    validation_share: Annotated[float, Field(gt=0, lt=0.5)] = 0.1  # early stopping on this share just before each test segment
    sequence_length: at_most(1_000) = 20  # LSTM input: this many bars
    xgboost_rounds: at_most(100_000) = 400
    xgboost_depth: at_most(32) = 4
    xgboost_learning_rate: Rate = 0.05
    early_stopping_rounds: at_most(10_000) = 30
    lstm_hidden: at_most(4_096) = 32
    lstm_epochs: at_most(10_000) = 8
    lstm_batch: at_most(1_000_000) = 256
    lstm_learning_rate: Rate = 0.001
    forest_trees: at_most(10_000) = 100
    forest_max_samples: at_most(100_000_000) = 100_000  # rows each tree draws; bounds fit time and model size on large universes
    ewma_lambda: Annotated[float, Field(gt=0, lt=1)] = 0.94  # RiskMetrics
    costs_bps: Annotated[float, Field(ge=0)] = 5.0  # per unit of turnover in the long-short backtest
    long_short_share: Annotated[float, Field(gt=0, le=0.5)] = 0.2  # long the top and short the bottom fifth by P(up) - P(down)
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = 0.95  # intervals, and the one-sided level the deploy gate demands
    bootstrap_block_days: at_most(1_000) = 20  # block bootstrap over dates: blocks this many dates long
    bootstrap_samples: Annotated[int, Strict(), Field(ge=100, le=100_000)] = 1000
    min_compare_days: Count = 20  # production is compared on this run's rows it never saw: at least this many dates

    @model_validator(mode="after")
    def room_to_train(self):
        if self.folds * self.test_share + self.validation_share >= 0.8:
            raise ValueError(
                f"folds x test_share + validation_share is {self.folds * self.test_share + self.validation_share:.2f}; "
                "keep it below 0.8 so the first fold trains on at least 20% of the span (e.g. 4 x 0.1 + 0.1)"
            )
        return self


@checked(frozen=True, config=STRICT)
class AirflowSettings:
    """How the DAG (dags/trading_ml_training.py) schedules and retries the stages."""

    schedule: Annotated[str, Field(min_length=9)] = "0 6 1 1,4,7,10 *"  # quarterly: 06:00 UTC on the first day of each quarter
    ingest_retries: Annotated[int, Strict(), Field(ge=0)] = 4
    stage_retries: Annotated[int, Strict(), Field(ge=0)] = 2  # every other task: a lost worker or a store that stopped answering
    retry_delay_seconds: Positive = 30.0  # doubles on each retry, up to max_retry_delay_seconds
    max_retry_delay_seconds: Positive = 600.0
    source_pool: Name = "market_data_source"  # caps concurrent calls to the data provider (Yahoo)
    source_pool_slots: Count = 4
    mongo_conn_id: Name = "mongo_default"


@checked(frozen=True, config=STRICT)
class ApiSettings:
    """The signals API (trading_ml.serving)."""

    max_body_bytes: at_most(100_000_000) = 1_000_000  # larger request bodies get 413
    cached_as_of: at_most(1_000) = 8  # signal tables kept (least recently used first out), one per as-of
    concurrent_builds: at_most(64) = 1  # signal tables built at once (a cold as-of costs seconds of CPU; raise it with the cores)
    build_wait_seconds: Annotated[float, Field(ge=0, le=600)] = 5.0  # a cold request waits this long for a build slot, else 503
    body_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 5.0  # a request body that stops arriving gets 408


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
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    features: FeatureSettings = field(default_factory=FeatureSettings)
    models: ModelSettings = field(default_factory=ModelSettings)
    airflow: AirflowSettings = field(default_factory=AirflowSettings)
    api: ApiSettings = field(default_factory=ApiSettings)

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


def parse_lookback(text: str) -> pd.DateOffset:
    """'5y' -> 5 years, '6mo' -> 6 months, '4w', '30d'."""
    match = LOOKBACK_PATTERN.match(str(text).strip())
    if not match or int(match.group(1)) < 1:
        raise ConfigError(f"lookback {text!r} is not like '5y', '6mo', '4w' or '30d'")
    amount, unit = int(match.group(1)), match.group(2)
    if amount > MAX_LOOKBACK_YEARS * {"y": 1, "mo": 12, "w": 53, "d": 366}[unit]:
        raise ConfigError(f"lookback {text!r} reaches back more than {MAX_LOOKBACK_YEARS} years; use at most {MAX_LOOKBACK_YEARS}y")
    unit_name = {"y": "years", "mo": "months", "w": "weeks", "d": "days"}[unit]
    return pd.DateOffset(**{unit_name: amount})


def check_ticker(symbol: str) -> str:
    if not isinstance(symbol, str) or not TICKER_PATTERN.match(symbol):
        raise ConfigError(f"{shorten(symbol)} {TICKER_RULE}")
    return symbol


def check_source(spec: str) -> str:
    if not isinstance(spec, str) or not SOURCE_PATTERN.match(spec):
        raise ConfigError(f"source {shorten(spec)} {SOURCE_RULE}")
    return spec


class IndexEntry(BaseModel):
    model_config = STRICT
    symbol: Ticker
    name: str | None = None
    exchange: Calendar = "XNYS"
    has_volume: bool = True
    max_abs_return: Positive | None = None


class EquitiesSection(BaseModel):
    model_config = STRICT
    exchange: Calendar = "XNYS"
    sectors: dict[str, list[Ticker]] = {}


class UniverseSection(BaseModel):
    model_config = STRICT
    indices: list[IndexEntry] = []
    equities: EquitiesSection = EquitiesSection()
    fx: list[Ticker] = []
    crypto: list[Ticker] = []
    default_exchange: Calendar = "XNYS"

    @model_validator(mode="after")
    def not_empty(self):
        if not (self.indices or any(self.equities.sectors.values()) or self.fx or self.crypto):
            raise ValueError("lists no symbol: add indices, equities.sectors, fx or crypto")
        return self


class TimeframeEntry(BaseModel):
    model_config = STRICT
    lookback: Annotated[str, AfterValidator(_lookback)]


class StorageSection(BaseModel):
    model_config = STRICT
    mongo_uri: Annotated[str, AfterValidator(_mongo_uri)] | None = None
    database: Annotated[str, Field(pattern=r"^[A-Za-z0-9_\-]{1,60}$")] = "trading_system"
    ping_timeout_ms: Annotated[int, Strict(), Field(ge=1, le=600_000)] = 2000
    fallback_dir: Annotated[str, Field(min_length=1)] = "fallback"


class SyntheticOptions(BaseModel):
    model_config = STRICT
    seed: Annotated[int, Strict(), Field(ge=0)] = 42
    epoch: dt.date = dt.date(2000, 1, 3)
    signal_strength: Annotated[float, Field(ge=0, lt=0.5)] = 0.15  # 0 plants no signal
    market: Literal["regimes", "random_walk"] = "regimes"  # random_walk: no regimes, constant volatility
    faults: dict[Ticker, list[str]] | None = None  # tests' injected faults; kinds checked by the synthetic market


class YahooOptions(BaseModel):
    model_config = STRICT
    retries: Count = 5
    backoff_seconds: Annotated[float, Field(ge=0)] = 2.0


class SourcesSection(BaseModel):
    model_config = STRICT
    synthetic: SyntheticOptions = SyntheticOptions()
    yahoo: YahooOptions = YahooOptions()


class ConfigFile(BaseModel):
    """The shape of config.yaml, every key typed and bounded."""

    model_config = STRICT
    universe: UniverseSection
    timeframes: Annotated[dict[Literal["1d", "1h"], TimeframeEntry], Field(min_length=1)]
    data_dir: Annotated[str, Field(min_length=1)] = "data"
    source: Annotated[str, AfterValidator(_source)] = "synthetic"
    storage: StorageSection = StorageSection()
    validation: ValidationSettings = ValidationSettings()
    sources: SourcesSection = SourcesSection()
    features: FeatureSettings = FeatureSettings()
    models: ModelSettings = ModelSettings()
    airflow: AirflowSettings = AirflowSettings()
    api: ApiSettings = ApiSettings()


ENVIRONMENT_KEYS = {ENV_DATA_DIR: ("data_dir",), ENV_MONGO_URI: ("storage", "mongo_uri"), ENV_SOURCE: ("source",)}
SECRET_KEYS = {("storage", "mongo_uri")}


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read config.yaml (or TRADING_ML_CONFIG), apply the environment overrides, check both against
    the schema; any error is a ConfigError of one line."""
    env = os.environ if env is None else env
    for variable in (ENV_CONFIG, *ENVIRONMENT_KEYS):
        if variable in env and not env[variable].strip():
            raise ConfigError(f"{variable} is set but empty; give it a value or unset it (`unset {variable}`) for the configured one")
    config_path = Path(path or env.get(ENV_CONFIG) or DEFAULT_CONFIG).resolve()
    raw = _read_yaml(config_path)
    overridden = {}
    for variable, key in ENVIRONMENT_KEYS.items():
        section = raw
        for part in key[:-1]:
            section = section.setdefault(part, {})
        if env.get(variable) and isinstance(section, dict):  # a section that is not a mapping is the schema's to report
            section[key[-1]] = env[variable]
            overridden[key] = variable
    try:
        checked_file = ConfigFile.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(describe_error(error, str(config_path), overridden)) from None
    return _settings(checked_file, config_path)


MAX_CONFIG_DEPTH = 20  # nesting levels a config may have (the repo's has 5)
MAX_CONFIG_BYTES = 1_000_000


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping and nesting deeper than
    MAX_CONFIG_DEPTH (PyYAML would keep the last duplicate silently, or recurse until Python stops)."""

    def compose_node(self, parent, index):
        depth = getattr(self, "_depth", 0)
        if depth > MAX_CONFIG_DEPTH:
            mark = self.peek_event().start_mark
            raise yaml.constructor.ConstructorError(None, None, f"nested more than {MAX_CONFIG_DEPTH} levels deep", mark)
        self._depth = depth + 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth = depth

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {str(key)[:40]!r} is given twice in one mapping; keep one",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(config_path: Path) -> dict:
    if not config_path.is_file():
        raise ConfigError(f"config file {config_path} not found; set {ENV_CONFIG} or pass --config")
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(f"{config_path} is {config_path.stat().st_size:,} bytes, more than a config can be ({MAX_CONFIG_BYTES:,}); pass a config file")
    try:
        raw = yaml.load(config_path.read_text(encoding="utf-8"), Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError as error:
        raise ConfigError(f"{config_path}: not a text file (byte {error.start} is not UTF-8); pass a YAML config") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{config_path}: not valid YAML{where}: {problem}; fix that line") from None
    if raw is None:
        raise ConfigError(f"{config_path} is empty; start from the repo's config.yaml")
    if not isinstance(raw, dict):
        raise ConfigError(f"{config_path} must be a mapping of settings (universe:, timeframes:, ...), not a {type(raw).__name__}")
    return {key: value for key, value in raw.items() if value is not None}  # an empty section (`storage:`) means its defaults


def _settings(config: ConfigFile, config_path: Path) -> Settings:
    data_dir = Path(config.data_dir).expanduser()
    if not data_dir.is_absolute():
        data_dir = (Path.cwd() / data_dir).resolve()
    if data_dir.exists() and not data_dir.is_dir():
        raise ConfigError(f"data_dir {data_dir} is a file, not a folder; pass --data-dir (or {ENV_DATA_DIR}) a folder")
    storage = config.storage
    return Settings(
        config_path=config_path,
        universe=_instruments(config.universe),
        default_exchange=config.universe.default_exchange,
        timeframes={name: Timeframe(name=name, lookback=entry.lookback) for name, entry in config.timeframes.items()},
        data_dir=data_dir,
        source=config.source,
        storage=StorageSettings(storage.mongo_uri, storage.database, storage.ping_timeout_ms, data_dir / storage.fallback_dir),
        validation=config.validation,
        sources=config.sources.model_dump(exclude_none=True),
        features=config.features,
        models=config.models,
        airflow=config.airflow,
        api=config.api,
    )


def _instruments(universe: UniverseSection) -> dict[str, Instrument]:
    instruments = {
        entry.symbol: Instrument(symbol=entry.symbol, kind="index", exchange=entry.exchange, name=entry.name,
                                 has_volume=entry.has_volume, max_abs_return=entry.max_abs_return)
        for entry in universe.indices
    }
    for sector, symbols in universe.equities.sectors.items():
        for symbol in symbols:
            instruments[symbol] = Instrument(symbol=symbol, kind="equity", exchange=universe.equities.exchange, sector=sector)
    for symbol in universe.fx:
        instruments[symbol] = Instrument(symbol=symbol, kind="fx", exchange="FX", has_volume=False)
    for symbol in universe.crypto:
        instruments[symbol] = Instrument(symbol=symbol, kind="crypto", exchange="CRYPTO")
    return instruments


def describe_error(error: ValidationError, where: str, overridden: dict[tuple, str] | None = None) -> str:
    """The first error of a validation as one line: the key (or environment variable), the value as
    written (never a secret's), and what to write instead."""
    first = error.errors()[0]
    location = tuple(str(part) for part in first["loc"] if part not in ("[key]",))
    name = (overridden or {}).get(location) or f"{where}: {'.'.join(location) or 'the file'}"
    shown = first.get("input")
    hidden = location in SECRET_KEYS or first["type"] in ("missing",) or isinstance(shown, dict | list)
    value = "" if hidden else f" = {shorten(shown)}"
    return f"{name}{value}: {_advice(first, location)}"


def shorten(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _advice(error: dict, location: tuple[str, ...]) -> str:
    kind, context = error["type"], error.get("ctx") or {}
    bounds = {"greater_than_equal": ">= {ge}", "greater_than": "> {gt}", "less_than_equal": "<= {le}", "less_than": "< {lt}"}
    if kind in bounds:
        return f"must be {bounds[kind].format(**context)}"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        known = _field_names(location[:-1])
        nearest = difflib.get_close_matches(location[-1], known, n=1)
        return f"unknown key; did you mean {nearest[0]!r}?" if nearest else f"unknown key; known keys here: {', '.join(known)}"
    if kind == "missing":
        return "is missing; add it (see the repo's config.yaml)"
    if kind in ("int_parsing", "int_type", "int_from_float"):
        return "must be a whole number"
    if kind in ("float_parsing", "float_type"):
        return "must be a number"
    if kind in ("bool_parsing", "bool_type"):
        return "must be true or false"
    if kind.startswith("date"):
        return "must be a date YYYY-MM-DD"
    if kind == "literal_error":
        return f"must be one of {context.get('expected')}"
    if kind in ("dict_type", "list_type", "model_type", "dataclass_type", "model_attributes_type", "dataclass_args_type"):
        return f"must be a {'list' if kind == 'list_type' else 'mapping'}"
    if kind == "string_type":
        return "must be text"
    if kind == "string_pattern_mismatch":
        return f"must match {context.get('pattern')}"
    if kind in ("too_short", "string_too_short"):
        return "must not be empty"
    return error["msg"].removeprefix("Value error, ")


def _field_names(location: tuple[str, ...]) -> list[str]:
    """The keys the schema allows at a location of the file."""
    kind: Any = ConfigFile
    for part in location:
        fields = _fields_of(kind)
        if part in fields:
            kind = fields[part]
        else:  # a dict key or a list index: the value type
            kind = next((arg for arg in typing.get_args(kind) if _fields_of(arg)), kind)
        kind = _model_in(kind)
    return list(_fields_of(kind))


def _model_in(kind: Any) -> Any:
    """The model or dataclass inside an annotation (Optional[X], list[X], dict[K, X], Annotated[X, ...])."""
    if _fields_of(kind):
        return kind
    for arg in typing.get_args(kind):
        found = _model_in(arg)
        if _fields_of(found):
            return found
    return kind


def _fields_of(kind: Any) -> dict[str, Any]:
    fields = getattr(kind, "model_fields", None) or getattr(kind, "__pydantic_fields__", None)
    return {name: info.annotation for name, info in fields.items()} if isinstance(fields, dict) else {}


EARLIEST_AS_OF = dt.date(1900, 1, 1)
MAX_LOOKBACK_YEARS = 50  # no window reaches back further (dates stay in range, and no source has more)


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
        raise ConfigError(f"as-of date {as_of} is before {EARLIEST_AS_OF}; no market data reaches back that far: pass a later date")
    if as_of > today:
        raise ConfigError(
            f"as-of date {as_of} is in the future (today is {today}); "
            "pass today or an earlier date"
        )
    return as_of
