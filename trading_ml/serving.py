"""The signals API (FastAPI) over the production models: ``POST /signals/generate``, ``GET /models``,
``GET /health``. Listens on 127.0.0.1 unless told otherwise.

Signals come from the bars in the store (the ones ingestion wrote), cleaned by the same validation and
turned into features by the same code as training, once for every stored bar: a bar's features use
bars up to it only, so any as-of is answered by looking up each symbol's newest row before it. Models
are verified in a child process (trading_ml.verify), load once and reload when the registry's
production version changes. A valid request is always answered: each task uses its production model
when there is one, else its declared baseline (the class prior for direction, the RiskMetrics EWMA
for volatility, persistence for the regime ahead), and every response and ``/health`` say which.
The current regime is always the plan's rules applied to the newest bar; it needs no model.

Four parts: ProductionModels (the model cache), StoredBars (the bar cache), the signal builder
(``served_panel``, ``signal_table``: pure functions of settings, bars and models, giving a
SignalTable) with SignalCache over it, and the FastAPI layer (``create_app``, typed by
trading_ml.contract), which maps the library's errors to statuses.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import threading
import time
import unicodedata
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from trading_ml.config import Settings
from trading_ml.contract import Health, ModelVersion, Problem, SignalRequest, SignalsResponse
from trading_ml.data.calendars import expected_timestamps
from trading_ml.data.validation import validate_bars
from trading_ml.errors import DataError, StoreError, one_line
from trading_ml.features.build import build_timeframe, feature_panel
from trading_ml.models.catalogue import served_models
from trading_ml.models.tasks import TASKS
from trading_ml.registry import ModelRegistry
from trading_ml.storage import open_store
from trading_ml.storage.base import documents_to_bars
from trading_ml.verify import Verifier

log = logging.getLogger(__name__)

BARS_REFRESH_SECONDS = 60
SERVED = {
    task: served_models(task) for task in TASKS
}  # each task's models in order of preference; the first in production serves
MIN_SEQUENCE_ROWS = 20
BUSY_RETRY_AFTER = 2  # seconds a client told 503 (busy) should wait


class SignalCache:
    """Signal tables by key (newest stored bar, newest hourly bar, production versions), least recently used out first.
    Each key is built once: concurrent requests for it wait (at most ``wait_seconds``) for that one
    build; other keys are built beside it while one of the ``builds`` slots is free, else they get
    ``Busy`` after ``wait_seconds``. The lock that guards the tables is never held while building."""

    def __init__(self, size: int, builds: int = 1, wait_seconds: float = 5.0):
        self.size, self.builds, self.wait_seconds = size, builds, wait_seconds
        self._builds = threading.BoundedSemaphore(
            builds
        )  # tables built at once; a new key waits at most wait_seconds for a slot
        self._tables: OrderedDict[tuple, tuple] = OrderedDict()
        self._building: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()  # guards the two dicts only, never held while building

    def get(self, key: tuple, build) -> Any:
        with self._lock:
            if key in self._tables:
                self._tables.move_to_end(key)
                return self._tables[key]
            building = self._building.setdefault(key, threading.Lock())
        if not building.acquire(
            timeout=self.wait_seconds
        ):  # another request is building this date: wait, but not for ever
            raise Busy(
                "the signal table of the newest stored bars is still being built by another request; retry in "
                f"{BUSY_RETRY_AFTER} s"
            )
        try:
            with self._lock:
                if key in self._tables:  # built while this request waited
                    return self._tables[key]
            if not self._builds.acquire(timeout=self.wait_seconds):
                raise Busy(
                    f"{self.builds} signal table(s) are being built for other bars or model versions "
                    "(api.concurrent_builds); "
                    f"retry in {BUSY_RETRY_AFTER} s"
                )
            try:
                value = build()
                with self._lock:
                    self._tables[key] = value
                    while len(self._tables) > self.size:
                        self._tables.popitem(last=False)
            finally:
                self._builds.release()
                with self._lock:
                    self._building.pop(key, None)
            return value
        finally:
            building.release()

    def __len__(self) -> int:
        return len(self._tables)


class LoadedModel(NamedTuple):
    version: str
    model: object
    trained_until: str | None


class ProductionModels:
    """The model cache: each task's production models, loaded once and reloaded when the registry's
    production version changes. A version is loaded only after it passed verification in a child
    process (:mod:`trading_ml.verify`) for exactly the hashes of its files; a version that fails is
    refused (kept in ``refused`` with why) and the version loaded before it, or the task's baseline,
    goes on serving. Only a model's own failure refuses it, never a request's data."""

    def __init__(self, registry: ModelRegistry, settings: Settings):
        self.registry, self.verifier = registry, Verifier(registry, settings)
        self._lock = threading.Lock()
        self._models: dict[str, LoadedModel] = {}
        self.refused: dict[str, str] = {}  # model: "version: why"

    def current(self) -> dict[str, LoadedModel]:
        """The production models that serve, by name, reloaded when a version changes."""
        versions = self.registry.production_versions()
        with self._lock:
            for name in (n for names in SERVED.values() for n in names):
                version = versions.get(name)
                if version is None:
                    self._models.pop(name, None)
                elif (name not in self._models or self._models[name].version != version) and not self.refused.get(
                    name, ""
                ).startswith(f"{version}: "):
                    self._load(name, version)
            return dict(self._models)

    def _load(self, name: str, version: str) -> None:
        log.info("verifying and loading %s %s", name, version)
        try:
            record = self.registry.record(name, version)
            self._models[name] = LoadedModel(version, self.verifier.load(record), record.get("trained_until"))
            self.refused.pop(name, None)
        except DataError as error:
            self.refused[name] = f"{version}: {one_line(error, 400)}"
            kept = f"still serving {self._models[name].version}" if name in self._models else "serving without it"
            log.error("%s %s refused, %s: %s", name, version, kept, one_line(error, 400))

    def loaded_versions(self) -> dict[str, str]:
        return {name: loaded.version for name, loaded in self._models.items()}


def serving_models(models: dict) -> dict[str, str | None]:
    """Each task's serving model name, or None for its baseline."""
    return {task: next((n for n in names if n in models), None) for task, names in SERVED.items()}


