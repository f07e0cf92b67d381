"""The Airflow plugin: the registry page and the newest report, and how Airflow's UI links to them."""

from __future__ import annotations

import importlib.util

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
    for path in ("/", "/report"):
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
    for name in ("direction_xgboost", "direction_lstm", "volatility_garch", "volatility_lstm", "regime_rf"):
        assert f"<td>{name}</td><td>1.0</td>" in page
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
