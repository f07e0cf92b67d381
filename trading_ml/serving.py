"""The signals API (FastAPI) over the production models: ``POST /signals/generate``, ``GET /models``,
``GET /health``. Listens on 127.0.0.1 unless told otherwise.

Signals come from the bars in the store (the ones ingestion wrote), cleaned by the same validation and
turned into features by the same code as training. Models load once and reload when the registry's
production version changes. A valid request is always answered: each task uses its production model
when there is one, else its declared baseline (the class prior for direction, the RiskMetrics EWMA
for volatility, persistence for the regime ahead), and every response and ``/health`` say which.
The current regime is always the plan's rules applied to the newest bar; it needs no model.
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
import time

import pandas as pd
from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from trading_ml.config import Settings
from trading_ml.data.calendars import bars_before, expected_timestamps
from trading_ml.data.validation import validate_bars
from trading_ml.errors import DataError, StoreError
from trading_ml.features.build import build_timeframe
from trading_ml.features.targets import DIRECTIONS
from trading_ml.loading import ModelLoader
from trading_ml.models.baselines import ewma_forecast
from trading_ml.models.catalogue import ENSEMBLE, ENSEMBLE_MEMBERS
from trading_ml.registry import ModelRegistry
from trading_ml.storage import open_store
from trading_ml.storage.base import documents_to_bars

log = logging.getLogger(__name__)

BARS_REFRESH_SECONDS = 60
SERVED_ROWS = 260  # rows kept past the warm-up per symbol: the LSTM's sequences and the volatility windows, with room
SERVED = {  # each task's models in order of preference; the first in production serves
    "direction": (ENSEMBLE, *ENSEMBLE_MEMBERS),
    "volatility": ("volatility_garch", "volatility_lstm"),
    "regime": ("regime_rf",),
}
BASELINES = {
    "direction": "class_prior: the frequencies of down, neutral and up over the stored history",
    "volatility": "ewma: the RiskMetrics EWMA of squared returns",
    "regime": "persistence: the regime ahead is the rules' regime now",
}
DIRECTION_CLASSES = {"p_down": "down", "p_neutral": "neutral", "p_up": "up"}
MIN_SEQUENCE_ROWS = 20


class SignalRequest(BaseModel):
    symbols: list[str] = Field(min_length=1, max_length=500, description="tickers of the configured universe")
    as_of: dt.date | None = Field(None, description="signals from bars up to this date (default: the newest stored bar)")


class SignalService:
    """Production models and feature tables, cached; thread-safe for uvicorn's worker threads."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self.store, self.store_choice = open_store(settings)
        self.registry = ModelRegistry(self.store, settings.data_dir)
        self.loader = ModelLoader(self.registry)
        self.timeframe = settings.models.timeframe
        self._lock = threading.Lock()
        self._models: dict[str, tuple[str, object]] = {}
        self.refused: dict[str, str] = {}  # model: "version: why" of a production version that failed to load
        self._bars: tuple[float, dict[str, pd.DataFrame]] | None = None
        self._signals: dict[tuple, tuple[pd.DataFrame, dict]] = {}

    def production_versions(self) -> dict[str, str]:
        return self.registry.production_versions()

    def models(self) -> dict[str, tuple[str, object]]:
        """{name: (version, model)} of the production models that serve, reloaded when a version changes."""
        versions = self.production_versions()
        with self._lock:
            for name in (n for names in SERVED.values() for n in names):
                version = versions.get(name)
                if version is None:
                    self._models.pop(name, None)
                elif self._models.get(name, (None,))[0] != version and not self.refused.get(name, "").startswith(f"{version}: "):
                    self._load(name, version)
            return dict(self._models)

    def _load(self, name: str, version: str) -> None:
        """Load a production version; if its files or record fail the sha256 check, keep serving the
        version already loaded, or the task's baseline when there is none (say so in /health and the log)."""
        log.info("loading %s %s", name, version)
        try:
            self._models[name] = (version, self.loader.load_model(name, version))
            self.refused.pop(name, None)
        except DataError as error:
            self.refused[name] = f"{version}: {error}"
            kept = f"still serving {self._models[name][0]}" if name in self._models else "serving without it"
            log.error("%s %s refused, %s: %s", name, version, kept, error)

    @staticmethod
    def serving_models(models: dict) -> dict[str, str | None]:
        """Each task's serving model name, or None for its baseline."""
        return {task: next((n for n in names if n in models), None) for task, names in SERVED.items()}

    def stored_bars(self) -> dict[str, pd.DataFrame]:
        """The universe's stored bars, re-read at most every BARS_REFRESH_SECONDS (ingestion adds bars)."""
        now = time.monotonic()
        if self._bars is None or now - self._bars[0] > BARS_REFRESH_SECONDS:
            documents = self.store.find("market_data", {"timeframe": self.timeframe})  # one read for every symbol
            by_symbol: dict[str, list[dict]] = {}
            for document in documents:
                by_symbol.setdefault(document["symbol"], []).append(document)
            self._bars = (now, {s: documents_to_bars(by_symbol[s]) for s in self.settings.symbols if s in by_symbol})
        if not self._bars[1]:
            raise ServiceUnavailable(f"no {self.timeframe} bars in the store; run `trading-ml ingest` first")
        return self._bars[1]

    def signal_frame(self, as_of: dt.date | None) -> tuple[pd.DataFrame, dict]:
        """Every task's output on the features of the whole universe (breadth and benchmark features
        need it) up to as_of, and what produced each; cached per as-of, bars and model versions."""
        models = self.models()
        bars = self.stored_bars()
        newest = max(frame.index.max() for frame in bars.values())
        end = pd.Timestamp(as_of, tz="UTC") + pd.Timedelta(days=1) if as_of else newest + pd.Timedelta(seconds=1)
        key = (end, newest, tuple(sorted((name, version) for name, (version, _) in models.items())))
        with self._lock:
            if key not in self._signals:
                table = self._build(bars, end)
                serving = self.serving_models(models)
                outputs = [self._direction(table, models, serving["direction"]), self._volatility(table, models, serving["volatility"]),
                           self._regime(table, models, serving["regime"])]
                frame = pd.concat([output for output, _ in outputs], axis=1)
                used = dict(zip(SERVED, (source for _, source in outputs), strict=True))
                self._signals = {key: (frame, used)}  # the newest as-of is what is asked for
            return self._signals[key]

    @staticmethod
    def _source(models: dict, name: str | None, task: str) -> dict:
        if name is None:
            return {"source": "baseline", "model": BASELINES[task].split(":")[0], "version": None,
                    "note": f"no {task} model is in production; serving its baseline ({BASELINES[task]})"}
        return {"source": "model", "model": name, "version": models[name][0]}

    def _direction(self, table: pd.DataFrame, models: dict, name: str | None) -> tuple[pd.DataFrame, dict]:
        if name is not None:
            return models[name][1].predict(table)[list(DIRECTION_CLASSES)], self._source(models, name, "direction")
        prior = table["target_direction"].dropna().astype(int).value_counts(normalize=True).reindex(sorted(DIRECTIONS), fill_value=0.0)
        frame = pd.DataFrame([prior.to_numpy()] * len(table), index=table.index, columns=list(DIRECTION_CLASSES))
        return frame, self._source(models, None, "direction")

    def _volatility(self, table: pd.DataFrame, models: dict, name: str | None) -> tuple[pd.DataFrame, dict]:
        if name is not None:
            return models[name][1].predict(table)[["volatility"]], self._source(models, name, "volatility")
        window, decay = self.settings.features.volatility_window, self.settings.models.ewma_lambda
        return ewma_forecast(table, window, decay).to_frame("volatility"), self._source(models, None, "volatility")

    def _regime(self, table: pd.DataFrame, models: dict, name: str | None) -> tuple[pd.DataFrame, dict]:
        now = table["target_regime"].rename("regime_now")
        ahead = models[name][1].predict(table)["regime_ahead"] if name is not None else now.rename("regime_ahead")
        return pd.concat([now, ahead], axis=1), self._source(models, name, "regime")

    def _build(self, bars: dict[str, pd.DataFrame], end: pd.Timestamp) -> pd.DataFrame:
        benchmark = self.settings.instrument(self.settings.features.benchmark).exchange
        start = bars_before(benchmark, self.timeframe, end, self.settings.features.warmup_bars + SERVED_ROWS) - pd.Timedelta(days=7)
        clean = {}
        for symbol, frame in bars.items():
            window = frame[(frame.index >= start) & (frame.index < end)]
            instrument = self.settings.instrument(symbol)
            expected = expected_timestamps(instrument.exchange, self.timeframe, start, end)
            report, cleaned = validate_bars(window, instrument, self.timeframe, expected, self.settings.validation)
            if not report.quarantined and len(cleaned):
                clean[symbol] = cleaned
        instruments = {symbol: self.settings.instrument(symbol) for symbol in clean}
        built = build_timeframe(clean, instruments, self.timeframe, self.settings.features)
        tables = [result.table.assign(symbol=symbol).set_index("symbol", append=True) for symbol, result in built.symbols.items() if len(result.table)]
        if not tables:
            raise HTTPException(422, f"the store has no {self.timeframe} bars past the feature warm-up before {end.date()}; use a later as_of")
        return pd.concat(tables).sort_index(level=["timestamp", "symbol"])

    def generate(self, request: SignalRequest) -> dict:
        unknown = [s for s in request.symbols if s not in self.settings.universe]
        if unknown:
            raise HTTPException(404, f"unknown symbol(s) {', '.join(unknown)}; the universe is {', '.join(self.settings.symbols)}")
        frame, used = self.signal_frame(request.as_of)
        signals = []
        for symbol, index in self._latest_rows(frame, request.symbols).items():
            row = frame.loc[index]
            signals.append({
                "symbol": symbol,
                "bar": index[0].isoformat(),
                "direction": {"probabilities": {label: float(row[column]) for column, label in DIRECTION_CLASSES.items()},
                              "class": DIRECTION_CLASSES[row[list(DIRECTION_CLASSES)].astype(float).idxmax()]},
                "volatility": {"forecast": float(row["volatility"])},
                "regime": {"now": str(row["regime_now"]), "ahead": str(row["regime_ahead"])},
            })
        return {"timeframe": self.timeframe, "models": used, "signals": signals}

    def _latest_rows(self, table: pd.DataFrame, symbols: list[str]) -> dict[str, tuple]:
        rows, present = {}, table.index.get_level_values("symbol")
        for symbol in symbols:
            stamps = table.index[present == symbol]
            if len(stamps) < MIN_SEQUENCE_ROWS:
                raise HTTPException(422, f"{symbol}: {len(stamps)} bars with complete features up to this as-of; the models need "
                                         f"{MIN_SEQUENCE_ROWS} after the warm-up; use a later as_of or ingest more history")
            rows[symbol] = stamps[-1]
        return rows

    def health(self) -> dict:
        """'ok' when every task is served by a production model, else 'degraded: <task> served by its baseline'."""
        serving = self.serving_models(self.models())
        on_baseline = [task for task, name in serving.items() if name is None]
        status = "ok" if not on_baseline else "degraded: " + "; ".join(f"{task} served by its baseline" for task in on_baseline)
        return {"status": status, "serving_by_task": {task: name or f"baseline ({BASELINES[task].split(':')[0]})" for task, name in serving.items()}}

    def loaded_versions(self) -> dict[str, str]:
        return {name: version for name, (version, _) in self._models.items()}

    def list_models(self) -> list[dict]:
        fields = ("model_name", "version", "status", "trained_date", "run_id", "test_metrics", "deploy_decision")
        return [{f: r.get(f) for f in fields} for r in self.registry.records()]


