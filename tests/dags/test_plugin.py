"""The Airflow plugin: the registry page and the newest report, and how Airflow's UI links to them."""

from __future__ import annotations

import importlib.util
import json

import pytest
from fastapi.testclient import TestClient

from tests.dags.conftest import REPO


def load_plugin():
    spec = importlib.util.spec_from_file_location("trading_ml_plugin", REPO / "plugins" / "trading_ml_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def logged_in(airflow_db):
    """A client as the UI's browser is after logging in: the auth manager's JWT in the session cookie."""
    from airflow.api_fastapi.app import init_auth_manager
    from airflow.api_fastapi.auth.managers.base_auth_manager import COOKIE_NAME_JWT_TOKEN
    from airflow.api_fastapi.auth.managers.simple.user import SimpleAuthManagerUser

    manager = init_auth_manager()
    token = manager.generate_jwt(SimpleAuthManagerUser(username="admin", role="admin"))

    def client(app) -> TestClient:
        return TestClient(app, cookies={COOKIE_NAME_JWT_TOKEN: token})

    return client


def test_the_pages_need_the_uis_login(logged_in, tmp_path, monkeypatch):
    """Before: both pages answered anyone who could reach the port. Now 401 without the login, and a
    browser is sent to the login page."""
    monkeypatch.setenv("TRADING_ML_DATA_DIR", str(tmp_path))
    plugin = load_plugin()
    anonymous = TestClient(plugin.app)
    for path in ("/", "/report", "/runs", "/runs/x/report", "/models/regime_rf", "/compare?a=x&b=y"):
        assert anonymous.get(path).status_code == 401
        forged = TestClient(plugin.app, cookies={"_token": "eyJhbGciOiJIUzUxMiJ9.e30.forged"})
        assert forged.get(path).status_code in (401, 403)
        browser = anonymous.get(path, headers={"accept": "text/html"}, follow_redirects=False)
        assert browser.status_code == 303 and "/auth/login" in browser.headers["location"]
    assert logged_in(plugin.app).get("/").status_code == 200


def test_the_plugin_serves_the_registry_and_the_newest_report(logged_in, trained_run, monkeypatch):
    ctx, _, written = trained_run
    monkeypatch.setenv("TRADING_ML_DATA_DIR", str(ctx.settings.data_dir))
    monkeypatch.delenv("AIRFLOW_CONN_MONGO_DEFAULT", raising=False)
    plugin = load_plugin()
    client = logged_in(plugin.app)
    page = client.get("/").text
    assert "Model registry (tinydb)" in page and f"run {ctx.run_id}" in page
    from trading_ml.models.catalogue import TRAINED_MODELS

    for name in TRAINED_MODELS:
        assert f'<td><a href="/trading-ml/models/{name}">{name}</a></td><td>1.0</td>' in page
    assert client.get("/report").text == (ctx.run_root / written["html"]).read_text()
    registered = plugin.TradingMLPlugin
    assert registered.fastapi_apps[0]["app"] is plugin.app and registered.fastapi_apps[0]["url_prefix"] == "/trading-ml"
    view = registered.external_views[0]
    assert view["href"] == "/trading-ml/" and view["url_route"] and view["destination"] == "nav"


def test_without_a_report_the_page_says_so(logged_in, tmp_path, monkeypatch):
    monkeypatch.setenv("TRADING_ML_DATA_DIR", str(tmp_path))
    client = logged_in(load_plugin().app)
    assert "no report yet" in client.get("/").text
    missing = client.get("/report")
    assert missing.status_code == 404 and "trigger trading_ml_training" in missing.json()["detail"]


@pytest.fixture
def quarters_client(logged_in, quarterly_runs, monkeypatch):
    """The plugin over the four quarterly runs (TinyDB), logged in."""
    folder, config = quarterly_runs
    monkeypatch.setenv("TRADING_ML_CONFIG", config)
    monkeypatch.setenv("TRADING_ML_DATA_DIR", str(folder / "data"))
    monkeypatch.delenv("AIRFLOW_CONN_MONGO_DEFAULT", raising=False)
    plugin = load_plugin()
    return plugin, logged_in(plugin.app), folder / "data"


def test_the_runs_page_lists_every_run_with_what_it_covered_and_its_report(quarters_client):
    """Before: a static registry table linking only the newest run's report; run ids were not links."""
    from trading_ml.run import find_runs

    plugin, client, data_dir = quarters_client
    page = client.get("/runs").text
    runs = find_runs(data_dir)
    assert f"Runs ({len(runs)})" in page
    for run in runs:
        assert run.run_id in page and run.as_of.isoformat() in page
        linked = f'href="/trading-ml/runs/{run.run_id.replace(":", "%3A")}/report"' in page
        assert linked == run.layout.report_html.is_file()  # the runs that reported (the deployed ones) link it
        report = client.get(f"/runs/{run.run_id}/report")
        assert (report.status_code == 200 and run.run_id in report.text) if linked else report.status_code == 404
    assert "7 symbols" in page and "8 symbols" in page  # the third quarter left ^VIX out
    assert "ingest → validate → features → train → evaluate → deploy → report" in page and "tinydb" in page
    prefix = runs[-1].run_id[:-3]
    assert client.get(f"/runs/{prefix}/report").status_code == 404  # exact ids only, never a prefix
    assert "no trading-ml run has this id" in client.get(f"/runs/{prefix}/report").text


def test_a_model_page_shows_every_version_over_time_the_decisions_and_the_production_history(quarters_client):
    """On a model that went to production and was later compared with its production version."""
    plugin, client, _ = quarters_client
    settings = plugin.load_settings()
    registry, store, _ = plugin.registry_for(settings)
    try:
        name = next(
            n
            for n in ("volatility_garch", "volatility_har", "direction_xgboost", "direction_lstm")
            if registry.production(n)
            and any((r.get("deploy_evidence") or {}).get("versus_production") for r in registry.records(n))
        )
        records, pointer = registry.records(name), registry.production(name)
    finally:
        store.close()
    page = client.get(f"/models/{name}").text
    assert len(records) == 4 and f"{name}: 4 versions; production {registry_version(records, pointer)}" in page
    assert 'id="versions-chart"' in page and 'src="data:image/png;base64,' in page
    for record in records:
        assert f"<td>{record['version']}</td><td>{record['as_of']}</td>" in page
        assert (record.get("deploy_decision") or "not deployed") in page
    for entry in pointer["history"]:
        assert entry["reason"] in page and entry["promoted_at"] in page
    versus = next(
        r["deploy_evidence"]["versus_production"]
        for r in records
        if (r.get("deploy_evidence") or {}).get("versus_production")
    )
    assert (
        f"vs production {versus['version']} on {versus['days']} dates it never saw: {versus['metric']} "
        f"{versus['value']:+.3g}" in page
    )
    assert (
        client.get("/models/regime_rf").status_code == 200 and "never promoted" in client.get("/models/regime_rf").text
    )
    assert client.get("/models/regime").status_code == 404  # an exact allow-list of model names
    assert client.get("/models/..%2Fregistry").status_code == 404


def registry_version(records, pointer):
    return next(r["version"] for r in records if r["run_id"] == pointer["run_id"])


def test_two_runs_compare_side_by_side_with_what_differed(quarters_client):
    from trading_ml.run import find_runs

    plugin, client, data_dir = quarters_client
    runs = find_runs(data_dir)
    third, fourth = runs[2], runs[3]
    page = client.get("/compare", params={"a": third.run_id, "b": fourth.run_id}).text
    for name in ("direction_xgboost", "volatility_garch", "regime_rf"):
        assert f"<td>{name}</td>" in page
    evaluation = json.loads(fourth.layout.evaluation_report.read_text())["models"]["volatility_garch"]["primary"]
    assert (
        f"{evaluation['metric']} {evaluation['value']:.4g} [{evaluation['low']:.4g}, {evaluation['high']:.4g}]" in page
    )
    assert '<td>symbols <span class="muted">(7 shared)</span></td><td>(none of its own)</td><td>^VIX</td>' in page
    assert "not deployed" in page  # the third run stopped after evaluate
    assert "<td>setting " not in page  # both froze the same settings
    registry, store, _ = plugin.registry_for(plugin.load_settings())
    try:
        configured = [registry.record_for_run("direction_xgboost", run.run_id) for run in (third, fourth)]
    finally:
        store.close()
    assert configured[0]["feature_count"] < configured[1]["feature_count"]  # the third run's table had no VIX features
    for record in configured:
        assert f"config {record['config_hash']}, {record['feature_count']} features" in page
    assert client.get("/compare", params={"a": third.run_id, "b": "nope"}).status_code == 404


@pytest.mark.parametrize(
    "conf, words",
    [
        ({"other_symbols": ["aapl"]}, "Other symbols: 'aapl' is not a ticker"),
        ({"timeframes": ["1m"]}, "Timeframes: '1m' is not one of this deployment's"),
        ({"source": "csv"}, "CSV folder: the csv source reads files from a folder"),
    ],
)
def test_a_trigger_the_form_cannot_run_is_answered_in_words_before_airflow_sees_it(conf, words, monkeypatch, tmp_path):
    """The plugin's root middleware, on the same calls the UI's trigger and backfill forms make."""
    monkeypatch.setenv("TRADING_ML_DATA_DIR", str(tmp_path))
    plugin = load_plugin()
    seen = []

    async def airflow(scope, receive, send):  # what the api-server would do: read the body, answer 200
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        seen.append((scope["path"], json.loads(body)))
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"application/json")]})
        await send({"type": "http.response.body", "body": b"{}"})

    client = TestClient(plugin.TriggerFormInWords(airflow))
    refused = client.post("/api/v2/dags/trading_ml_training/dagRuns", json={"conf": conf, "logical_date": None})
    assert (
        refused.status_code == 400
        and words in refused.json()["detail"]
        and "does not match" not in refused.json()["detail"]
    )
    backfill = client.post("/api/v2/backfills", json={"dag_id": "trading_ml_training", "dag_run_conf": conf})
    assert backfill.status_code == 400 and words in backfill.json()["detail"]
    assert seen == []  # neither reached Airflow
    good = {"conf": {"symbols": ["AAPL"], "timeframes": ["1d"]}, "logical_date": None}
    assert client.post("/api/v2/dags/trading_ml_training/dagRuns", json=good).status_code == 200
    other = {"dag_id": "another_dag", "dag_run_conf": conf}
    assert client.post("/api/v2/backfills", json=other).status_code == 200  # another DAG's conf is not ours to judge
    assert (
        client.post("/api/v2/dags/trading_ml_training_x/dagRuns", json={"conf": conf}).status_code == 200
    )  # exact path only
    assert seen == [
        ("/api/v2/dags/trading_ml_training/dagRuns", good),
        ("/api/v2/backfills", other),
        ("/api/v2/dags/trading_ml_training_x/dagRuns", {"conf": conf}),
    ]
