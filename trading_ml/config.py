"""Settings: config.yaml plus environment overrides, checked when read.

Nothing here hard-codes a year: every date window is derived from a run's as-of date (trading_ml.run).
"""

from __future__ import annotations

import datetime as dt
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from trading_ml.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "config.yaml"

ENV_CONFIG = "TRADING_ML_CONFIG"
ENV_DATA_DIR = "TRADING_ML_DATA_DIR"
ENV_MONGO_URI = "TRADING_ML_MONGO_URI"
ENV_SOURCE = "TRADING_ML_SOURCE"

TICKER_PATTERN = re.compile(r"^[\^A-Z0-9][A-Z0-9.\-=^]{0,19}$")
LOOKBACK_PATTERN = re.compile(r"^(\d+)(y|mo|w|d)$")


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


@dataclass(frozen=True)
class ValidationSettings:
    max_missing_share: float
    max_abs_return: float
    min_pass_share: float


@dataclass(frozen=True)
class RegimeRules:
    """Thresholds of the plan's regime rules (see trading_ml.features.targets.regime_labels)."""

    calm_vix: float = 20.0  # Bull needs the fear gauge below this
    fear_vix: float = 30.0  # Bear and High-Vol need it above this
    trend_adx: float = 20.0  # below this the market is choppy: Sideways
    return_bars: int = 20  # the 'returns' of the rules: the return over this many bars
    horizon: int = 5  # the forecast target is the label this many bars ahead


@dataclass(frozen=True)
class FeatureSettings:
    """What the feature stage needs beyond the bars: market inputs and target definitions."""

    benchmark: str = "^GSPC"
    volatility_index: str = "^VIX"
    direction_threshold: float = 0.001  # Up above +0.1%, Down below -0.1%, Neutral between
    volatility_window: int = 20  # the plan's volatility target: this rolling std, one bar ahead
    forward_volatility_bars: int = 5  # realized volatility over the next h bars
    warmup_bars: int = 500  # bars fetched before each window so every recursive indicator has converged
    regime: RegimeRules = field(default_factory=RegimeRules)


@dataclass(frozen=True)
class ModelSettings:
    """Training, splits and evaluation (trading_ml.models)."""

    timeframe: str = "1d"  # the training table the models learn from
    seed: int = 42
    folds: int = 4  # walk-forward: this many test segments at the end of the table, judged pooled
    test_share: float = 0.1  # each test segment's share of the table's time span
    validation_share: float = 0.1  # early stopping on this share just before each test segment
    sequence_length: int = 20  # LSTM input: this many bars
    xgboost_rounds: int = 400
    xgboost_depth: int = 4
    xgboost_learning_rate: float = 0.05
    early_stopping_rounds: int = 30
    lstm_hidden: int = 32
    lstm_epochs: int = 8
    lstm_batch: int = 256
    lstm_learning_rate: float = 0.001
    forest_trees: int = 100
    forest_max_samples: int = 100_000  # rows each tree draws; bounds fit time and model size on large universes
    ewma_lambda: float = 0.94  # RiskMetrics
    costs_bps: float = 5.0  # per unit of turnover in the long-short backtest
    long_short_share: float = 0.2  # long the top and short the bottom fifth by P(up) - P(down)
    confidence: float = 0.95  # intervals, and the one-sided level the deploy gate demands
    bootstrap_block_days: int = 20  # block bootstrap over dates: blocks this many dates long
    bootstrap_samples: int = 1000
    min_compare_days: int = 20  # production is compared on this run's rows it never saw: at least this many dates


@dataclass(frozen=True)
class AirflowSettings:
    """How the DAG (dags/trading_ml_training.py) schedules and retries the stages."""

    schedule: str = "0 6 1 1,4,7,10 *"  # quarterly: 06:00 UTC on the first day of each quarter
    ingest_retries: int = 4
    stage_retries: int = 2  # every other task: a store that stopped answering may be back; bad input fails at once
    retry_delay_seconds: float = 30.0  # doubles on each retry, up to max_retry_delay_seconds
    max_retry_delay_seconds: float = 600.0
    source_pool: str = "market_data_source"  # caps concurrent calls to the data provider (Yahoo)
    source_pool_slots: int = 4
    mongo_conn_id: str = "mongo_default"


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
    if not match:
        raise ConfigError(f"lookback {text!r} is not like '5y', '6mo', '4w' or '30d'")
    amount, unit = int(match.group(1)), match.group(2)
    unit_name = {"y": "years", "mo": "months", "w": "weeks", "d": "days"}[unit]
    return pd.DateOffset(**{unit_name: amount})