class StoredBars:
    """The bar cache: the universe's stored bars of the models' timeframe (and, for daily models, the
    hourly bars their sessions' realized variance comes from), re-read at most every
    BARS_REFRESH_SECONDS (ingestion adds bars). One request re-reads them; the others go on with
    the bars already read meanwhile."""

    def __init__(self, store, settings: Settings):
        self.store, self.settings, self.timeframe = store, settings, settings.models.timeframe
        self._lock = threading.Lock()
        self._read: tuple[float, dict[str, pd.DataFrame], tuple | None, dict[str, pd.DataFrame]] | None = (
            None  # when read, bars, (first, newest), hourly bars
        )

    def snapshot(self) -> tuple[dict[str, pd.DataFrame], tuple[pd.Timestamp, pd.Timestamp], dict[str, pd.DataFrame]]:
        """(bars by symbol, (first, newest) stamp, hourly bars by symbol), read together;
        ServiceUnavailable when there are no bars."""
        current = self._read
        stale = current is None or time.monotonic() - current[0] > BARS_REFRESH_SECONDS
        if stale and self._lock.acquire(blocking=current is None):
            try:
                if self._read is current:  # nobody refreshed while this request waited
                    self._read = self._read_store()
            finally:
                self._lock.release()
        if self._read is None:
            raise ServiceUnavailable("the stored bars could not be read yet; retry")
        _, bars, span, hourly = self._read
        if not bars or span is None:
            raise ServiceUnavailable(f"no {self.timeframe} bars in the store; run `trading-ml ingest` first")
        return bars, span, hourly

    def _read_store(self) -> tuple[float, dict[str, pd.DataFrame], tuple | None, dict[str, pd.DataFrame]]:
        bars = self._read_timeframe(self.timeframe)
        hourly = self._read_hourly() if self.timeframe == "1d" else {}
        span = (min(f.index.min() for f in bars.values()), max(f.index.max() for f in bars.values())) if bars else None
        return time.monotonic(), bars, span, hourly

    def _read_hourly(self) -> dict[str, pd.DataFrame]:
        """The stored hourly bars, or none when they cannot be read (HAR then uses daily ranges alone)."""
        try:
            return self._read_timeframe("1h")
        except (KeyError, TypeError, ValueError) as error:  # a malformed stored document
            log.warning("the stored 1h bars could not be read (%s); serving without hourly sessions", one_line(error))
            return {}

    def _read_timeframe(self, timeframe: str) -> dict[str, pd.DataFrame]:
        documents = self.store.find("market_data", {"timeframe": timeframe})  # one read for every symbol
        by_symbol: dict[str, list[dict]] = {}
        for document in documents:
            by_symbol.setdefault(document["symbol"], []).append(document)
        return {s: documents_to_bars(by_symbol[s]) for s in self.settings.symbols if s in by_symbol}