class ServiceUnavailable(Exception):
    """What the API answers with 503: no stored bars to compute signals from."""


def create_app(settings: Settings) -> FastAPI:
    service = SignalService(settings)
    app = FastAPI(title="trading-ml signals", description="Direction, volatility and regime signals from the production models.")

    @app.exception_handler(ServiceUnavailable)
    async def unavailable(_, error: ServiceUnavailable):
        return JSONResponse(status_code=503, content={"detail": str(error)})

    @app.exception_handler(DataError)
    async def bad_model(_, error: DataError):  # e.g. a production model whose files fail their sha256
        return JSONResponse(status_code=503, content={"detail": str(error)})

    @app.exception_handler(StoreError)
    async def store_down(_, error: StoreError):  # MongoDB stopped answering: say so, try again later
        return JSONResponse(status_code=503, content={"detail": str(error)})

    @app.get("/health")
    def health() -> dict:
        return {**service.health(), "store": service.store_choice.kind, "production": service.production_versions(),
                "serving": service.loaded_versions(), "refused": service.refused}

    @app.get("/models")
    def models() -> list[dict]:
        return service.list_models()

    @app.post("/signals/generate")
    def generate(request: SignalRequest) -> dict:
        return service.generate(request)

    app.state.service = service
    return app


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    uvicorn.run(create_app(settings), host=host, port=port)