def check_ticker(symbol: str) -> str:
    if not isinstance(symbol, str) or not TICKER_PATTERN.match(symbol):
        raise ConfigError(
            f"{symbol!r} is not a ticker: use upper-case letters, digits and . - = ^ "
            "(for example AAPL, ^GSPC, BRK-B)"
        )
    return symbol


def load_settings(path: str | Path | None = None, env: dict[str, str] | None = None) -> Settings:
    """Read config.yaml (or TRADING_ML_CONFIG) and apply the environment overrides."""
    env = os.environ if env is None else env
    config_path = Path(path or env.get(ENV_CONFIG) or DEFAULT_CONFIG).resolve()
    if not config_path.is_file():
        raise ConfigError(f"config file {config_path} not found; set {ENV_CONFIG} or pass --config")
    try:
        raw = yaml.safe_load(config_path.read_text()) or {}
    except yaml.YAMLError as error:
        raise ConfigError(f"{config_path} is not valid YAML: {error}") from error
    return _settings_from_mapping(raw, config_path, env)


def _settings_from_mapping(raw: dict, config_path: Path, env) -> Settings:
    _reject_unknown_keys(raw, config_path)
    data_dir = Path(env.get(ENV_DATA_DIR) or raw.get("data_dir") or "data")
    if not data_dir.is_absolute():
        data_dir = (Path.cwd() / data_dir).resolve()
    storage = raw.get("storage") or {}
    validation = raw.get("validation") or {}
    return Settings(
        config_path=config_path,
        universe=_parse_universe(raw.get("universe"), config_path),
        default_exchange=str((raw.get("universe") or {}).get("default_exchange") or "XNYS"),
        timeframes=_parse_timeframes(raw.get("timeframes"), config_path),
        data_dir=data_dir,
        source=str(env.get(ENV_SOURCE) or raw.get("source") or "synthetic"),
        storage=StorageSettings(
            mongo_uri=env.get(ENV_MONGO_URI) or storage.get("mongo_uri") or None,
            database=str(storage.get("database", "trading_system")),
            ping_timeout_ms=int(storage.get("ping_timeout_ms", 2000)),
            fallback_dir=data_dir / str(storage.get("fallback_dir", "fallback")),
        ),
        validation=ValidationSettings(
            max_missing_share=float(validation.get("max_missing_share", 0.05)),
            max_abs_return=float(validation.get("max_abs_return", 0.5)),
            min_pass_share=float(validation.get("min_pass_share", 0.8)),
        ),
        sources=dict(raw.get("sources") or {}),
        features=_parse_features(raw.get("features") or {}, config_path),
        models=_parse_models(raw.get("models") or {}, config_path),
        airflow=AirflowSettings(**_typed_options(AirflowSettings, raw.get("airflow") or {}, f"{config_path}: airflow")),
    )


KNOWN_KEYS = {"universe", "timeframes", "data_dir", "source", "storage", "validation", "sources", "features", "models", "airflow"}


def _reject_unknown_keys(raw: dict, config_path: Path) -> None:
    if not isinstance(raw, dict):
        raise ConfigError(f"{config_path} must be a mapping of settings")
    unknown = sorted(set(raw) - KNOWN_KEYS)
    if unknown:
        raise ConfigError(
            f"{config_path}: unknown key(s) {', '.join(unknown)}; known keys are "
            f"{', '.join(sorted(KNOWN_KEYS))}"
        )