# the signal builder: pure functions of settings, bars and models ------------------------------------


@dataclass(frozen=True)
class SignalTable:
    """Every task's served columns for every stored row of the universe, built once per stored bars
    and production versions: features at a bar use bars up to it only, so the answer for any as-of
    is a lookup of each symbol's newest row before it, never a build."""

    frame: pd.DataFrame  # served columns, indexed (timestamp, symbol)
    sources: dict[str, dict]  # task -> what served it
    excluded: dict[str, str]  # symbol -> why it has no rows
    positions: dict[str, np.ndarray]  # symbol -> its rows in frame, oldest first
    stamps: dict[str, np.ndarray]  # symbol -> those rows' timestamps (ns)
    valid: np.ndarray  # rows whose every task's value is in range
    columns: dict[str, np.ndarray] = field(
        default_factory=dict
    )  # frame's columns as arrays: a row read in microseconds
    answers: dict[int, dict | str] = field(default_factory=dict, compare=False)  # row -> its answer, once made

    def latest(self, symbol: str, end: pd.Timestamp, settings: Settings) -> dict | str:
        """The symbol's answer from its newest row before ``end``, or why there is none."""
        if symbol in self.excluded:
            return {
                "symbol": symbol,
                "served": False,
                "reason": f"{self.excluded[symbol]}: no model learns from it, so none predicts it",
            }
        if symbol not in self.positions:
            return f"{symbol}: no bars with complete features in the store; ingest it"
        count = int(np.searchsorted(self.stamps[symbol], end.value, side="left"))
        if count < MIN_SEQUENCE_ROWS:
            known = self.stamps[symbol]
            first = (
                pd.Timestamp(known[MIN_SEQUENCE_ROWS - 1], tz="UTC").date() if len(known) >= MIN_SEQUENCE_ROWS else None
            )
            return (
                f"{symbol}: {count} bars with every feature known (past the feature warm-up, with every market "
                "input) up to "
                f"this as-of; the models need {MIN_SEQUENCE_ROWS}"
                + (f": use an as_of from {first}" if first else "; ingest more history")
            )
        position = int(self.positions[symbol][count - 1])
        if position not in self.answers:
            self.answers[position] = self._answer(symbol, position, settings)
        return self.answers[position]

    def _answer(self, symbol: str, position: int, settings: Settings) -> dict | str:
        stamp = self.frame.index[position][0]
        if not self.valid[position]:
            row = self.frame.iloc[[position]]
            problems = [
                f"{name}: {why}" for name, task in TASKS.items() if (why := task.invalid(row[list(task.predictions)]))
            ]
            reasons = "; ".join(problems)
            return f"{symbol}: no valid signal for its newest bar {stamp.date()} ({reasons}); use a later as_of"
        row = {column: values[position] for column, values in self.columns.items()}
        return {
            "symbol": symbol,
            "bar": stamp.isoformat(),
            **{name: task.signal(row, settings) for name, task in TASKS.items()},
        }


def served_panel(
    settings: Settings, bars: dict[str, pd.DataFrame], hourly: dict[str, pd.DataFrame] | None = None
) -> tuple[pd.DataFrame, dict[str, str]]:
    """The feature panel (the same builder as training's) of every stored bar, each symbol validated
    over its own span (the checks see the bars past its warm-up, and the benchmark's close as validate
    does), and the symbols left out with why. ``hourly`` bars, validated the same way, give daily rows
    their session's realized variance, as in training."""
    timeframe = settings.models.timeframe
    clean = validated_bars(settings, bars, timeframe)
    hourly_clean = validated_bars(settings, hourly, "1h") if hourly else {}
    instruments = {symbol: settings.instrument(symbol) for symbol in clean}
    built = build_timeframe(clean, instruments, timeframe, settings.features, hourly_by_symbol=hourly_clean)
    panel, excluded = feature_panel(built, instruments)
    if panel is None:
        raise NotServable(
            f"the store has no {timeframe} bars past the feature warm-up ({settings.features.warmup_bars} bars); "
            "ingest more history"
        )
    return panel, excluded


