"""A run: its unique id, as-of date and selection, its data windows, and the one object that knows
its folder's layout.

Every run has its own folder, ``<data_dir>/runs/<as-of>/<run folder>/``: the as-of date (what every
window derives from) groups a day's runs, and the run folder is the run id (Airflow's DAG run id, or
one the CLI makes) with every character other than letters, digits, ``.``, ``_`` and ``-`` written as
``-``. Creating a run's context (or rebuilding it in another task) claims its folder by writing
``run.json`` (run id, as-of, selection) once, with the run's settings frozen beside it
(``settings.json``); a run whose folder name is already claimed by another run id is refused, so no
run ever writes into another run's files. Only :class:`RunLayout` builds paths inside a run folder.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import re
import secrets
import threading
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from trading_ml.config import Settings, check_ticker, parse_as_of, shorten
from trading_ml.config.settings import settings_document
from trading_ml.data.calendars import bars_before
from trading_ml.errors import ConfigError
from trading_ml.io import atomic_write_bytes, json_bytes
from trading_ml.sources import check_source

log = logging.getLogger(__name__)

RUN_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.~:+-]{0,249}")  # Airflow's allowed run ids, and the CLI's
UNSAFE_IN_FOLDER = re.compile(r"[^A-Za-z0-9_.-]")
IDENTITY = "run.json"
SETTINGS = "settings.json"  # the effective settings a run froze when it started


def new_run_id(now: dt.datetime | None = None) -> str:
    """A fresh run id for the CLI, shaped like Airflow's: ``cli__2026-11-25T20:45:12Z-3fa9c1``."""
    now = now or dt.datetime.now(dt.UTC)
    return f"cli__{now:%Y-%m-%dT%H:%M:%S}Z-{secrets.token_hex(3)}"


def check_run_id(run_id: object) -> str:
    if not isinstance(run_id, str) or not RUN_ID_PATTERN.fullmatch(run_id):
        raise ConfigError(
            f"run id {shorten(run_id)} is not valid: use letters, digits and _ . ~ : + - (at most 250, starting "
            "with a letter or digit), e.g. manual__2026-11-25T09:00:00+00:00"
        )
    return run_id


def folder_name(run_id: str) -> str:
    return UNSAFE_IN_FOLDER.sub("-", check_run_id(run_id))


def runs_root(data_dir: Path) -> Path:
    """Where every run folder lives; the registry's models root."""
    return Path(data_dir) / "runs"


def pair_name(symbol: str, timeframe: str) -> str:
    return f"{symbol}_{timeframe}"


