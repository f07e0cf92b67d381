"""Faults: a process that dies between writing a file and renaming it into place, two runs at the
same time, and a data provider that rate-limits, answers empty or answers garbage. Each test counts
what is there before and after: nothing lost, nothing half-written, nothing duplicated."""

from __future__ import annotations

import json
import os
import threading

import pandas as pd
import pytest
from secantus import SecantusDBServer
from yfinance.exceptions import YFRateLimitError

from tests.conftest import AS_OF, QUICK_MODELS, RestartableMongo, make_settings, write_config
from tests.stages import run_through
from trading_ml import io
from trading_ml.drivers import load_settings
from trading_ml.loading import ModelLoader
from trading_ml.models import TRAINED_MODELS
from trading_ml.pipeline.features import build_features
from trading_ml.pipeline.ingest import ingest
from trading_ml.pipeline.resources import StageResources
from trading_ml.pipeline.train import train
from trading_ml.registry import ModelNotFound, ModelRegistry
from trading_ml.run import RunContext, find_runs, runs_root
from trading_ml.sources import SyntheticSource, YahooSource
from trading_ml.storage import MongoStore, TinyStore, open_stage_store, open_store
from trading_ml.storage.base import NATURAL_KEYS
from trading_ml.sync import sync_to_mongo


class Killed(Exception):
    """Stands for the process dying."""


def kill_when_renaming(monkeypatch, name: str) -> None:
    """The rename into ``name`` never happens: the process 'dies' with the temp file written."""
    real_replace = os.replace

    def replace(source, target):
        if os.path.basename(target) == name:
            raise Killed(f"killed before {name} was renamed into place")
        return real_replace(source, target)

    monkeypatch.setattr(io.os, "replace", replace)


@pytest.fixture
def validated_run(tmp_path):
    ctx = RunContext.create(
        make_settings(tmp_path / "data"), AS_OF, ["^GSPC", "^VIX", "AAPL", "XOM"], ["1d"], "synthetic"
    )
    resources = StageResources.open(ctx)
    return ctx, resources, run_through(ctx, resources, "validate")["validate"]


def leftovers(folder) -> list[str]:
    return sorted(p.name for p in folder.rglob("*.tmp"))


def test_killed_while_writing_features_leaves_nothing_half_written_and_the_rerun_completes(validated_run, monkeypatch):
    ctx, resources, validated = validated_run
    kill_when_renaming(monkeypatch, "training_1d.parquet")
    with pytest.raises(Killed):
        build_features(ctx, resources)
    features = ctx.run_root / "features"
    assert not (features / "training_1d.parquet").exists() and not ctx.layout.features_manifest.exists()
    assert leftovers(ctx.run_root) == []
    monkeypatch.undo()
    manifest = build_features(ctx, resources)
    table = pd.read_parquet(features / "training_1d.parquet")
    assert len(table) == manifest["timeframes"]["1d"]["training_table"]["rows"] > 0


def test_killed_while_saving_a_model_registers_nothing_and_the_rerun_completes(validated_run, monkeypatch):
    ctx, resources, validated = validated_run
    build_features(ctx, resources)
    kill_when_renaming(monkeypatch, "regime_rf.skops")
    with pytest.raises(Killed):
        train(ctx, "regime_rf", resources)
    registry = ModelRegistry(resources.store, ctx.settings.data_dir)
    assert not ctx.layout.model_file("regime_rf", ".skops").exists() and leftovers(ctx.run_root) == []
    with pytest.raises(ModelNotFound):
        registry.record("regime_rf", "1.0")  # a model is registered only after all its files are in place
    monkeypatch.undo()
    trained = train(ctx, "regime_rf", resources)
    assert trained["version"] == "1.0" and ModelLoader(registry).load_model("regime_rf", "1.0") is not None


