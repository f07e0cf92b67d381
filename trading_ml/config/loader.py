"""Reading config.yaml (or TRADING_ML_CONFIG) and the environment overrides, and checking both
against the file's schema: the sections of trading_ml.config.schema joined with the parts the
drivers give (:class:`ConfigParts`: each model's ``Params``, each source's ``Options`` and the rule of
a source spec; :mod:`trading_ml.drivers` builds them from the catalogue and the sources). Any error
is a ConfigError of one line (trading_ml.config.messages)."""

from __future__ import annotations

import copy
import functools
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError, model_validator
from pydantic import create_model as pydantic_create_model

from trading_ml.config.messages import describe_error, shorten
from trading_ml.config.schema import (
    SECRET_KEYS,
    STRICT,
    AirflowSettings,
    ApiSettings,
    FeatureSettings,
    ModelSettings,
    StorageSection,
    TimeframeEntry,
    UniverseSection,
    ValidationSettings,
    room_to_train,
)
from trading_ml.config.settings import Instrument, Settings, StorageSettings, Timeframe
from trading_ml.errors import ConfigError

create_model: Any = pydantic_create_model  # fields given as a dict, which its overloads do not describe

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_CONFIG = REPO_ROOT / "config.yaml"

ENV_CONFIG = "TRADING_ML_CONFIG"
ENV_DATA_DIR = "TRADING_ML_DATA_DIR"
ENV_MONGO_URI = "TRADING_ML_MONGO_URI"
ENV_MONGO_URI_FILE = (
    "TRADING_ML_MONGO_URI_FILE"  # a file holding the URI (a Docker secret), when TRADING_ML_MONGO_URI is unset
)
ENV_SOURCE = "TRADING_ML_SOURCE"
ENVIRONMENT_KEYS = {ENV_DATA_DIR: ("data_dir",), ENV_MONGO_URI: ("storage", "mongo_uri"), ENV_SOURCE: ("source",)}
MAX_CONFIG_DEPTH = 20  # nesting levels a config may have (the repo's has 5)
MAX_CONFIG_BYTES = 1_000_000


@dataclass(frozen=True)
class ConfigParts:
    """What the layers above give the schema: each configurable model's ``Params`` (`models.<name>`),
    each source's ``Options`` (`sources.<kind>`), and the rule a `source:` spec follows (``source_problem``:
    None for a spec it knows, else what to write)."""

    model_params: tuple[tuple[str, type], ...]
    source_options: tuple[tuple[str, type], ...]
    source_problem: Callable[[object], str | None]


def load_settings(
    path: str | Path | None = None, env: Mapping[str, str] | None = None, *, parts: ConfigParts
) -> Settings:
    """Read config.yaml (or TRADING_ML_CONFIG), apply the environment overrides, check both against
    the schema; any error is a ConfigError of one line."""
    env = os.environ if env is None else env
    for variable in (ENV_CONFIG, *ENVIRONMENT_KEYS):
        if variable in env and not env[variable].strip():
            raise ConfigError(
                f"{variable} is set but empty; give it a value or unset it (`unset {variable}`) for the configured one"
            )
    env = _with_uri_file(env)
    config_path = Path(path or env.get(ENV_CONFIG) or DEFAULT_CONFIG).resolve()
    raw = _read_yaml(config_path)
    overridden = _apply_environment(raw, env)
    schema = config_schema(parts)
    try:
        checked_file = schema.model_validate(raw)
    except ValidationError as error:
        raise ConfigError(describe_error(error, str(config_path), schema, overridden, SECRET_KEYS)) from None
    return _settings(checked_file, config_path, parts)


def settings_from_document(
    document: dict, origin: Path, env: Mapping[str, str], parts: ConfigParts, config_path: Path | None = None
) -> Settings:
    """Settings from a document in config.yaml's shape (a run's settings.json, ``origin``), checked by
    the same schema; only the data folder and the MongoDB URI come from the environment.
    ``config_path``: the config file the run started from (what the settings say they came from)."""
    env = _with_uri_file(
        {key: value for key, value in env.items() if key in (ENV_DATA_DIR, ENV_MONGO_URI, ENV_MONGO_URI_FILE)}
    )
    raw = copy.deepcopy(document)
    overridden = _apply_environment(raw, env)
    schema = config_schema(parts)
    try:
        checked_file = schema.model_validate_json(json.dumps(raw))
    except ValidationError as error:
        raise ConfigError(describe_error(error, str(origin), schema, overridden, SECRET_KEYS)) from None
    return _settings(checked_file, config_path or origin, parts)