def validated_bars(settings: Settings, bars: dict[str, pd.DataFrame], timeframe: str) -> dict[str, pd.DataFrame]:
    """Each symbol's bars cleaned by validation over its own span; quarantined symbols left out."""
    benchmark = settings.features.benchmark
    clean = {}
    for symbol, frame in bars.items():
        if frame.empty:
            continue
        market = bars[benchmark]["close"] if benchmark in bars and symbol != benchmark else None
        instrument = settings.instrument(symbol)
        end = frame.index.max() + pd.Timedelta(seconds=1)
        expected = expected_timestamps(instrument.exchange, timeframe, frame.index.min(), end)
        checked_from = frame.index[min(settings.features.warmup_bars, len(frame) - 1)]
        report, cleaned = validate_bars(
            frame, instrument, timeframe, expected, settings.validation, checked_from, market=market
        )
        if not report.quarantined and len(cleaned):
            clean[symbol] = cleaned
    return clean


def signal_table(
    settings: Settings, bars: dict[str, pd.DataFrame], models: dict, hourly: dict[str, pd.DataFrame] | None = None
) -> SignalTable:
    """Every task's served columns on every stored row, and what served each task. A model that
    cannot predict on these rows leaves its task to the baseline, and says why; it is not refused."""
    table, excluded = served_panel(settings, bars, hourly)
    serving = serving_models(models)
    outputs = [task_output(settings, task, table, models, serving[task]) for task in SERVED]
    frame = pd.concat([output for output, _ in outputs], axis=1)
    valid = np.logical_and.reduce([task.valid_rows(frame[list(task.predictions)]) for task in TASKS.values()])
    symbols = frame.index.get_level_values("symbol")
    positions = pd.Series(np.arange(len(symbols))).groupby(symbols, sort=False).indices  # symbol -> its rows
    stamps = frame.index.get_level_values("timestamp").asi8
    return SignalTable(
        frame,
        dict(zip(SERVED, (source for _, source in outputs), strict=True)),
        excluded,
        positions,
        {symbol: stamps[rows] for symbol, rows in positions.items()},
        valid,
        {column: frame[column].to_numpy() for column in frame.columns},
    )


def task_output(
    settings: Settings, task: str, table: pd.DataFrame, models: dict, name: str | None
) -> tuple[pd.DataFrame, dict]:
    """The task's output from its model, or from its baseline (no model, or one that cannot predict
    on these rows); a verified model is never refused for what the data lacks."""
    rules = TASKS[task]
    if name is None:
        return rules.serve(table, None, settings), output_origin(models, None, task)
    try:
        return rules.serve(table, models[name].model, settings), output_origin(models, name, task)
    except Exception as error:  # what the rows lack (a feature, a market input): this table's problem, not the model's
        failure = f"{type(error).__name__}: {one_line(error)}"
        why = f"{name} {models[name].version} could not predict on the stored data ({failure})"
        log.warning("%s; its baseline answers instead", why)
        return rules.serve(table, None, settings), {
            **output_origin(models, None, task),
            "note": f"{why}; serving its baseline ({rules.served_baseline}: {rules.served_baseline_text}) for it",
        }


def output_origin(models: dict, name: str | None, task: str) -> dict:
    if name is None:
        rules = TASKS[task]
        return {
            "source": "baseline",
            "model": rules.served_baseline,
            "version": None,
            "trained_until": None,
            "note": f"no {task} model is in production; "
            f"serving its baseline ({rules.served_baseline}: {rules.served_baseline_text})",
        }
    return {
        "source": "model",
        "model": name,
        "version": models[name].version,
        "trained_until": models[name].trained_until,
    }


