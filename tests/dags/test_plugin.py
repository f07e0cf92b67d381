"""The Airflow plugin: the registry page and the newest report, and how Airflow's UI links to them."""

from __future__ import annotations

import importlib.util

from fastapi.testclient import TestClient

from tests.dags.conftest import REPO


def load_plugin():
    spec = importlib.util.spec_from_file_location("trading_ml_plugin", REPO / "plugins" / "trading_ml_plugin.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_plugin_serves_the_registry_and_the_newest_report(airflow_db, trained_run, monkeypatch):
    ctx, _, written = trained_run
    monkeypatch.setenv("TRADING_ML_DATA_DIR", str(ctx.settings.data_dir))
    monkeypatch.delenv("AIRFLOW_CONN_MONGO_DEFAULT", raising=False)
    plugin = load_plugin()
    client = TestClient(plugin.app)
    page = client.get("/").text
    assert "Model registry (tinydb)" in page and f"run {ctx.run_id}" in page
    for name in ("direction_xgboost", "direction_lstm", "volatility_garch", "volatility_lstm", "regime_rf"):
        assert f"<td>{name}</td><td>1.0</td>" in page
    assert client.get("/report").text == (ctx.run_root / written["html"]).read_text()
    registered = plugin.TradingMLPlugin
    assert registered.fastapi_apps[0]["app"] is plugin.app and registered.fastapi_apps[0]["url_prefix"] == "/trading-ml"
    view = registered.external_views[0]
    assert view["href"] == "/trading-ml/" and view["url_route"] and view["destination"] == "nav"


def test_without_a_report_the_page_says_so(airflow_db, tmp_path, monkeypatch):
    monkeypatch.setenv("TRADING_ML_DATA_DIR", str(tmp_path))
    client = TestClient(load_plugin().app)
    assert "no report yet" in client.get("/").text
    missing = client.get("/report")
    assert missing.status_code == 404 and "trigger trading_ml_training" in missing.json()["detail"]