def _with_uri_file(env) -> dict:
    """The environment with TRADING_ML_MONGO_URI read from TRADING_ML_MONGO_URI_FILE when only the file is given."""
    path = env.get(ENV_MONGO_URI_FILE, "").strip()
    if not path or env.get(ENV_MONGO_URI):
        return env
    try:
        uri = Path(path).read_text().strip()
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(
            f"{ENV_MONGO_URI_FILE} {shorten(path)} cannot be read ({getattr(error, 'strerror', None) or error}); "
            "point it at a file holding the MongoDB URI, or unset it"
        ) from None
    if not uri:
        raise ConfigError(f"{ENV_MONGO_URI_FILE} {shorten(path)} is empty; write the MongoDB URI into it, or unset it")
    return {**env, ENV_MONGO_URI: uri}


def _apply_environment(raw: dict, env) -> dict[tuple, str]:
    """Write the set environment overrides into the file's values; which key each one replaced."""
    overridden = {}
    for variable, key in ENVIRONMENT_KEYS.items():
        section = raw
        for part in key[:-1]:
            section = section.setdefault(part, {})
        if env.get(variable) and isinstance(section, dict):  # a section that is not a mapping is the schema's to report
            section[key[-1]] = env[variable]
            overridden[key] = variable
    return overridden


# keys of the flat `models:` section before each model declared its own parameters: where each went
MOVED_MODEL_KEYS = {
    "sequence_length": "models.direction_lstm.sequence_length and models.volatility_lstm.sequence_length",
    "lstm_hidden": "models.direction_lstm.hidden and models.volatility_lstm.hidden",
    "lstm_epochs": "models.direction_lstm.epochs and models.volatility_lstm.epochs",
    "lstm_batch": "models.direction_lstm.batch and models.volatility_lstm.batch",
    "lstm_learning_rate": "models.direction_lstm.learning_rate and models.volatility_lstm.learning_rate",
    "xgboost_rounds": "models.direction_xgboost.rounds",
    "xgboost_depth": "models.direction_xgboost.depth",
    "xgboost_learning_rate": "models.direction_xgboost.learning_rate",
    "early_stopping_rounds": "models.direction_xgboost.early_stopping_rounds",
    "forest_trees": "models.regime_rf.trees",
    "forest_max_samples": "models.regime_rf.max_samples",
}


class ModelsBase(BaseModel):
    """`models:` of the file: ModelSettings' shared keys plus one section per configurable model."""

    model_config = STRICT

    @model_validator(mode="before")
    @classmethod
    def moved_keys(cls, data):
        moved = [key for key in MOVED_MODEL_KEYS if isinstance(data, dict) and key in data]
        if moved:
            raise ValueError(
                f"`{moved[0]}` now belongs to its model: write {MOVED_MODEL_KEYS[moved[0]]} "
                "(each model's parameters sit under its name, see the repo's config.yaml)"
            )
        return data

    @model_validator(mode="after")
    def room_to_train(self):
        return room_to_train(self)

    def settings(self) -> ModelSettings:
        """The shared settings, with each model's section as its parameters."""
        models = [name for name in type(self).model_fields if name not in SHARED_MODEL_FIELDS]
        return ModelSettings(
            **self.model_dump(exclude=set(models)), params={name: getattr(self, name) for name in models}
        )


SHARED_MODEL_FIELDS: dict[str, Any] = getattr(ModelSettings, "__pydantic_fields__")  # noqa: B009 - pydantic's own


def models_section(model_params: tuple[tuple[str, type], ...]) -> type[BaseModel]:
    """ModelSettings' shared fields (with their defaults) plus one section per configurable model."""
    shared = {key: (info.annotation, info) for key, info in SHARED_MODEL_FIELDS.items() if key != "params"}
    sections = {name: (params, params()) for name, params in model_params}
    return create_model("ModelsSection", __base__=ModelsBase, **shared, **sections)