@pytest.mark.parametrize("backend", ["tinydb", "mongodb"])
def test_two_runs_at_the_same_time_overwrite_nothing_of_each_other(tmp_path, request, backend):
    """Runs as-of a quarter apart train the same model at the same time (threads): each gets its own
    version, record, files and run root."""
    uri = request.getfixturevalue("mongo_uri") if backend == "mongodb" else None
    settings = make_settings(tmp_path / "data", uri)
    prepared = []
    for as_of in ("2026-08-20", "2026-11-20"):
        ctx = RunContext.create(settings, as_of, ["^GSPC", "^VIX", "AAPL", "XOM"], ["1d"], "synthetic")
        run_through(ctx, StageResources.open(ctx), "features")
        prepared.append(ctx)
    results, errors = {}, []

    def train_in_thread(ctx):
        try:  # each thread opens its own store, as two processes would
            results[ctx.run_id] = train(ctx, "regime_rf", StageResources.open(ctx))
        except Exception as error:  # noqa: BLE001 - reported below
            errors.append(error)

    threads = [threading.Thread(target=train_in_thread, args=(ctx,)) for ctx in prepared]
    [thread.start() for thread in threads]
    [thread.join() for thread in threads]
    assert errors == []
    assert sorted(r["version"] for r in results.values()) == ["1.0", "2.0"]
    registry = ModelRegistry(StageResources.open(prepared[0]).store, settings.data_dir)
    for ctx in prepared:
        record = registry.record("regime_rf", results[ctx.run_id]["version"])
        assert record["run_id"] == ctx.run_id
        assert all(
            (runs_root(settings.data_dir) / a["path"]).parent.parent == ctx.run_root for a in record["artifacts"]
        )
        assert ModelLoader(registry).load_model("regime_rf", record["version"]) is not None


class FlakyYahoo:
    """yfinance's boundary for a whole run: every symbol is rate limited (429) twice, then answers
    with the synthetic market's bars shaped as yfinance shapes them; except ``empty`` (an empty
    frame) and ``malformed`` (prices as text)."""

    def __init__(self, empty: str, malformed: str, limited_calls: int = 2):
        self.market, self.settings = SyntheticSource(), load_settings(env={})
        self.empty, self.malformed, self.limited_calls = empty, malformed, limited_calls
        self.calls: dict[str, int] = {}

    def __call__(self, symbol, start, end, interval):
        self.calls[symbol] = self.calls.get(symbol, 0) + 1
        if self.calls[symbol] <= self.limited_calls:
            raise YFRateLimitError()
        if symbol == self.empty:
            return pd.DataFrame()
        bars = self.market.fetch(self.settings.instrument(symbol), interval, start, end)
        frame = bars.rename(columns=str.title).set_index(
            pd.DatetimeIndex(bars.index.date, name="Date").tz_localize("America/New_York")
        )
        if symbol == self.malformed:
            frame["Close"] = frame["Close"].map(lambda price: f"{price:.2f} USD")
        return frame


def test_yahoo_rate_limits_then_an_empty_and_a_malformed_answer_quarantine_two_and_the_run_completes(tmp_path):
    settings = make_settings(tmp_path / "data", min_pass_share=0.6)  # two of six will fail
    symbols = ["^GSPC", "^VIX", "AAPL", "MSFT", "JPM", "XOM"]
    ctx = RunContext.create(settings, AS_OF, symbols, ["1d"], "yahoo")
    fake = FlakyYahoo(empty="JPM", malformed="XOM")
    resources = StageResources(
        YahooSource(fetch=fake, retries=3, backoff_seconds=0.01, sleep=lambda s: None), open_stage_store(settings)
    )
    store = resources.store
    validated = run_through(ctx, resources, "validate")["validate"]
    assert all(count == 3 for count in fake.calls.values())  # two 429s retried, then an answer
    reasons = {q["symbol"]: " ".join(q["reasons"]) for q in validated["quarantined"]}
    assert set(reasons) == {"JPM", "XOM"}
    assert "Yahoo returned no bars" in reasons["JPM"] and "XOM" in reasons["XOM"] and "close" in reasons["XOM"].lower()
    expected_rows = {
        s: len(fake.market.fetch(settings.instrument(s), "1d", *ctx.fetch_window(s, "1d"))) for s in symbols
    }  # with the warm-up
    assert {p["symbol"]: p["rows"] for p in validated["passed"]} == {
        s: expected_rows[s] for s in ("^GSPC", "^VIX", "AAPL", "MSFT")
    }
    assert store.count("market_data") == sum(
        expected_rows[s] for s in ("^GSPC", "^VIX", "AAPL", "MSFT")
    )  # nothing of the bad two
    features = build_features(ctx, resources)
    assert features["timeframes"]["1d"]["training_table"]["rows"] > 0


