"""The signals API, started with uvicorn on a free loopback port against models trained in the test."""

from __future__ import annotations

import dataclasses
import datetime as dt
import shutil
import socket
import threading
import time
from pathlib import Path

import httpx
import pandas as pd
import pytest
import uvicorn

from tests.conftest import make_settings
from trading_ml.models.catalogue import MODEL_NAMES
from trading_ml.registry import ModelRegistry
from trading_ml.run import RunLayout
from trading_ml.serving import StoredBars, create_app
from trading_ml.storage import TinyStore
from trading_ml.storage.base import bars_to_documents

REGIMES = {"bull", "bear", "sideways", "high_vol"}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def start_api():
    """Start the API on 127.0.0.1 for a settings object; stopped at the end of the test."""
    servers = []

    def start(settings) -> httpx.Client:
        port = free_port()
        server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        deadline = time.monotonic() + 30
        while not server.started:
            assert time.monotonic() < deadline, "the API did not start"
            time.sleep(0.05)
        servers.append((server, thread))
        return httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)

    yield start
    for server, thread in servers:
        server.should_exit = True
        thread.join(timeout=10)


def test_signals_have_probabilities_that_sum_to_one_and_the_registrys_versions(trained_run, start_api):
    ctx, resources, _ = trained_run
    client = start_api(ctx.settings)
    answer = client.post("/signals/generate", json={"symbols": ["AAPL", "^GSPC", "XOM"]})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    registry = ModelRegistry(resources.store, ctx.settings.data_dir)
    for task, name in (("direction", "direction"), ("regime", "regime_rf")):
        record = registry.record(name)
        assert body["models"][task] == {
            "source": "model",
            "model": name,
            "version": record["version"],
            "trained_until": record["trained_until"],
            "note": None,
        }
    volatility = body["models"]["volatility"]
    production = [
        r for r in registry.records() if r["model_name"].startswith("volatility") and r["status"] == "production"
    ]
    assert volatility["model"] == (production[0]["model_name"] if production else "ewma")
    assert [s["symbol"] for s in body["signals"]] == ["AAPL", "^GSPC", "XOM"]
    for signal in body["signals"]:
        probabilities = signal["direction"]["probabilities"]
        assert abs(sum(probabilities.values()) - 1) < 1e-5 and signal["direction"]["class"] == max(
            probabilities, key=probabilities.get
        )
        assert 0 < signal["volatility"]["forecast"] < 0.2 and signal["regime"]["now"] in REGIMES
        assert signal["bar"] < f"{ctx.as_of.isoformat()}"  # the newest stored bar, before the run's as-of
    models = {(m["model_name"], m["version"]): m["status"] for m in client.get("/models").json()}
    assert models[("regime_rf", "1.0")] == "production" and len(models) == len(MODEL_NAMES)


def test_bad_requests_get_a_4xx_that_says_what_to_fix(trained_run, start_api):
    ctx, _, _ = trained_run
    client = start_api(ctx.settings)
    unknown = client.post("/signals/generate", json={"symbols": ["AAPL", "ZZZZ"]})
    assert unknown.status_code == 404 and "unknown symbol(s) ZZZZ" in unknown.json()["detail"]
    assert client.post("/signals/generate", json={"symbols": []}).status_code == 422
    assert client.post("/signals/generate", json={"tickers": ["AAPL"]}).status_code == 422
    assert (
        client.post("/signals/generate", content=b"{not json", headers={"content-type": "application/json"}).status_code
        == 422
    )
    early = client.post(
        "/signals/generate", json={"symbols": ["AAPL"], "as_of": "2020-03-02"}
    )  # ~70 bars after the first stored
    assert early.status_code == 422 and "use an as_of from " in early.json()["detail"]