@functools.lru_cache(maxsize=8)
def config_schema(parts: ConfigParts) -> type[BaseModel]:
    """The shape of config.yaml, every key typed and bounded: the shared sections plus one per model
    (`models.<name>`: its Params) and per source (`sources.<kind>`: its Options)."""
    sources = create_model(
        "SourcesSection", __config__=STRICT, **{kind: (options, options()) for kind, options in parts.source_options}
    )
    models = models_section(parts.model_params)

    def source(value: str) -> str:
        problem = parts.source_problem(value)
        if problem:
            raise ValueError(problem)
        return value

    return create_model(
        "ConfigFile",
        __config__=STRICT,
        universe=(UniverseSection, ...),
        timeframes=(Annotated[dict[Literal["1d", "1h"], TimeframeEntry], Field(min_length=1)], ...),
        data_dir=(Annotated[str, Field(min_length=1)], "data"),
        source=(Annotated[str, AfterValidator(source)], "synthetic"),
        storage=(StorageSection, StorageSection()),
        validation=(ValidationSettings, ValidationSettings()),
        sources=(sources, sources()),
        features=(FeatureSettings, FeatureSettings()),
        models=(models, models()),
        airflow=(AirflowSettings, AirflowSettings()),
        api=(ApiSettings, ApiSettings()),
    )


class StrictLoader(yaml.SafeLoader):
    """YAML's safe loader that refuses a key given twice in one mapping and nesting deeper than
    MAX_CONFIG_DEPTH (PyYAML would keep the last duplicate silently, or recurse until Python stops)."""

    def compose_node(self, parent, index):
        depth = getattr(self, "_depth", 0)
        if depth > MAX_CONFIG_DEPTH:
            mark = self.peek_event().start_mark
            raise yaml.constructor.ConstructorError(
                None, None, f"nested more than {MAX_CONFIG_DEPTH} levels deep", mark
            )
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
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {str(key)[:40]!r} is given twice in one mapping; keep one", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _read_yaml(config_path: Path) -> dict:
    if not config_path.is_file():
        raise ConfigError(f"config file {config_path} not found; set {ENV_CONFIG} or pass --config")
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{config_path} is {config_path.stat().st_size:,} bytes, more than a config can be "
            f"({MAX_CONFIG_BYTES:,}); pass a config file"
        )
    try:
        raw = yaml.load(config_path.read_text(encoding="utf-8"), Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except UnicodeDecodeError as error:
        raise ConfigError(
            f"{config_path}: not a text file (byte {error.start} is not UTF-8); pass a YAML config"
        ) from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise ConfigError(f"{config_path}: not valid YAML{where}: {problem}; fix that line") from None
    if raw is None:
        raise ConfigError(f"{config_path} is empty; start from the repo's config.yaml")
    if not isinstance(raw, dict):
        raise ConfigError(
            f"{config_path} must be a mapping of settings (universe:, timeframes:, ...), not a {type(raw).__name__}"
        )
    return {
        key: value for key, value in raw.items() if value is not None
    }  # an empty section (`storage:`) means its defaults


def _settings(config, config_path: Path, parts: ConfigParts) -> Settings:
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
        storage=StorageSettings(
            storage.mongo_uri, storage.database, storage.ping_timeout_ms, data_dir / storage.fallback_dir
        ),
        validation=config.validation,
        sources=config.sources.model_dump(exclude_none=True),
        features=config.features,
        models=config.models.settings(),
        airflow=config.airflow,
        api=config.api,
        parts=parts,
    )


def _instruments(universe: UniverseSection) -> dict[str, Instrument]:
    instruments = {
        entry.symbol: Instrument(
            symbol=entry.symbol,
            kind="index",
            exchange=entry.exchange,
            name=entry.name,
            has_volume=entry.has_volume,
            max_abs_return=entry.max_abs_return,
        )
        for entry in universe.indices
    }
    for sector, symbols in universe.equities.sectors.items():
        for symbol in symbols:
            instruments[symbol] = Instrument(
                symbol=symbol, kind="equity", exchange=universe.equities.exchange, sector=sector
            )
    for symbol in universe.fx:
        instruments[symbol] = Instrument(symbol=symbol, kind="fx", exchange="FX", has_volume=False)
    for symbol in universe.crypto:
        instruments[symbol] = Instrument(symbol=symbol, kind="crypto", exchange="CRYPTO")
    return instruments