@dataclass(frozen=True)
class RunLayout:
    """Every file of one run folder. Manifests store paths relative to :attr:`root`; :meth:`resolve`
    turns one back into a path and refuses any that leads out of the folder."""

    root: Path

    @classmethod
    def of(cls, data_dir: Path, as_of: dt.date, run_id: str) -> RunLayout:
        return cls(runs_root(data_dir) / as_of.isoformat() / folder_name(run_id))

    # raw/ and validated/: bars per symbol and timeframe
    def raw_bars(self, symbol: str, timeframe: str) -> Path:
        return self.root / "raw" / f"{pair_name(symbol, timeframe)}.csv"

    def ingest_manifest(self, symbol: str, timeframe: str) -> Path:
        return self.root / "raw" / f"{pair_name(symbol, timeframe)}.manifest.json"

    def validated_bars(self, symbol: str, timeframe: str) -> Path:
        return self.root / "validated" / f"{pair_name(symbol, timeframe)}.csv"

    def quarantine_report(self, symbol: str, timeframe: str) -> Path:
        return self.root / "quarantine" / f"{pair_name(symbol, timeframe)}.json"

    @property
    def validation_report(self) -> Path:
        return self.root / "validated" / "validation_report.json"

    @property
    def validate_manifest(self) -> Path:
        return self.root / "validated" / "manifest.json"

    # features/
    def features_csv(self, symbol: str, timeframe: str) -> Path:
        return self.root / "features" / f"{symbol}_{timeframe}_features.csv"

    def training_table(self, timeframe: str) -> Path:
        return self.root / "features" / f"training_{timeframe}.parquet"

    def mapped_training_table(self, timeframe: str) -> Path:
        """The training table as the stages read it: memory-mapped, shared by the processes that read it."""
        return self.root / "features" / f"training_{timeframe}.arrow"

    def model_inputs(self, timeframe: str) -> Path:
        """The training table's model features, float32, rows grouped by symbol: mapped by the models."""
        return self.root / "features" / f"inputs_{timeframe}.npy"

    @property
    def features_manifest(self) -> Path:
        return self.root / "features" / "manifest.json"

    # models/: one model of each name per run, so file names carry no version
    def model_file(self, model_name: str, suffix: str) -> Path:
        return self.root / "models" / f"{model_name}{suffix}"

    def predictions(self, model_name: str) -> Path:
        return self.model_file(model_name, ".predictions.parquet")

    def trained_manifest(self, model_name: str) -> Path:
        return self.model_file(model_name, ".trained.json")

    @property
    def evaluation_report(self) -> Path:
        return self.root / "models" / "evaluation.json"

    @property
    def evaluate_manifest(self) -> Path:
        return self.root / "models" / "evaluated.json"

    @property
    def deploy_manifest(self) -> Path:
        return self.root / "models" / "deployed.json"

    # the run as a whole
    @property
    def report_html(self) -> Path:
        return self.root / "report.html"

    @property
    def report_json(self) -> Path:
        return self.root / "report.json"

    @property
    def run_manifest(self) -> Path:
        return self.root / "run_manifest.json"

    @property
    def identity(self) -> Path:
        return self.root / IDENTITY

    @property
    def settings_file(self) -> Path:
        """The run's effective settings, frozen when it started (config.yaml's shape, no secrets)."""
        return self.root / SETTINGS

    def frozen_settings(self) -> dict[str, Any] | None:
        """The settings the run froze when it started, checked against the sha256 its run.json
        recorded; None for a run that froze none (started before runs did)."""
        if not self.settings_file.is_file():
            return None
        recorded = read_identity(self.identity).get("settings_sha256") if self.identity.is_file() else None
        payload = self.settings_file.read_bytes()
        if recorded != hashlib.sha256(payload).hexdigest():
            raise ConfigError(
                f"{self.settings_file} is not what run {self.root.name} froze when it started (its sha256 differs "
                f"from run.json's settings_sha256); restore it, or start a new run"
            )
        return read_object(self.settings_file, "a run's settings", "restore it, or start a new run")

    def relative(self, path: Path) -> str:
        return str(Path(path).relative_to(self.root))

    def resolve(self, relative: str) -> Path:
        """A path a manifest recorded (relative to the run folder), refused if it leaves the folder."""
        path = self.root / relative
        if Path(relative).is_absolute() or not path.resolve().is_relative_to(self.root.resolve()):
            raise ConfigError(
                f"{relative!r} is not a path inside the run folder {self.root}; the manifest that names it was altered"
            )
        return path

    def claim(self, identity: dict[str, Any]) -> dict[str, Any]:
        """Write run.json once (atomically, first writer wins); refuse a folder another run id claimed."""
        if not self.identity.is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            draft = self.root / f".{IDENTITY}.{os.getpid()}.{threading.get_ident()}.tmp"
            draft.write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")
            try:
                os.link(draft, self.identity)  # fails if it exists: a concurrent claim won
            except FileExistsError:
                pass
            finally:
                draft.unlink(missing_ok=True)
        claimed = read_identity(self.identity)
        if claimed.get("run_id") != identity["run_id"]:
            raise ConfigError(
                f"{self.root} belongs to run {claimed.get('run_id')!r}, not {identity['run_id']!r}: "
                "two run ids map to one folder name; give this run another id"
            )
        return claimed


def read_identity(path: Path) -> dict[str, Any]:
    return read_object(path, "a run identity (with run_id and as_of)", "it names the run that owns its folder")


def read_stage_manifest(path: Path) -> dict[str, Any]:
    return read_object(path, "a stage manifest", "re-run the stage that writes it")


