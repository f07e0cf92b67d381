"""The trading-ml pages inside the Airflow UI: the model registry (versions, status, test metrics)
and the newest run's performance report, under Browse → trading-ml (served at /trading-ml/)."""

from __future__ import annotations

import html

from airflow.plugins_manager import AirflowPlugin
from fastapi import FastAPI, HTTPException
from fastapi.responses import FileResponse, HTMLResponse
from trading_ml_airflow import mongo_uri

from trading_ml.config import load_settings
from trading_ml.errors import StoreError
from trading_ml.registry import ModelRegistry
from trading_ml.run import find_runs
from trading_ml.storage import open_store

URL_PREFIX = "/trading-ml"
app = FastAPI(title="trading-ml in Airflow")


def newest_report(settings):
    """The newest run (by as-of, then start) that has a report: (run, path), or None."""
    reported = [run for run in find_runs(settings.data_dir) if run.layout.report_html.is_file()]
    return reported[-1] if reported else None


@app.get("/", response_class=HTMLResponse)
def registry_page() -> str:
    settings = load_settings()
    store, choice = open_store(settings, mongo_uri())
    try:
        records = ModelRegistry(store, settings.data_dir).records()
    except StoreError as error:
        raise HTTPException(503, str(error)) from error
    finally:
        store.close()
    rows = "".join(
        "<tr>" + "".join(f"<td>{html.escape(str(value))}</td>" for value in (
            r["model_name"], r["version"], r["status"], r.get("run_id"),
            _metric(r.get("test_metrics")),
            r.get("deploy_decision", ""),
        )) + "</tr>"
        for r in records
    )
    report = newest_report(settings)
    link = f"<a href='{URL_PREFIX}/report'>newest report ({html.escape(report.as_of.isoformat())}, run {html.escape(report.run_id)})</a>" if report else "no report yet"
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>trading-ml registry</title>
<style>body {{ font-family: system-ui, sans-serif; margin: 1.5em; }} td, th {{ border: 1px solid #ccc; padding: 3px 8px; }}
table {{ border-collapse: collapse; font-size: 0.9em; }}</style></head><body>
<h2>Model registry ({html.escape(choice.kind)})</h2><p>{link}</p>
<table><tr><th>model</th><th>version</th><th>status</th><th>run</th><th>out-of-sample metric</th><th>deploy decision</th></tr>{rows}</table>
</body></html>"""


@app.get("/report")
def report_page() -> FileResponse:
    report = newest_report(load_settings())
    if report is None:
        raise HTTPException(404, "no run has a report yet; trigger trading_ml_training")
    return FileResponse(report.layout.report_html, media_type="text/html")


def _metric(summary: dict | None) -> str:
    """The out-of-sample primary metric, and the one-sided lower bound of its skill over the best baseline."""
    if not summary:
        return "not evaluated"
    primary, skill = summary["primary"], summary.get("skill")
    bound = f"; skill over {skill['baseline']} lower bound {skill['lower_bound']:+.3g}" if skill else ""
    return f"{primary['metric']} {primary['value']:.4g}{bound}"


class TradingMLPlugin(AirflowPlugin):
    name = "trading_ml"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "trading-ml registry and report"}]
    external_views = [{
        "name": "trading-ml", "href": f"{URL_PREFIX}/", "url_route": "trading-ml",
        "destination": "nav", "category": "browse",
    }]