class SignalService:
    """The production models, the stored bars and the signal tables, cached; thread-safe for
    uvicorn's worker threads. Raises the library's errors; create_app maps them to statuses."""

    def __init__(self, settings: Settings):
        self.settings, self.timeframe = settings, settings.models.timeframe
        self.store, self.store_choice = open_store(
            settings, fall_back=False
        )  # MongoDB down is 503, not an empty TinyDB
        self.registry = ModelRegistry(self.store, settings.data_dir)
        self.production = ProductionModels(self.registry, settings)
        self.bars = StoredBars(self.store, settings)
        self.signals = SignalCache(
            settings.api.cached_as_of, settings.api.concurrent_builds, settings.api.build_wait_seconds
        )

    @property
    def refused(self) -> dict[str, str]:
        return self.production.refused

    def table(self) -> tuple[SignalTable, tuple[pd.Timestamp, pd.Timestamp]]:
        """The signal table of the stored bars and production versions (built once for both), and
        the stored span."""
        models = self.production.current()
        bars, (first, newest), hourly = self.bars.snapshot()
        newest_hour = max((frame.index.max() for frame in hourly.values() if len(frame)), default=None)
        key = (newest, newest_hour, tuple(sorted((name, loaded.version) for name, loaded in models.items())))
        return self.signals.get(key, lambda: signal_table(self.settings, bars, models, hourly)), (first, newest)

    def generate(self, request: SignalRequest) -> dict:
        unknown = [s for s in request.symbols if s not in self.settings.universe]
        if unknown:
            named = ", ".join(printable(s) for s in unknown[:5]) + (
                f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
            )
            raise UnknownSymbols(f"unknown symbol(s) {named}; the universe is {', '.join(self.settings.symbols)}")
        table, (first, newest) = self.table()
        check_as_of(request.as_of, first, newest, self.timeframe)
        end = newest + pd.Timedelta(seconds=1)
        if request.as_of is not None:
            end = min(
                end, pd.Timestamp(request.as_of, tz="UTC") + pd.Timedelta(days=1)
            )  # an as-of past the newest bar is the newest
        signals = [table.latest(symbol, end, self.settings) for symbol in request.symbols]
        for signal in signals:
            if isinstance(signal, str):
                raise NotServable(signal)
        return {
            "as_of": request.as_of,
            "generated_at": dt.datetime.now(dt.UTC),
            "timeframe": self.timeframe,
            "models": table.sources,
            "signals": signals,
        }

    def health(self) -> dict:
        """'ok' when every task is served by a production model; 'degraded: <why>' when a task is
        served by its baseline or a production version was refused; 'unavailable: <why>' when no
        signal can be served (no stored bars, the store not answering)."""
        try:
            self.bars.snapshot()
            serving = serving_models(self.production.current())
        except (ServiceUnavailable, StoreError) as error:
            return {"status": f"unavailable: {error}", "serving_by_task": {}}
        problems = [f"{task} served by its baseline" for task, name in serving.items() if name is None]
        problems += [
            f"{name} {why.split(':')[0]} refused (it failed verification: its files, its load or its canary "
            "predictions)"
            for name, why in self.refused.items()
        ]
        status = "ok" if not problems else "degraded: " + "; ".join(problems)
        return {
            "status": status,
            "serving_by_task": {
                task: name or f"baseline ({TASKS[task].served_baseline})" for task, name in serving.items()
            },
        }

    def list_models(self) -> list[dict]:
        fields = ("model_name", "version", "status", "trained_date", "run_id", "test_metrics", "deploy_decision")
        return [{f: r.get(f) for f in fields} for r in self.registry.records()]


class UnknownSymbols(Exception):
    """What the API answers with 404: symbols outside the universe."""


class NotServable(Exception):
    """What the API answers with 422: no signal for that as-of (too early, too little history)."""


class ServiceUnavailable(Exception):
    """What the API answers with 503: no stored bars to compute signals from."""


def check_as_of(as_of: dt.date | None, first: pd.Timestamp, newest: pd.Timestamp, timeframe: str) -> None:
    """An as-of before the stored bars or in the future is a 422 that says which dates exist."""
    if as_of is None:
        return
    today = dt.datetime.now(dt.UTC).date()
    if as_of < first.date() or as_of > today:
        raise NotServable(
            f"as_of {as_of} is outside the stored {timeframe} bars, which run from {first.date()} to "
            f"{newest.date()}; ask for a date in that range (signals need the feature warm-up "
            "after the first), or leave as_of out for the newest bar"
        )