def read_object(path: Path, what: str, advice: str) -> dict[str, Any]:
    """The JSON object in ``path``, or a ConfigError naming the file, what it should be and what to do."""
    try:
        value = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as error:
        raise ConfigError(f"{path} is unreadable ({error}); {advice}") from error
    if not isinstance(value, dict):
        raise ConfigError(f"{path} is not {what} (a JSON object); {advice}")
    return value


@dataclass(frozen=True)
class RunInfo:
    """A run found on disk: its id, as-of, when it started, its recorded selection and its folder."""

    run_id: str
    as_of: dt.date
    created_at: str
    selection: dict[str, Any]
    layout: RunLayout


def find_runs(data_dir: Path, as_of: dt.date | None = None) -> list[RunInfo]:
    """Every claimed run under data_dir (optionally of one as-of), oldest first by (as-of, start)."""
    pattern = f"{as_of.isoformat() if as_of else '*'}/*/{IDENTITY}"
    found = []
    for path in runs_root(data_dir).glob(pattern):
        identity = read_identity(path)
        found.append(
            RunInfo(
                run_id=str(identity.get("run_id")),
                as_of=dt.date.fromisoformat(path.parent.parent.name),
                created_at=str(identity.get("created_at", "")),
                selection=identity,
                layout=RunLayout(path.parent),
            )
        )
    return sorted(found, key=lambda info: (info.as_of, info.created_at, info.run_id))


def find_run(data_dir: Path, reference: str | None = None, as_of: dt.date | None = None) -> RunInfo:
    """A run by its id, its as-of date (the newest run of that day) or its folder; without a
    reference, the newest run of ``as_of`` (or of all)."""
    runs = find_runs(data_dir)
    if reference:
        folder = Path(reference)
        matches = [
            r
            for r in runs
            if reference in (r.run_id, r.as_of.isoformat())
            or (folder.is_dir() and r.layout.root.resolve() == folder.resolve())
        ]
    else:
        matches = [r for r in runs if as_of is None or r.as_of == as_of]
    if not matches:
        wanted = reference or (f"as-of {as_of}" if as_of else "any run")
        known = ", ".join(f"{r.run_id} ({r.as_of})" for r in runs[-5:]) or "none"
        raise ConfigError(
            f"no run matches {wanted} under {runs_root(data_dir)} (newest: {known}); start one with `trading-ml run` "
            "or `trading-ml ingest`"
        )
    return matches[-1]