def test_without_a_production_model_a_task_is_served_by_its_baseline_and_a_promotion_is_picked_up(
    trained_run, start_api, tmp_path
):
    empty = start_api(make_settings(tmp_path / "empty"))
    answer = empty.post("/signals/generate", json={"symbols": ["AAPL"]})
    assert (
        answer.status_code == 503
        and "no 1d bars in the store; run `trading-ml ingest` first" in answer.json()["detail"]
    )
    ctx, resources, _ = trained_run
    client = start_api(ctx.settings)
    assert client.post("/signals/generate", json={"symbols": ["AAPL"]}).json()["models"]["regime"]["source"] == "model"
    store = resources.store
    pointer = store.find("model_production", {"model_name": "regime_rf"})[0]
    assert store.replace_if(
        "model_production", {**pointer, "run_id": "nobody", "revision": pointer["revision"] + 1}, pointer["revision"]
    )
    try:
        answer = client.post("/signals/generate", json={"symbols": ["AAPL"]})  # it reads the registry each time
        assert answer.status_code == 200 and answer.json()["models"]["regime"]["source"] == "baseline"
        signal = answer.json()["signals"][0]["regime"]
        assert signal["ahead"] == signal["now"]  # persistence: the rules' regime now
        status = client.get("/health").json()["status"]
        assert status.startswith("degraded: ") and "regime served by its baseline" in status
    finally:
        assert store.replace_if(
            "model_production", {**pointer, "revision": pointer["revision"] + 2}, pointer["revision"] + 1
        )
    assert client.post("/signals/generate", json={"symbols": ["AAPL"]}).json()["models"]["regime"]["source"] == "model"


def new_version_of(registry: ModelRegistry, good: dict, altered: str) -> dict:
    """regime_rf 2.0 of another run, made from 1.0's files copied into that run's folder: its
    record's sha256 altered, or (recorded with their true sha256) a file altered on disk afterwards."""
    layout = RunLayout.of(registry.models_root.parent, dt.date.fromisoformat(good["as_of"]), "manual__tampered")
    copies = []
    for artifact in good["artifacts"]:
        suffix = Path(artifact["path"]).name.removeprefix("regime_rf")
        copies.append(layout.model_file("regime_rf", suffix))
        copies[-1].parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(registry.models_root / artifact["path"], copies[-1])
    record = {**good, "version": "2.0", "run_id": "manual__tampered", "artifacts": registry.artifacts(copies)}
    if altered == "record":
        return {**record, "artifacts": [{**a, "sha256": "0" * 64} for a in record["artifacts"]]}
    with copies[0].open("ab") as file:
        file.write(b"\0")
    return record


@pytest.mark.parametrize("altered", ["record", "file"])
def test_a_tampered_new_production_version_is_refused_and_the_previous_one_keeps_serving(
    trained_run, start_api, tmp_path, altered
):
    """A copy of the run's registry where regime_rf 2.0 is promoted with a record whose sha256 does
    not match its files, or with a file altered on disk: the API refuses it, keeps serving 1.0 and
    says so."""
    ctx, _, _ = trained_run
    shutil.copytree(ctx.settings.data_dir, tmp_path / "data")
    fallback = tmp_path / "data" / "fallback"
    settings = dataclasses.replace(
        ctx.settings,
        data_dir=tmp_path / "data",
        storage=dataclasses.replace(ctx.settings.storage, fallback_dir=fallback),
    )
    client = start_api(settings)
    assert client.post("/signals/generate", json={"symbols": ["AAPL"]}).json()["models"]["regime"]["version"] == "1.0"
    registry = ModelRegistry(TinyStore(fallback), settings.data_dir)
    registry.register(new_version_of(registry, registry.record("regime_rf", "1.0"), altered))
    registry.promote("regime_rf", "manual__tampered", f"a tampered {altered}, promoted by the test")
    answer = client.post("/signals/generate", json={"symbols": ["AAPL"]})
    assert answer.status_code == 200 and answer.json()["models"]["regime"]["version"] == "1.0"
    health = client.get("/health").json()
    assert health["production"]["regime_rf"] == "2.0" and health["serving"]["regime_rf"] == "1.0"
    assert "does not match its registry sha256" in health["refused"]["regime_rf"]