class BodyLimit:
    """ASGI middleware: a request body over ``limit`` bytes gets 413 before it is read in full, and a
    body that stops arriving (a Content-Length larger than what is sent) gets 408 after
    ``timeout`` seconds instead of holding a worker for ever."""

    def __init__(self, app, limit: int, timeout: float = 5.0):
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > self.limit):
            return await self._too_large(send)
        body, more = bytearray(), True
        while more:  # the whole body first, bounded in size and in time, then handed on
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except TimeoutError:
                return await self._timed_out(send)
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            if len(body) > self.limit:
                return await self._too_large(send)
            more = message.get("more_body", False)
        delivered = False

        async def replay():
            nonlocal delivered
            if delivered:
                return await receive()
            delivered = True
            return {"type": "http.request", "body": bytes(body), "more_body": False}

        await self.app(scope, replay, send)

    async def _timed_out(self, send):
        body = json.dumps(
            {
                "detail": f"the request body did not arrive within {self.timeout:g} s; send the whole body "
                "(its Content-Length must match it)"
            }
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": 408,
                "headers": [(b"content-type", b"application/json"), (b"connection", b"close")],
            }
        )
        await send({"type": "http.response.body", "body": body})

    async def _too_large(self, send):
        body = json.dumps(
            {"detail": f"request body over {self.limit:,} bytes (api.max_body_bytes); send fewer symbols"}
        ).encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": body})


class Busy(Exception):
    """Too many signal tables are being built at once: the client should retry after a moment."""


def printable(text: str) -> str:
    """Text as it may be echoed: control and formatting characters (U+202E, newlines) escaped."""
    return "".join(
        c if c.isprintable() and unicodedata.category(c) != "Cf" else c.encode("unicode_escape").decode() for c in text
    )


def first_error(error: RequestValidationError) -> str:
    """A request's first validation error in one line, without echoing the input."""
    first = error.errors()[0]
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body") or "body"
    if first.get("type") == "json_invalid":
        where = f"the body is not JSON (at character {where})"
    return (
        f'{where}: {first.get("msg", "invalid")}; send {{"symbols": ["AAPL"], "as_of": "YYYY-MM-DD"}} (as_of optional)'
    )


PROBLEMS = {status: {"model": Problem} for status in (404, 408, 413, 422, 503)}


def create_app(settings: Settings) -> FastAPI:
    """The API; /docs and /redoc are served from the installed package's assets (no CDN)."""
    service = SignalService(settings)
    app = FastAPIOffline(
        title="trading-ml signals",
        responses=PROBLEMS,
        description="Direction, volatility and regime signals from the production models.",
    )
    app.add_middleware(BodyLimit, limit=settings.api.max_body_bytes, timeout=settings.api.body_timeout_seconds)

    @app.exception_handler(RequestValidationError)
    async def bad_request(_, error: RequestValidationError):
        return JSONResponse(status_code=422, content={"detail": first_error(error)})

    @app.exception_handler(Busy)
    async def busy(_, error: Busy):
        return JSONResponse(
            status_code=503, content={"detail": str(error)}, headers={"Retry-After": str(BUSY_RETRY_AFTER)}
        )

    @app.exception_handler(UnknownSymbols)
    async def unknown_symbols(_, error: UnknownSymbols):
        return JSONResponse(status_code=404, content={"detail": str(error)})

    @app.exception_handler(NotServable)
    async def not_servable(_, error: NotServable):
        return JSONResponse(status_code=422, content={"detail": str(error)})

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(_, error: ServiceUnavailable):
        return JSONResponse(status_code=503, content={"detail": str(error)})

    @app.exception_handler(DataError)
    async def bad_model(_, error: DataError):  # e.g. a production model whose files fail their sha256
        return JSONResponse(status_code=503, content={"detail": str(error)})

    @app.exception_handler(StoreError)
    async def store_down(_, error: StoreError):  # MongoDB stopped answering: say so, try again later
        return JSONResponse(status_code=503, content={"detail": str(error)})

    @app.get("/health", response_model=Health)
    def health():
        state = service.health()
        try:
            production = service.registry.production_versions()
        except StoreError:
            production = {}
        body = {
            **state,
            "store": service.store_choice.kind,
            "production": production,
            "serving": service.production.loaded_versions(),
            "refused": service.refused,
            "cached_signal_tables": len(service.signals),
        }
        return JSONResponse(status_code=503 if state["status"].startswith("unavailable") else 200, content=body)

    @app.get("/models", response_model=list[ModelVersion])
    def models():
        return service.list_models()

    @app.post("/signals/generate", response_model=SignalsResponse, response_model_by_alias=True)
    def generate(request: SignalRequest):
        return service.generate(request)

    app.state.service = service
    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port)