@dataclass
class RunContext:
    """One run: its settings, id, as-of date, selection and folder.

    The data window of every timeframe ends at the as-of date (exclusive) and reaches back by the
    timeframe's lookback, so a backfill is just an older as-of.
    """

    settings: Settings
    as_of: dt.date
    symbols: list[str]
    timeframes: list[str]
    source: str
    run_id: str
    models: list[str] | None = None  # the trained models it chose; None: all (models.catalogue.chosen_models)
    deploy: bool = True

    @classmethod
    def create(
        cls,
        settings: Settings,
        as_of: str | dt.date | None = None,
        symbols: list[str] | None = None,
        timeframes: list[str] | None = None,
        source: str | None = None,
        run_id: str | None = None,
        models: list[str] | None = None,
        deploy: bool = True,
    ) -> RunContext:
        """A new run (a fresh id) unless ``run_id`` names one: a retried Airflow task, or a CLI stage
        continuing an earlier stage's run; its folder is claimed (:meth:`claim`). ``models``: the models it
        trains (None: all of them)."""
        for name, chosen in (("symbols", symbols), ("timeframes", timeframes), ("models", models)):
            if chosen is not None and not list(chosen):
                raise ConfigError(
                    f"{name} is an empty list; name at least one, or leave it unset for the configured {name}"
                )
        if source is not None:
            check_source(source)
        given = [check_ticker(s) for s in (symbols or settings.symbols)]
        chosen_symbols = list(dict.fromkeys(given))
        if len(chosen_symbols) < len(given):
            log.warning("%d repeated symbol(s) left out: each symbol is fetched once", len(given) - len(chosen_symbols))
        for symbol in (s for s in chosen_symbols if s not in settings.universe):
            log.warning(
                "%s is not in config.yaml: it follows the calendar %s", symbol, settings.calendar_source(symbol)
            )
        chosen_timeframes = [settings.timeframe(t).name for t in (timeframes or settings.timeframes)]
        return cls(
            settings=settings,
            as_of=parse_as_of(as_of),
            symbols=chosen_symbols,
            timeframes=list(dict.fromkeys(chosen_timeframes)),
            source=source or settings.source,
            run_id=new_run_id() if run_id is None else check_run_id(run_id),
            models=None if models is None else list(models),
            deploy=bool(deploy),
        ).claim()

    @cached_property
    def layout(self) -> RunLayout:
        """The run's folder layout (paths only; :meth:`claim` writes)."""
        return RunLayout.of(self.settings.data_dir, self.as_of, self.run_id)

    def claim(self) -> RunContext:
        """Claim the run's folder for its id (run.json, written once) and, when it is new, freeze the
        run's settings there (settings.json, its sha256 in run.json: every later task reads them); a
        folder another run id claimed is refused. Returns the context."""
        identity = {**self.to_dict(), "created_at": dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")}
        if not self.layout.identity.is_file():
            payload = json_bytes(settings_document(self.settings))
            atomic_write_bytes(self.layout.settings_file, payload)
            identity["settings_sha256"] = hashlib.sha256(payload).hexdigest()
        self.layout.claim(identity)
        return self

    @property
    def run_root(self) -> Path:
        return self.layout.root

    def window(self, timeframe: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """[start, end) in UTC: end is the as-of date's midnight, start is end minus the lookback."""
        end = pd.Timestamp(self.as_of, tz="UTC")
        return end - self.settings.timeframe(timeframe).offset, end

    def fetch_window(self, symbol: str, timeframe: str) -> tuple[pd.Timestamp, pd.Timestamp]:
        """The window with ``features.warmup_bars`` bars of the symbol's calendar before it."""
        start, end = self.window(timeframe)
        exchange = self.settings.instrument(symbol).exchange
        return bars_before(exchange, timeframe, start, self.settings.features.warmup_bars), end

    @cached_property
    def pairs(self) -> list[tuple[str, str]]:
        """Every (symbol, timeframe) this run ingests."""
        return [(s, t) for s in self.symbols for t in self.timeframes]

    def to_dict(self) -> dict[str, Any]:
        """What a driver needs to rebuild this context elsewhere (e.g. in another Airflow task)."""
        return {
            "run_id": self.run_id,
            "as_of": self.as_of.isoformat(),
            "symbols": self.symbols,
            "timeframes": self.timeframes,
            "source": self.source,
            "models": self.models,
            "deploy": self.deploy,
            "config_path": str(self.settings.config_path),
            "data_dir": str(self.settings.data_dir),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], settings: Settings) -> RunContext:
        """The context :meth:`to_dict` describes, e.g. in another Airflow task, with the settings
        read again from its config file and data folder (trading_ml.drivers.run_settings)."""
        return cls(
            settings,
            dt.date.fromisoformat(data["as_of"]),
            list(data["symbols"]),
            list(data["timeframes"]),
            data["source"],
            check_run_id(data["run_id"]),
            data.get("models"),
            bool(data.get("deploy", True)),
        ).claim()

    # the manifests the stages leave in the run folder: how each stage finds its inputs
    def stage_manifest(self, stage: str) -> dict[str, Any]:
        """The manifest the named stage (validate, features, evaluate, deploy) wrote in this run."""
        path = {
            "validate": self.layout.validate_manifest,
            "features": self.layout.features_manifest,
            "evaluate": self.layout.evaluate_manifest,
            "deploy": self.layout.deploy_manifest,
        }[stage]
        if not path.is_file():
            raise ConfigError(
                f"{path} not found: run `trading-ml {stage} --run-id {self.run_id}` (or `run`) first; "
                f"the {stage} stage of run {self.run_id} has not finished"
            )
        return read_stage_manifest(path)

    def ingest_manifests(self) -> list[dict[str, Any]]:
        """The manifest of every pair whose ingestion finished (a pair without one did not)."""
        paths = [self.layout.ingest_manifest(symbol, timeframe) for symbol, timeframe in self.pairs]
        return [read_stage_manifest(path) for path in paths if path.is_file()]