def test_the_signal_cache_builds_each_key_once_and_a_free_build_slot_serves_another_key():
    """Two build slots: eight requests for a share one build, and b is built at once beside it."""
    from trading_ml.serving import SignalCache

    cache, builds, release = SignalCache(size=2, builds=2), [], threading.Event()

    def build(key, wait=False):
        def run():
            builds.append(key)
            if wait:
                assert release.wait(10)
            return key, {}

        return run

    slow = [threading.Thread(target=cache.get, args=(("a",), build(("a",), wait=True))) for _ in range(8)]
    for thread in slow:
        thread.start()
    time.sleep(0.2)
    started = time.monotonic()
    assert cache.get(("b",), build(("b",))) == (("b",), {})  # not held up by a's build
    assert time.monotonic() - started < 1 and builds.count(("a",)) == 1
    release.set()
    for thread in slow:
        thread.join(10)
    assert builds.count(("a",)) == 1 and builds.count(("b",)) == 1  # eight requests for a, one build
    cache.get(("c",), build(("c",)))  # b (stored before a finished) is the least recently used: out
    cache.get(("a",), build(("a",)))
    cache.get(("b",), build(("b",)))
    assert builds.count(("a",)) == 1 and builds.count(("b",)) == 2 and len(cache) == 2


def test_health_says_unavailable_with_the_reason_when_nothing_can_be_served(tmp_path):
    from fastapi.testclient import TestClient

    with TestClient(create_app(make_settings(tmp_path / "empty"))) as client:
        answer = client.get("/health")
    assert answer.status_code == 503
    assert answer.json()["status"] == "unavailable: no 1d bars in the store; run `trading-ml ingest` first"


def test_a_cold_key_waits_a_bounded_time_for_a_build_slot_then_gets_busy():
    from trading_ml.serving import Busy, SignalCache

    cache, release = SignalCache(size=8, builds=1, wait_seconds=0.3), threading.Event()
    holder = threading.Thread(target=cache.get, args=(("a",), lambda: (release.wait(10), {})))
    holder.start()
    time.sleep(0.1)
    started = time.monotonic()
    with pytest.raises(Busy, match="retry in 2 s"):
        cache.get(("b",), lambda: (("b",), {}))
    assert 0.25 < time.monotonic() - started < 2
    with pytest.raises(Busy, match="still being built by another request"):  # joining a's build waits no longer either
        cache.get(("a",), lambda: (("a",), {}))
    release.set()
    holder.join(10)
    assert cache.get(("b",), lambda: (("b",), {})) == (("b",), {})  # a slot is free again


def test_busy_is_503_with_retry_after_and_a_404_never_echoes_control_characters(trained_run, monkeypatch):
    from fastapi.testclient import TestClient

    from trading_ml.serving import Busy

    ctx, _, _ = trained_run
    with TestClient(create_app(ctx.settings)) as client:
        unknown = client.post("/signals/generate", json={"symbols": ["ZZ\u202eZ", "A\nB"]})
        assert unknown.status_code == 404
        detail = unknown.json()["detail"]
        assert "\u202e" not in detail and "\n" not in detail and "ZZ\\u202eZ" in detail and "A\\nB" in detail

        def busy(*_):
            raise Busy("2 signal table(s) are being built for other dates")

        monkeypatch.setattr(client.app.state.service.signals, "get", busy)
        answer = client.post("/signals/generate", json={"symbols": ["AAPL"], "as_of": "2026-06-01"})
        assert (
            answer.status_code == 503
            and answer.headers["retry-after"] == "2"
            and "being built" in answer.json()["detail"]
        )


def test_a_body_shorter_than_its_content_length_gets_408_within_seconds(trained_run, start_api):
    import socket

    ctx, _, _ = trained_run
    client = start_api(ctx.settings)
    host, port = client.base_url.host, client.base_url.port
    with socket.create_connection((host, port), timeout=15) as connection:
        connection.sendall(
            b"POST /signals/generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b'Content-Length: 1000\r\n\r\n{"symbols": ['
        )
        started = time.monotonic()
        answer = connection.recv(4096)
    assert answer.startswith(b"HTTP/1.1 408") and b"did not arrive within 5 s" in answer
    assert time.monotonic() - started < 8


