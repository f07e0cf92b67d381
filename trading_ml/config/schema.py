"""The typed sections of config.yaml (pydantic v2): every key has a type and bounds, unknown keys are
refused. The sections that belong to a model or a data source are declared next to it (each model
class's ``Params``, each source class's ``Options``); :mod:`trading_ml.config.loader` joins them
with these into the file's schema, so nothing here knows which models or sources exist. Nothing
here hard-codes a year."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping
from dataclasses import field, replace
from typing import Annotated, Any, Literal

import pandas as pd
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, Strict, model_validator
from pydantic.dataclasses import dataclass as checked

from trading_ml.config.messages import shorten
from trading_ml.errors import ConfigError, UnknownModel

TICKER_PATTERN = re.compile(r"^[\^A-Z0-9][A-Z0-9.\-=^]{0,19}$")
LOOKBACK_PATTERN = re.compile(r"^(\d+)(y|mo|w|d)$")
TICKER_RULE = "is not a ticker: use upper-case letters, digits and . - = ^ (for example AAPL, ^GSPC, BRK-B)"
STRICT = ConfigDict(extra="forbid")
EARLIEST_AS_OF = dt.date(1900, 1, 1)
MAX_LOOKBACK_YEARS = 50  # no window reaches back further (dates stay in range, and no source has more)


def parse_lookback(text: str) -> pd.DateOffset:
    """'5y' -> 5 years, '6mo' -> 6 months, '4w', '30d'."""
    match = LOOKBACK_PATTERN.match(str(text).strip())
    if not match or int(match.group(1)) < 1:
        raise ConfigError(f"lookback {text!r} is not like '5y', '6mo', '4w' or '30d'")
    amount, unit = int(match.group(1)), match.group(2)
    if amount > MAX_LOOKBACK_YEARS * {"y": 1, "mo": 12, "w": 53, "d": 366}[unit]:
        raise ConfigError(
            f"lookback {text!r} reaches back more than {MAX_LOOKBACK_YEARS} years; use at most {MAX_LOOKBACK_YEARS}y"
        )
    unit_name = {"y": "years", "mo": "months", "w": "weeks", "d": "days"}[unit]
    return pd.DateOffset(**{unit_name: amount})


def check_ticker(symbol: str) -> str:
    if not isinstance(symbol, str) or not TICKER_PATTERN.match(symbol):
        raise ConfigError(f"{shorten(symbol)} {TICKER_RULE}")
    return symbol


def _ticker(value: str) -> str:
    if not TICKER_PATTERN.match(value):
        raise ValueError(TICKER_RULE)
    return value


def _lookback(value: str) -> str:
    try:
        parse_lookback(value)
    except ConfigError as error:
        if "more than" in str(error):
            raise ValueError(
                f"reaches back more than {MAX_LOOKBACK_YEARS} years; use at most {MAX_LOOKBACK_YEARS}y"
            ) from None
        raise ValueError("is not a lookback: write e.g. 5y, 6mo, 4w or 30d") from None
    return value.strip()


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
        reason = re.split(r"[:.](?:\s|$)", str(error))[0][
            :80
        ]  # the first clause: never the URI itself (it may hold a password)
        raise ValueError(
            f"is not a MongoDB URI ({reason}): write mongodb://HOST:PORT/ or mongodb+srv://CLUSTER/"
        ) from None
    return value


Count = Annotated[int, Strict(), Field(ge=1)]
MAX_VOLATILITY_HORIZON = 250  # bars: a year of daily bars; a model file claiming more is refused
MAX_SEED = 2**31 - 1
MAX_WARMUP_BARS = 10_000


def at_most(limit: int):
    """A count (an integer, not a boolean) from 1 to ``limit``."""
    return Annotated[int, Strict(), Field(ge=1, le=limit)]


Share = Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)]
Positive = Annotated[float, Field(gt=0, allow_inf_nan=False)]  # finite: .inf would switch a check off
Rate = Annotated[float, Field(gt=0, le=1, allow_inf_nan=False)]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_.\-]+$")]
Ticker = Annotated[str, AfterValidator(_ticker)]
Calendar = Annotated[str, Field(pattern=r"^[A-Z0-9_/]{2,12}$")]


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
            raise ValueError(
                f"fear_vix {self.fear_vix} is below calm_vix {self.calm_vix}; make fear_vix at least calm_vix"
            )
        return self


@checked(frozen=True, config=STRICT)
class FeatureSettings:
    """What the feature stage needs beyond the bars: market inputs and target definitions."""

    benchmark: Ticker = "^GSPC"
    volatility_index: Ticker = "^VIX"
    direction_threshold: Annotated[float, Field(ge=0, lt=0.1)] = (
        0.001  # Up above +0.1%, Down below -0.1%, Neutral between
    )
    volatility_window: Annotated[int, Strict(), Field(ge=2)] = (
        20  # the plan's volatility target: this rolling std, one bar ahead
    )
    forward_volatility_bars: Annotated[int, Strict(), Field(ge=1, le=MAX_VOLATILITY_HORIZON)] = (
        5  # h: the volatility task's target is realized volatility over the next h bars
    )
    warmup_bars: Annotated[int, Strict(), Field(ge=0, le=MAX_WARMUP_BARS)] = (
        500  # bars fetched before each window so every recursive indicator has converged
    )
    regime: RegimeRules = field(default_factory=RegimeRules)


def room_to_train(models):
    """Refuse walk-forward settings that leave the first fold less than 20% of the span to train on."""
    if models.folds * models.test_share + models.validation_share >= 0.8:
        raise ValueError(
            "folds x test_share + validation_share is "
            f"{models.folds * models.test_share + models.validation_share:.2f}; "
            "keep it below 0.8 so the first fold trains on at least 20% of the span (e.g. 4 x 0.1 + 0.1)"
        )
    return models


@checked(frozen=True, config=STRICT)
class ModelSettings:
    """Training, splits and evaluation shared by every model (trading_ml.models); each model's own
    parameters are in ``params`` (config.yaml `models.<model name>`, declared by the model's class)."""

    timeframe: Literal["1d", "1h"] = "1d"  # the training table the models learn from
    direction_labels: Literal["absolute", "cross_sectional"] = (
        "absolute"  # what direction models learn: the next return's sign, or its tercile across the date's symbols
    )
    seed: Annotated[int, Strict(), Field(ge=0, le=MAX_SEED)] = 42  # every library takes a 32-bit seed
    folds: at_most(20) = 4  # walk-forward: this many test segments at the end of the table, judged pooled
    test_share: Annotated[float, Field(gt=0, lt=0.5)] = 0.1  # each test segment's share of the table's time span
    validation_share: Annotated[float, Field(gt=0, lt=0.5)] = (
        0.1  # early stopping on this share just before each test segment
    )
    ewma_lambda: Annotated[float, Field(gt=0, lt=1)] = 0.94  # RiskMetrics
    costs_bps: Annotated[float, Field(ge=0, allow_inf_nan=False)] = (
        5.0  # per unit of turnover in the long-short backtest
    )
    long_short_share: Annotated[float, Field(gt=0, le=0.5)] = (
        0.2  # long the top and short the bottom fifth by P(up) - P(down)
    )
    confidence: Annotated[float, Field(gt=0.5, lt=1)] = (
        0.95  # intervals, and the one-sided level the deploy gate demands
    )
    bootstrap_block_days: at_most(1_000) = 20  # block bootstrap over dates: blocks this many dates long
    bootstrap_samples: Annotated[int, Strict(), Field(ge=100, le=100_000)] = 1000
    min_compare_days: Count = 20  # production is compared on this run's rows it never saw: at least this many dates
    cores: Annotated[int, Strict(), Field(ge=0, le=4096)] = (
        0  # cores a stage uses: fit threads (XGBoost, forest, torch, BLAS), data-stage workers; 0: this machine's
    )
    parallel_trainings: Annotated[int, Strict(), Field(ge=0, le=64)] = (
        0  # the CLI's trainings at once, each in a process of its own sharing models.cores; 0: one per core
    )
    params: Mapping[str, Any] = field(
        default_factory=dict
    )  # model name -> its class's Params (config.yaml `models.<name>`)

    @model_validator(mode="after")
    def room_to_train(self):
        return room_to_train(self)

    def of(self, model: str) -> Any:
        """A model's parameters (config.yaml `models.<model>`)."""
        if model not in self.params:
            raise UnknownModel(
                f"model {shorten(model)} takes no parameters; configurable models are {', '.join(self.params)}"
            )
        return self.params[model]

    @property
    def longest_sequence(self) -> int:
        """The most bars of history any model reads per prediction (0 when none reads a sequence)."""
        return max((getattr(params, "sequence_length", 0) for params in self.params.values()), default=0)

    def tuned(self, **changes: Mapping[str, Any]) -> ModelSettings:
        """These settings with some models' parameters changed, checked as the config's are:
        ``tuned(direction_lstm={"epochs": 2})``."""
        params = dict(self.params)
        for model, values in changes.items():
            params[model] = replace(self.of(model), **values)
        return replace(self, params=params)


@checked(frozen=True, config=STRICT)
class AirflowSettings:
    """How the DAG (dags/trading_ml_training.py) schedules and retries the stages."""

    schedule: Annotated[str, Field(min_length=9)] = (
        "0 6 1 1,4,7,10 *"  # quarterly: 06:00 UTC on the first day of each quarter
    )
    ingest_retries: Annotated[int, Strict(), Field(ge=0)] = 4
    stage_retries: Annotated[int, Strict(), Field(ge=0)] = (
        2  # every other task: a lost worker or a store that stopped answering
    )
    retry_delay_seconds: Positive = 30.0  # doubles on each retry, up to max_retry_delay_seconds
    max_retry_delay_seconds: Positive = 600.0
    source_pool: Name = "market_data_source"  # caps concurrent calls to the data provider (Yahoo)
    source_pool_slots: Count = 4
    mongo_conn_id: Name = "mongo_default"
    training_pool: Name = "model_training"  # caps the training tasks that run at once, across the workers
    training_pool_slots: Annotated[int, Strict(), Field(ge=0, le=4096)] = (
        0  # 0: models.cores (0: the cores of the machine that creates the pool): one training per core
    )
    parallel_trainings: Annotated[int, Strict(), Field(ge=0, le=64)] = (
        0  # training tasks a worker runs at once, sharing models.cores; 0: the training pool's slots,
        # or the models the run trains when fewer
    )
    approve_promotions: Annotated[bool, Strict()] = (
        False  # a person approves each promotion the gate proposes (Airflow's human-in-the-loop)
    )


@checked(frozen=True, config=STRICT)
class ApiSettings:
    """The signals API (trading_ml.serving)."""

    max_body_bytes: at_most(100_000_000) = 1_000_000  # larger request bodies get 413
    cached_as_of: at_most(1_000) = (
        8  # signal tables kept (least recently used out first), one per stored bars and production versions
    )
    concurrent_builds: at_most(64) = (
        1  # signal tables built at once (a cold as-of costs seconds of CPU; raise it with the cores)
    )
    build_wait_seconds: Annotated[float, Field(ge=0, le=600)] = (
        5.0  # a cold request waits this long for a build slot, else 503
    )
    body_timeout_seconds: Annotated[float, Field(gt=0, le=600)] = 5.0  # a request body that stops arriving gets 408


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


SECRET_KEYS = frozenset({("storage", "mongo_uri")})