def test_mongodb_stopping_mid_ingest_then_sync_leaves_every_bar_in_mongodb_once(tmp_path):
    """A real server stopped between two symbols: the stage finishes on TinyDB and says so; once the
    server is back (same port, same data), `sync` leaves every bar in MongoDB exactly once."""
    storage = str(tmp_path / "secantus")
    server = SecantusDBServer(host="127.0.0.1", port=0, storage_path=storage, durable=True)
    server.start()
    host, port = server.address[:2]
    settings = make_settings(tmp_path / "data", server.uri)
    ctx = RunContext.create(settings, AS_OF, ["AAPL", "XOM", "JPM"], ["1d"], "synthetic")
    resources = StageResources.open(ctx)
    [first] = ingest(ctx, [("AAPL", "1d")], resources)
    server.stop()
    rest = [ingest(ctx, [(symbol, "1d")], resources)[0] for symbol in ("XOM", "JPM")]
    assert first["store"]["kind"] == "mongodb" and all(m["store"]["kind"] == "tinydb" for m in rest)
    assert "fell back to TinyDB mid-run" in rest[0]["store"]["reason"]
    total = first["rows"] + sum(m["rows"] for m in rest)
    again = SecantusDBServer(host=host, port=port, storage_path=storage, durable=True)
    again.start()
    try:
        summary = sync_to_mongo(settings)
        assert summary["market_data"]["in_mongodb"] == total  # AAPL from before the stop, XOM and JPM from the fallback
        sync_to_mongo(settings)  # a second sync adds nothing
        mongo, _ = open_store(settings)
        assert mongo.count("market_data") == total
        for symbol, manifest in zip(("AAPL", "XOM", "JPM"), (first, *rest)):
            assert len(mongo.read_bars(symbol, "1d")) == manifest["rows"]
        mongo.close()
    finally:
        again.stop()


STOP_POINTS = {  # where the server is stopped: just before this call runs
    "ingest's first write": ("trading_ml.storage.mongo", "MongoStore", "upsert_many"),
    "train's version claim": ("trading_ml.registry", "ModelRegistry", "version_for_run"),
    "deploy's decision": ("trading_ml.pipeline.deploy", None, "_deploy_one"),
    "report": ("trading_ml.pipeline.report", None, "write_report"),
}


def stop_mongodb_at(point: str, mongo: RestartableMongo, monkeypatch) -> list:
    """Stop the server the first time the point's function is called; the list says whether it was."""
    import importlib

    module_name, class_name, function = STOP_POINTS[point]
    owner = importlib.import_module(module_name)
    owner = getattr(owner, class_name) if class_name else owner
    real, fired = getattr(owner, function), []

    def stop_then_call(*args, **kwargs):
        if not fired:
            fired.append(point)
            mongo.stop()
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, function, stop_then_call)
    return fired