def test_the_contract_is_typed_served_offline_and_each_signal_carries_what_a_trading_system_needs(
    trained_run, start_api
):
    import re

    ctx, resources, _ = trained_run
    client = start_api(ctx.settings)
    docs = client.get("/docs")
    assets = re.findall(r'(?:src|href)="([^"]+)"', docs.text)
    assert docs.status_code == 200 and assets and all(a.startswith("/") for a in assets), assets  # no CDN
    assert all(client.get(asset).status_code == 200 for asset in assets)
    spec = client.get("/openapi.json").json()
    answer_schema = spec["paths"]["/signals/generate"]["post"]["responses"]["200"]["content"]["application/json"][
        "schema"
    ]
    assert answer_schema == {"$ref": "#/components/schemas/SignalsResponse"}
    assert {"Signal", "Direction", "Volatility", "Regime", "ServedBy", "Health", "ModelVersion", "Problem"} <= set(
        spec["components"]["schemas"]
    )
    for name in ("Signal", "Direction", "Volatility", "Regime", "ServedBy"):
        assert all(
            "type" in field or "$ref" in field or "anyOf" in field
            for field in spec["components"]["schemas"][name]["properties"].values()
        ), name
    body = client.post("/signals/generate", json={"symbols": ["AAPL", "XOM"], "as_of": "2026-06-01"}).json()
    assert body["as_of"] == "2026-06-01" and body["generated_at"].startswith(dt.date.today().isoformat()[:4])
    registry = ModelRegistry(resources.store, ctx.settings.data_dir)
    assert body["models"]["direction"]["trained_until"] == registry.record("direction")["trained_until"]
    for signal in body["signals"]:
        assert signal["bar"] <= "2026-06-02"
        direction, volatility, regime = signal["direction"], signal["volatility"], signal["regime"]
        assert direction["score"] == pytest.approx(
            direction["probabilities"]["up"] - direction["probabilities"]["down"]
        )
        assert (
            volatility["unit"].startswith("realized volatility")
            and volatility["horizon_bars"] == ctx.settings.features.forward_volatility_bars == 5
        )
        assert regime["horizon_bars"] == ctx.settings.features.regime.horizon


def test_evaluation_and_report_files_are_strict_json(trained_run):
    """No bare NaN (invalid JSON for strict parsers): a value that is not a number is null."""
    import json

    ctx, _, _ = trained_run
    files = [ctx.layout.evaluation_report, *ctx.run_root.glob("**/report.json")]
    assert len(files) >= 2, files
    for path in files:
        json.loads(path.read_text(), parse_constant=lambda name: pytest.fail(f"{name} in {path}"))


def test_unreadable_stored_hourly_bars_leave_serving_on_the_daily_bars_with_one_line(tmp_path, caplog):
    """The hourly bars only refine HAR's daily variance: a malformed stored one is logged, not fatal."""
    settings = make_settings(tmp_path / "data")
    store = TinyStore(tmp_path / "store")
    stamps = pd.date_range("2024-03-04", periods=3, freq="B", tz="UTC", name="timestamp")
    daily = pd.DataFrame(
        {"open": 10.0, "high": 11.0, "low": 9.0, "close": 10.5, "adj_close": 10.5, "volume": 100.0}, index=stamps
    )
    store.upsert_many("market_data", bars_to_documents("AAPL", "1d", daily, "csv"))
    hourly = bars_to_documents("AAPL", "1h", daily.set_axis(stamps + pd.Timedelta(hours=15)), "csv")
    hourly[1]["close"] = "not a price"
    store.upsert_many("market_data", hourly)
    bars, span, stored_hourly = StoredBars(store, settings).snapshot()
    assert list(bars) == ["AAPL"] and span[1] == stamps[-1] and stored_hourly == {}
    assert "the stored 1h bars could not be read (" in caplog.text
