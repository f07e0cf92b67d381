"""Shared fixtures: settings rooted in a temp folder, and a real MongoDB wire server (SecantusDB)."""

from __future__ import annotations

import dataclasses
import inspect
import os
import socket
import uuid
from pathlib import Path

import pytest
import yaml
from secantus import SecantusDBServer

from trading_ml.config import Settings
from trading_ml.config.loader import ENV_DATA_DIR, ENV_MONGO_URI
from trading_ml.drivers import load_settings
from trading_ml.models.catalogue import model_params
from trading_ml.run import RunContext

AS_OF = "2026-11-20"
SMALL_UNIVERSE = ["^GSPC", "^VIX", "^NSEI", "AAPL", "XOM"]
REPO = Path(__file__).resolve().parent.parent
QUICK_SIZES = {"rounds": 60, "epochs": 2, "trees": 30}  # whole runs in seconds; fault tests judge custody, not skill
QUICK_MODELS = {  # every catalogued model's parameters of those names, shrunk (a new model's too)
    name: quick
    for name, params in model_params().items()
    if (quick := {key: value for key, value in QUICK_SIZES.items() if key in params.__dataclass_fields__})
}


# Session fixtures every worker builds for itself: each is quick, and each worker needs its own.
PER_WORKER = frozenset({"mongo_server", "airflow_db", "feature_settings", "screenshots"})


def pytest_configure(config):
    """Under pytest-xdist each worker gets a core of its own (thread budgets then follow
    ``machine_cores``, and no worker's torch spins against another's)."""
    config.addinivalue_line("markers", "xdist_group(name): tests run on one worker (pytest-xdist's mark)")
    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if worker.startswith("gw") and hasattr(os, "sched_setaffinity"):
        cores = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cores[int(worker[2:]) % len(cores)]})


@pytest.hookimpl(tryfirst=True)  # before xdist's own hook reads the marks (it runs first otherwise)
def pytest_collection_modifyitems(items):
    """Under ``--dist loadgroup``, tests that share a fixture wider than one test (a pipeline run, an
    Airflow stack, a trained model), directly or through another test, go to one worker, so the
    fixture is built once; every other test goes to whichever worker is free."""
    for item, group in shared_fixture_groups(items).items():
        item.add_marker(pytest.mark.xdist_group(group))


def pytest_runtest_setup(item):
    """A grouped test that lost its group fails: its shared fixture would be built once per worker,
    silently (pytest 9.2 with pytest-xdist 3.8 drops the groups, pytest-xdist#1386)."""
    if getattr(item.config.option, "loadgroup", False) and item.get_closest_marker("xdist_group"):
        if "@" not in item.nodeid:
            pytest.fail(
                "--dist loadgroup did not group this test: pytest-xdist cannot mark this pytest's node ids; "
                "install the pinned pytest (constraints.txt)",
                pytrace=False,
            )


def shared_fixture_groups(items) -> dict:
    """Each test that uses a shared fixture, and the group of tests joined to it by shared fixtures."""
    parent: dict[str, str] = {}

    def root(key: str) -> str:
        while parent.setdefault(key, key) != key:
            key = parent[key]
        return key

    used = {item: shared_fixtures(item) for item in items}
    for keys in used.values():
        for key in keys[1:]:
            parent[root(key)] = root(keys[0])
    return {item: root(keys[0]) for item, keys in used.items() if keys}


def shared_fixtures(item) -> list[str]:
    """The fixtures of this repository's tests, wider than one test, that ``item`` uses (PER_WORKER aside)."""
    info = getattr(item, "_fixtureinfo", None)
    found = []
    for name in getattr(item, "fixturenames", ()):
        definitions = info.name2fixturedefs.get(name) if info else None
        if not definitions or name in PER_WORKER:
            continue
        definition = definitions[-1]
        where = Path(inspect.getfile(definition.func)).resolve()
        if definition.scope != "function" and where.is_relative_to(REPO / "tests"):
            found.append(f"{where.stem}.{name}")
    return found


@pytest.fixture(scope="session")
def mongo_server(tmp_path_factory):
    """One SecantusDB server for the session, on loopback, stopped at the end."""
    with SecantusDBServer(host="127.0.0.1", port=0, storage_path=str(tmp_path_factory.mktemp("secantus"))) as server:
        yield server


@pytest.fixture
def mongo_uri(mongo_server) -> str:
    return mongo_server.uri


def make_settings(data_dir: Path, mongo_uri: str | None = None, **validation) -> Settings:
    """The repo's config.yaml rooted at data_dir, with its own MongoDB database name per call."""
    env = {ENV_DATA_DIR: str(data_dir)}
    if mongo_uri:
        env[ENV_MONGO_URI] = mongo_uri
    settings = load_settings(env=env)
    storage = dataclasses.replace(settings.storage, database=f"test_{uuid.uuid4().hex[:10]}", ping_timeout_ms=1500)
    checks = dataclasses.replace(settings.validation, **validation)
    return dataclasses.replace(settings, storage=storage, validation=checks)