@pytest.mark.parametrize("point", list(STOP_POINTS))
def test_mongodb_stopping_mid_run_ends_on_tinydb_or_in_one_line_and_sync_loses_nothing(
    point, tmp_path, restartable_mongo, monkeypatch, capsys
):
    """Before: a raw ServerSelectionTimeoutError traceback, nothing stored. Now: where the run can go on
    (ingest, train) it finishes on TinyDB; where its models are in MongoDB (deploy, report) it stops
    with one line and exit 3 (retry later). Then `trading-ml sync` leaves everything in MongoDB."""
    from trading_ml.cli import main

    monkeypatch.setenv("TRADING_ML_MONGO_URI", restartable_mongo.start())
    config = str(write_config(tmp_path, models=QUICK_MODELS, storage={"database": "faults", "ping_timeout_ms": 1500}))
    fired = stop_mongodb_at(point, restartable_mongo, monkeypatch)
    code = main(["run", "--symbols", "^GSPC,^VIX,AAPL,XOM", "--timeframes", "1d", "--as-of", AS_OF, "--config", config])
    err = capsys.readouterr().err
    assert fired == [point] and "Traceback" not in err and "pymongo" not in err
    [run] = find_runs(tmp_path / "data")
    stages = json.loads(run.layout.run_manifest.read_text())
    if point in ("ingest's first write", "train's version claim"):
        assert code == 0 and run.layout.report_html.is_file()
        assert stages["store"]["kind"] == "tinydb" and "fell back to TinyDB mid-run" in stages["store"]["reason"]
    else:
        messages = [line for line in err.splitlines() if line.startswith(("unavailable", "error", "stage failed"))]
        assert code == 3 and len(messages) == 1 and messages[0].startswith("unavailable, retry later: ")
        assert "MongoDB" in messages[0] and "re-run this stage when MongoDB answers" in messages[0]

    restartable_mongo.start()
    assert main(["sync", "--config", config]) == 0
    settings = load_settings(config)
    tiny, mongo = TinyStore(settings.storage.fallback_dir), MongoStore.connect(settings.storage.mongo_uri, "faults")
    try:
        for collection in ("market_data", "validation_reports", "pipeline_runs"):
            keys = [
                {tuple(str(d[k]) for k in NATURAL_KEYS[collection]) for d in store.find(collection)}
                for store in (tiny, mongo)
            ]
            assert keys[0] <= keys[1], collection  # every document of the fallback
        assert mongo.count("market_data") == sum(
            p["rows"] for p in json.loads(run.layout.validate_manifest.read_text())["passed"]
        )
        registry = ModelRegistry(mongo, settings.data_dir)
        records = [r for r in registry.records() if r["run_id"] == run.run_id]
        assert sorted(r["model_name"] for r in records) == sorted((*TRAINED_MODELS, "direction"))
        assert all(ModelLoader(registry).load_record(record) is not None for record in records)
        assert all(
            len([r for r in registry.records(name) if r["status"] == "production"]) <= 1
            for name in registry.production_versions()
        )
    finally:
        mongo.close()


def test_mongodb_down_when_deploy_starts_is_exit_3_not_train_it_first(tmp_path, restartable_mongo, monkeypatch, capsys):
    """The run's models are registered in MongoDB; a deploy started while it does not answer opens the
    TinyDB fallback, which has none of them: that is a service to wait for (exit 3), not bad input."""
    from trading_ml.cli import main

    monkeypatch.setenv("TRADING_ML_MONGO_URI", restartable_mongo.start())
    config = str(write_config(tmp_path, models=QUICK_MODELS, storage={"database": "faults", "ping_timeout_ms": 1500}))
    assert (
        main(
            [
                "run",
                "--symbols",
                "^GSPC,^VIX,AAPL,XOM",
                "--timeframes",
                "1d",
                "--as-of",
                AS_OF,
                "--models",
                "regime_rf",
                "--config",
                config,
            ]
        )
        == 0
    )
    capsys.readouterr()
    restartable_mongo.stop()
    code = main(["deploy", "--as-of", AS_OF, "--config", config])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 3 and len(err) == 1 and err[0].startswith("unavailable, retry later: "), err
    assert "re-run this stage when MongoDB answers" in err[0] and "train it first" not in err[0]


def test_a_writer_killed_with_sigkill_leaves_a_temp_file_that_the_rerun_removes(tmp_path):
    import signal
    import subprocess
    import sys
    import textwrap

    from trading_ml.pipeline.ingest import ingest

    settings = make_settings(tmp_path / "data")
    ctx = RunContext.create(settings, AS_OF, ["AAPL"], ["1d"], "synthetic")
    child = textwrap.dedent(f"""
        import os, signal
        from trading_ml.drivers import load_settings
        from trading_ml.pipeline.ingest import ingest
        from trading_ml.run import RunContext
        os.replace = lambda source, target: os.kill(os.getpid(), signal.SIGKILL)  # killed between write and rename
        settings = load_settings(env={{"TRADING_ML_DATA_DIR": {str(settings.data_dir)!r}}})
        ingest(RunContext.create(settings, {AS_OF!r}, ["AAPL"], ["1d"], "synthetic", {ctx.run_id!r}))
    """)
    result = subprocess.run([sys.executable, "-c", child], capture_output=True, timeout=120)
    assert result.returncode == -signal.SIGKILL, result.stderr.decode()[-2000:]
    left = sorted(p.name for p in ctx.layout.raw_bars("AAPL", "1d").parent.glob("*.tmp"))
    assert len(left) == 1 and left[0].startswith(".AAPL_1d.csv."), left
    ingest(ctx)
    assert not list(ctx.run_root.rglob("*.tmp")) and ctx.layout.raw_bars("AAPL", "1d").is_file()
