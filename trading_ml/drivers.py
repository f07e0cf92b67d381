"""What the drivers (the command line, the DAG, the Airflow plugin, the API, the benchmarks) share:
the settings loader of :mod:`trading_ml.config.loader`, given this package's models and sources,
and a run's settings as it froze them when it started."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

from trading_ml.config import Settings, parse_as_of
from trading_ml.config.loader import ENV_DATA_DIR, ENV_MONGO_URI, ConfigParts, config_schema, settings_from_document
from trading_ml.config.loader import load_settings as load_with

log = logging.getLogger(__name__)


def config_parts() -> ConfigParts:
    """The catalogue's models' Params and the registered sources' Options, as the schema takes them."""
    from trading_ml.models.catalogue import model_params
    from trading_ml.sources import source_options, source_problem

    return ConfigParts(tuple(model_params().items()), tuple(source_options().items()), source_problem)


def load_settings(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """config.yaml (or TRADING_ML_CONFIG) with the environment's overrides, checked against the schema
    of this package's models and sources; any error is a ConfigError of one line."""
    return load_with(path, env, parts=config_parts())


def schema():
    """The shape of config.yaml with this package's models and sources (pydantic)."""
    return config_schema(config_parts())


def run_settings(context: dict, mongo_uri: str | None = None) -> Settings:
    """The settings of a run that RunContext.to_dict describes, read again (e.g. in another Airflow
    task): the ones it froze in its folder when it started (checked against their sha256 and the
    schema), so an edit of config.yaml during the run changes nothing; the config file for a run
    that froze none. The data folder is the context's; the MongoDB URI (it may hold a password) is
    never in that dict or the frozen file: the driver passes it here."""
    from trading_ml.run import RunLayout, check_run_id

    env = {**os.environ, ENV_DATA_DIR: context["data_dir"]}
    if mongo_uri:
        env[ENV_MONGO_URI] = mongo_uri
    layout = RunLayout.of(Path(context["data_dir"]), parse_as_of(context["as_of"]), check_run_id(context["run_id"]))
    frozen = layout.frozen_settings()
    if frozen is None:
        return load_settings(context["config_path"], env)
    return settings_from_document(frozen, layout.settings_file, env, config_parts(), Path(context["config_path"]))


def training_slots(settings: Settings) -> int:
    """The training pool's slots: airflow.training_pool_slots, 0 meaning one per core (models.cores, 0:
    this machine's), so that trainings of one thread each fill the cores and no more."""
    from trading_ml.models.threads import fit_threads

    return settings.airflow.training_pool_slots or fit_threads(settings.models.cores, 1)


def airflow_pools(settings: Settings) -> list[tuple[str, int, str]]:
    """The Airflow pools the DAG's tasks run in, as (name, slots, description): make airflow and
    docker-compose's airflow-init create them (a task whose pool is missing is never scheduled)."""
    airflow = settings.airflow
    return [
        (airflow.source_pool, airflow.source_pool_slots, "concurrent calls to the market data provider (ingest)"),
        (airflow.training_pool, training_slots(settings), "training tasks at once, sharing the cores (train_*)"),
    ]


def print_airflow_pools() -> None:
    """config.yaml's pools, one per line: name, slots and description separated by tabs (for the shell)."""
    for pool in airflow_pools(load_settings()):
        print("\t".join(map(str, pool)))


# What the stages import inside their functions (so the CLI and the DAG's parse start fast), and the
# stage modules themselves: about 4 s and 0.8 GB together, which each Airflow task would pay again.
LAZY_LIBRARIES = (
    "torch",
    "torch._dynamo",  # an optimizer imports it when it is made (1 s)
    "xgboost",
    "arch",
    "sklearn.ensemble",
    "sklearn.metrics",
    "skops.io",
    "scipy.signal",
    "threadpoolctl",
    "pymongo",
    "yfinance",  # the Yahoo source's, with curl_cffi
    "trading_ml.report",  # matplotlib, with the Agg backend
    "trading_ml.pipeline.ingest",
    "trading_ml.pipeline.validate",
    "trading_ml.pipeline.features",
    "trading_ml.pipeline.train",
    "trading_ml.pipeline.evaluate",
    "trading_ml.pipeline.deploy",
)


def preload_for_tasks() -> None:
    """Import LAZY_LIBRARIES and build the configured universe's calendars, for a driver that forks a
    process per task (the LocalExecutor's workers, Celery's pool): every task then starts with them,
    shared copy-on-write. Neither starts a thread (imports, and pandas building holiday rules), so
    no OpenMP or torch thread pool exists yet to be broken by the fork."""
    import importlib
    import warnings

    with warnings.catch_warnings():  # skops looks its ufuncs up in every loaded module: Airflow's deprecated ones warn
        warnings.simplefilter("ignore")
        for module in LAZY_LIBRARIES:
            try:
                importlib.import_module(module)
            except ImportError as error:  # the service starts anyway; a task that needs it fails with this error
                log.warning("could not preload %s (%s); each task will import it itself", module, error)
    preload_calendars()


def preload_calendars() -> None:
    """Build the exchange calendars of config.yaml's universe (about 0.3 s each, which every task
    that fetches, validates or annualizes bars would pay again); a config that does not load, or
    an exchange that cannot be built, is logged and left to the tasks (they report it)."""
    from trading_ml.data.calendars import CRYPTO, FX, calendar
    from trading_ml.errors import TradingMLError

    try:
        settings = load_settings()
    except TradingMLError as error:
        log.warning("could not preload the calendars (%s); each task will build them itself", error)
        return
    exchanges = {settings.default_exchange, *(settings.instrument(symbol).exchange for symbol in settings.symbols)}
    for exchange in sorted(exchanges - {FX, CRYPTO}):
        try:
            calendar(exchange)
        except TradingMLError as error:
            log.warning("could not preload the %s calendar (%s)", exchange, error)


def own_scheduling_group(parent: int) -> None:
    """Start a session of its own for this process (an executor's worker and the tasks it forks),
    dying with ``parent``, the process that started it, which can no longer signal it as part of
    its own group. Where Linux shares the cores between sessions (``sched_autogroup_enabled``), a
    training task then counts as other work does, instead of sharing one session's share with the
    scheduler and every other task. Without sessions (not Unix) it stays in its parent's."""
    from trading_ml.pipeline.workers import die_with_parent

    die_with_parent(parent)
    try:
        os.setsid()
    except (OSError, AttributeError) as error:  # already a group leader, or no sessions here
        log.debug("the worker stays in its parent's session (%s)", error)