def quick(settings: Settings) -> Settings:
    """The same settings with small models (QUICK_MODELS)."""
    return dataclasses.replace(settings, models=settings.models.tuned(**QUICK_MODELS))


def write_config(folder: Path, **sections) -> Path:
    """The repo's config.yaml rooted in folder, with sections (e.g. airflow=...) merged in."""
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["data_dir"] = str(folder / "data")
    raw.update(merged(raw, sections))
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def merged(base: dict, changes: dict) -> dict:
    """``base`` with ``changes`` written in, section by section (a mapping into a mapping, any other
    value in place of the old)."""
    result = dict(base)
    for key, value in changes.items():
        both_mappings = isinstance(value, dict) and isinstance(result.get(key), dict)
        result[key] = merged(result[key], value) if both_mappings else value
    return result


class RestartableMongo:
    """A SecantusDB server on loopback that a test can stop and start again on the same port and data."""

    def __init__(self, storage: Path):
        self.storage, self.server, self.address = str(storage), None, None

    def start(self) -> str:
        host, port = self.address or ("127.0.0.1", 0)
        self.server = SecantusDBServer(host=host, port=port, storage_path=self.storage, durable=True)
        self.server.start()
        self.address = self.server.address[:2]
        return self.server.uri

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None


@pytest.fixture
def restartable_mongo(tmp_path):
    mongo = RestartableMongo(tmp_path / "secantus")
    yield mongo
    mongo.stop()


@pytest.fixture
def settings(tmp_path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
def small_context(settings) -> RunContext:
    return RunContext.create(settings, AS_OF, SMALL_UNIVERSE, ["1d", "1h"], "synthetic")


def closed_port_uri() -> str:
    """A mongodb:// URI on a loopback port nothing listens on."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"mongodb://user:secret@127.0.0.1:{port}/"


def train_and_promote(settings: Settings, symbols: list[str] | None = None) -> tuple[RunContext, object]:
    """A full pipeline run (1d, synthetic) into settings' store. Whatever deploy decided, the direction
    ensemble and the regime forest are then promoted, so there are production models to serve."""
    from tests.stages import run_through
    from trading_ml.pipeline.resources import StageResources
    from trading_ml.registry import ModelRegistry

    ctx = RunContext.create(settings, AS_OF, symbols, ["1d"], "synthetic")
    resources = StageResources.open(ctx)
    run_through(ctx, resources, "deploy")
    registry = ModelRegistry(resources.store, settings.data_dir)
    for name in ("direction", "direction_xgboost", "direction_lstm", "regime_rf"):
        if registry.record_for_run(name, ctx.run_id)["status"] != "production":
            registry.promote(name, ctx.run_id, "promoted to serve (test set-up)")
    return ctx, resources


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory):
    """One full run with production models and its report, on a small universe into TinyDB."""
    from trading_ml.pipeline.report import report

    settings = make_settings(tmp_path_factory.mktemp("trained") / "data")
    ctx, resources = train_and_promote(settings, ["^GSPC", "^VIX", "AAPL", "MSFT", "XOM", "JPM", "JNJ"])
    return ctx, resources, report(ctx, resources)


QUARTERS = ["2026-01-01", "2026-04-01", "2026-07-01", "2026-10-01"]
QUARTERLY_MODELS = ("direction_xgboost", "volatility_garch", "regime_rf")
QUARTERLY_SYMBOLS = ["^GSPC", "^VIX", "AAPL", "MSFT", "JPM", "XOM", "JNJ", "WMT"]
WITHOUT_VIX = [s for s in QUARTERLY_SYMBOLS if s != "^VIX"]  # the third quarter's run: a table without the VIX features
UNDEPLOYED = (0, 2)  # the first and third runs stop after evaluate


@pytest.fixture(scope="session")
def quarterly_runs(tmp_path_factory):
    """Four quarterly CLI runs of direction_xgboost, volatility_garch and regime_rf into TinyDB: the
    history and the operator's pages read them. The first and third do not deploy (nothing is
    production in the first period); the third leaves ^VIX out, so its table lacks the VIX features
    the first two versions were trained on. (folder, config path)"""
    from tests.test_retraining import quarter_config
    from trading_ml.cli import main

    folder = tmp_path_factory.mktemp("quarters")
    config = quarter_config(folder, {})
    for number, as_of in enumerate(QUARTERS):
        stages = ["run"] if number not in UNDEPLOYED else ["ingest", "validate", "features", "train", "evaluate"]
        symbols = WITHOUT_VIX if number == 2 else QUARTERLY_SYMBOLS
        for stage in stages:
            options = (
                ["--symbols", ",".join(symbols), "--timeframes", "1d", "--models", ",".join(QUARTERLY_MODELS)]
                if stage in ("run", "ingest")
                else []
            )
            assert main([stage, *options, "--as-of", as_of, "--config", config]) == 0, stage
    return folder, config
