"""One planning path for both drivers: what a run covers (as-of, symbols, timeframes, source, models)."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path

from trading_ml.config import Settings, parse_as_of
from trading_ml.errors import ConfigError
from trading_ml.models.catalogue import chosen_models
from trading_ml.run import RunContext, RunInfo, find_run
from trading_ml.sources import make_source

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunRequest:
    """What a driver was asked for. None means the configured choice, or, for a later stage of an
    existing run (``continues``), what that run chose."""

    as_of: str | dt.date | None = None
    symbols: list[str] | None = None
    timeframes: list[str] | None = None
    source: str | None = None
    models: list[str] | None = None
    deploy: bool = True
    run_id: str | None = None
    continues: bool = False


def plan_run(settings: Settings, request: RunRequest) -> RunContext:
    """The run's context. ``request.continues``: the run ``run_id`` names (or the newest of the as-of
    date), with what it recorded as the defaults. Otherwise a new run (or a retried one: the same
    ``run_id``): its source is built here, so one that cannot work (``csv:/nonexistent``) fails the
    plan, not every ingestion, and the configured symbols and timeframes narrow to what the source
    offers (a file folder holds some symbols)."""
    if request.continues:
        earlier = find_run(settings.data_dir, request.run_id, None if request.run_id else parse_as_of(request.as_of))
        recorded, settings = earlier.selection, frozen_settings_of(earlier, settings)
        return RunContext.create(
            settings,
            given(request.as_of, recorded.get("as_of")),
            given(request.symbols, recorded.get("symbols")),
            given(request.timeframes, recorded.get("timeframes")),
            request.source or recorded.get("source"),
            earlier.run_id,
            chosen_models(given(request.models, recorded.get("models"))),
            request.deploy,
        )
    source_spec = request.source or settings.source
    source = make_source(source_spec, settings)
    symbols, timeframes = (
        configured_or(request.symbols, settings.symbols),
        configured_or(request.timeframes, list(settings.timeframes)),
    )
    if symbols is None and source.symbols is not None:
        symbols = [s for s in settings.symbols if s in source.symbols]
        if not symbols:
            raise ConfigError(
                f"source {source.name} has none of the {len(settings.symbols)} configured symbols; "
                "name the symbols it has (--symbols or the symbols Param)"
            )
        log.info("source %s offers %d of the %d configured symbols", source.name, len(symbols), len(settings.symbols))
    if timeframes is None:
        timeframes = [t for t in settings.timeframes if t in source.timeframes]
        if not timeframes:
            raise ConfigError(
                f"source {source.name} has none of the configured timeframes ({', '.join(settings.timeframes)})"
            )
    return RunContext.create(
        settings,
        request.as_of,
        symbols,
        timeframes,
        source_spec,
        request.run_id,
        chosen_models(request.models),
        request.deploy,
    )


def frozen_settings_of(run: RunInfo, settings: Settings) -> Settings:
    """The settings ``run`` froze when it started (with this driver's data folder and MongoDB URI);
    the driver's own for a run that froze none. A config that differs now is named in the log."""
    from trading_ml.config.loader import ENV_DATA_DIR, ENV_MONGO_URI, settings_from_document
    from trading_ml.config.settings import settings_differences, settings_document

    frozen = run.layout.frozen_settings()
    if frozen is None:
        return settings
    changed = [key for key, _, _ in settings_differences(frozen, settings_document(settings))]
    if changed:
        log.warning(
            "run %s keeps the settings it started with (%s); the config differs now in %s",
            run.run_id,
            run.layout.settings_file,
            ", ".join(changed[:8]) + (f" and {len(changed) - 8} more" if len(changed) > 8 else ""),
        )
    env = {ENV_DATA_DIR: str(settings.data_dir), ENV_MONGO_URI: settings.storage.mongo_uri or ""}
    started_from = Path(str(run.selection.get("config_path") or settings.config_path))
    return settings_from_document(frozen, run.layout.settings_file, env, settings.parts, started_from)


def given(requested, recorded):
    """What was requested, else what the run recorded (an empty request stays, to be refused)."""
    return recorded if requested is None else requested


def configured_or(requested: list[str] | None, configured: list[str]) -> list[str] | None:
    """None (the configured list, narrowed to the source's offer) when nothing was requested or the
    request is the configured list itself, as the DAG's form starts filled in; else the request."""
    if requested is None or list(requested) == list(configured):
        return None
    return list(requested)


def as_of_for_run(
    requested: str | None, manual: bool, data_interval_end: dt.datetime | None, triggered_at: dt.datetime
) -> dt.date:
    """A scheduled or backfill run's as-of: the end of its data interval. A manual trigger's: the day
    it was triggered (its inferred interval would end at the last quarter boundary). An as-of the
    user asked for wins over both."""
    if requested:
        return parse_as_of(requested)
    moment = triggered_at if manual or data_interval_end is None else data_interval_end
    return parse_as_of(moment.astimezone(dt.UTC).date())