def _parse_universe(raw: dict | None, config_path: Path) -> dict[str, Instrument]:
    if not raw or "equities" not in raw:
        raise ConfigError(f"{config_path}: `universe` needs `indices` and `equities`")
    instruments: dict[str, Instrument] = {}
    for entry in raw.get("indices") or []:
        symbol = check_ticker(entry["symbol"])
        instruments[symbol] = Instrument(
            symbol=symbol,
            kind="index",
            exchange=str(entry.get("exchange", "XNYS")),
            name=entry.get("name"),
            has_volume=bool(entry.get("has_volume", True)),
            max_abs_return=entry.get("max_abs_return"),
        )
    equities = raw["equities"]
    exchange = str(equities.get("exchange", "XNYS"))
    for sector, symbols in (equities.get("sectors") or {}).items():
        for symbol in symbols:
            instruments[check_ticker(symbol)] = Instrument(
                symbol=symbol, kind="equity", exchange=exchange, sector=sector
            )
    for kind, calendar_name, has_volume in (("fx", "FX", False), ("crypto", "CRYPTO", True)):
        for symbol in raw.get(kind) or []:
            instruments[check_ticker(symbol)] = Instrument(symbol=symbol, kind=kind, exchange=calendar_name, has_volume=has_volume)
    return instruments


def _parse_features(raw: dict, config_path: Path) -> FeatureSettings:
    """`features:` of config.yaml; unknown keys or wrong types are refused by name, missing ones default."""
    regime = _typed_options(RegimeRules, dict(raw.get("regime") or {}), f"{config_path}: features.regime")
    options = {k: v for k, v in raw.items() if k != "regime"}
    features = FeatureSettings(**_typed_options(FeatureSettings, options, f"{config_path}: features"), regime=RegimeRules(**regime))
    for name in ("benchmark", "volatility_index"):
        check_ticker(getattr(features, name))
    if not 0 <= features.direction_threshold < 0.1:
        raise ConfigError(f"{config_path}: features.direction_threshold {features.direction_threshold} must be in [0, 0.1)")
    return features


def _parse_models(raw: dict, config_path: Path) -> ModelSettings:
    models = ModelSettings(**_typed_options(ModelSettings, raw, f"{config_path}: models"))
    if models.folds < 1 or not (0 < models.test_share and 0 < models.validation_share):
        raise ConfigError(f"{config_path}: models.folds must be at least 1 and test_share, validation_share above 0")
    if models.folds * models.test_share + models.validation_share >= 0.8:
        raise ConfigError(f"{config_path}: models.folds x test_share + validation_share must leave at least 20% of the span "
                          "for the first fold's training (e.g. 4 x 0.1 + 0.1)")
    if not 0.5 < models.confidence < 1 or models.bootstrap_block_days < 1 or models.bootstrap_samples < 100:
        raise ConfigError(f"{config_path}: models.confidence must be in (0.5, 1), bootstrap_block_days at least 1, bootstrap_samples at least 100")
    if models.timeframe not in ("1d", "1h"):
        raise ConfigError(f"{config_path}: models.timeframe {models.timeframe!r} must be 1d or 1h")
    return models


def _typed_options(kind: type, raw: dict, where: str) -> dict:
    """raw's values converted to the types of kind's defaults; unknown keys raise ConfigError."""
    defaults = {name: f.default for name, f in kind.__dataclass_fields__.items() if not callable(f.default_factory)}
    unknown = sorted(set(raw) - set(defaults))
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(unknown)}; known keys are {', '.join(defaults)}")
    typed = {}
    for name, value in raw.items():
        try:
            typed[name] = type(defaults[name])(value)
        except (TypeError, ValueError) as error:
            kind_name = {"int": "an integer", "float": "a number"}.get(type(defaults[name]).__name__, "a string")
            raise ConfigError(f"{where}.{name}: {value!r} is not {kind_name}") from error
    return typed


def _parse_timeframes(raw: dict | None, config_path: Path) -> dict[str, Timeframe]:
    if not raw:
        raise ConfigError(f"{config_path}: `timeframes` is empty; expected e.g. 1d: {{lookback: 5y}}")
    timeframes = {}
    for name, spec in raw.items():
        if name not in ("1d", "1h"):
            raise ConfigError(f"{config_path}: timeframe {name!r} is not supported; use 1d or 1h")
        timeframes[name] = Timeframe(name=name, lookback=str((spec or {}).get("lookback", "")))
        timeframes[name].offset  # noqa: B018 - validates the lookback now, not mid-run
    return timeframes


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
    if as_of > today:
        raise ConfigError(
            f"as-of date {as_of} is in the future (today is {today}); "
            "pass today or an earlier date"
        )
    return as_of
