"""The trading-ml pages inside the Airflow UI: the model registry (versions, status, test metrics)
and the newest run's performance report, under Browse → trading-ml (served at /trading-ml/).

They need the same login as the rest of the UI: every request carries the JWT of Airflow's auth
manager (the UI's session cookie, or a bearer token); a browser without one is sent to the login page."""

from __future__ import annotations

from pathlib import Path

import jinja2
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.core_api.security import requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from trading_ml_airflow import mongo_uri

from trading_ml.config_file import load_settings
from trading_ml.errors import StoreError
from trading_ml.io import number
from trading_ml.registry import ModelRegistry
from trading_ml.run import find_runs
from trading_ml.storage import open_store

URL_PREFIX = "/trading-ml"
app = FastAPI(title="trading-ml in Airflow", dependencies=[Depends(requires_authenticated())])
TEMPLATES = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                               autoescape=jinja2.select_autoescape(["html"], default=True))


@app.exception_handler(StarletteHTTPException)
async def login_first(request: Request, error: StarletteHTTPException):
    """A browser that is not logged in goes to Airflow's login page, and comes back after it."""
    if error.status_code == 401 and "text/html" in request.headers.get("accept", ""):
        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
    return await http_exception_handler(request, error)


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
    return TEMPLATES.get_template("registry.html").render(
        store=choice.kind, records=records, report=newest_report(settings), prefix=URL_PREFIX)


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
    bound = f"; skill over {skill['baseline']} lower bound {number(skill['lower_bound'], '+.3g')}" if skill else ""
    return f"{primary['metric']} {number(primary['value'])}{bound}"


TEMPLATES.filters["metric"] = _metric


class TradingMLPlugin(AirflowPlugin):
    name = "trading_ml"
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "trading-ml registry and report"}]
    external_views = [{
        "name": "trading-ml", "href": f"{URL_PREFIX}/", "url_route": "trading-ml",
        "destination": "nav", "category": "browse",
    }]
