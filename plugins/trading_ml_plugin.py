"""The trading-ml pages inside the Airflow UI, under Browse → trading-ml (served at /trading-ml/): the
model registry; every run (backfills included) with what it covered and a link to its report; a page
per model (its versions' metric and interval over time, each decision with its evidence, the
production history); two runs compared; and a "Report" tab on each DAG run showing that run's report.
The plugin also registers the DAG's timetable and answers a trigger its form cannot run in words.

They need the same login as the rest of the UI: every request carries the JWT of Airflow's auth
manager (the UI's session cookie, or a bearer token); a browser without one is sent to the login page."""

from __future__ import annotations

import json
from pathlib import Path

import jinja2
from airflow.api_fastapi.app import get_auth_manager
from airflow.api_fastapi.core_api.security import requires_authenticated
from airflow.plugins_manager import AirflowPlugin
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from trading_ml_airflow import ForwardOnlyCron, mongo_uri

from trading_ml.drivers import load_settings
from trading_ml.errors import StoreError
from trading_ml.io import number
from trading_ml.models.catalogue import MODEL_NAMES
from trading_ml.overview import compare_runs, find_run_by_id, model_versions, run_row, run_rows, versions_chart
from trading_ml.pipeline.trigger_form import form_problems, form_values
from trading_ml.registry import ModelRegistry
from trading_ml.run import find_runs
from trading_ml.storage import open_store

URL_PREFIX = "/trading-ml"
DAG_ID = "trading_ml_training"
app = FastAPI(title="trading-ml in Airflow", dependencies=[Depends(requires_authenticated())])
TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
    autoescape=jinja2.select_autoescape(["html"], default=True),
)


@app.exception_handler(StarletteHTTPException)
async def login_first(request: Request, error: StarletteHTTPException):
    """A browser that is not logged in goes to Airflow's login page, and comes back after it."""
    if error.status_code == 401 and "text/html" in request.headers.get("accept", ""):
        return RedirectResponse(get_auth_manager().get_url_login(next_url=str(request.url)), status_code=303)
    return await http_exception_handler(request, error)


def newest_report(settings):
    """The newest run (by as-of, then start) that has a report, or None."""
    reported = [run for run in find_runs(settings.data_dir) if run.layout.report_html.is_file()]
    return reported[-1] if reported else None


def page(template: str, **values) -> str:
    return TEMPLATES.get_template(template).render(prefix=URL_PREFIX, model_names=MODEL_NAMES, dag_id=DAG_ID, **values)


def registry_for(settings):
    """(registry, store, store kind) from the mongo_default connection, else TinyDB; 503 when it cannot be read."""
    store, choice = open_store(settings, mongo_uri())
    return ModelRegistry(store, settings.data_dir), store, choice.kind


@app.get("/", response_class=HTMLResponse)
def registry_page() -> str:
    settings = load_settings()
    registry, store, kind = registry_for(settings)
    try:
        records = registry.records()
    except StoreError as error:
        raise HTTPException(503, str(error)) from error
    finally:
        store.close()
    return page("registry.html", store=kind, records=records, report=newest_report(settings))


@app.get("/report")
def report_page() -> FileResponse:
    report = newest_report(load_settings())
    if report is None:
        raise HTTPException(404, "no run has a report yet; trigger trading_ml_training")
    return FileResponse(report.layout.report_html, media_type="text/html")


@app.get("/runs", response_class=HTMLResponse)
def runs_page() -> str:
    settings = load_settings()
    return page("runs.html", runs=run_rows(settings.data_dir), data_dir=settings.data_dir)


@app.get("/runs/{run_id}/report")
def run_report_page(run_id: str):
    """The report of exactly this run (the DAG run's Report tab); a page saying why when it has none."""
    run = find_run_by_id(load_settings().data_dir, run_id)
    if run is not None and run.layout.report_html.is_file():
        return FileResponse(run.layout.report_html, media_type="text/html")
    why = (
        "no trading-ml run has this id"
        if run is None
        else f"run {run_id} has no report yet (stages so far: {', '.join(run_row(run)['stages']) or 'none'})"
    )
    return HTMLResponse(page("message.html", title="no report", message=why), status_code=404)


@app.get("/models/{name}", response_class=HTMLResponse)
def model_page(name: str) -> str:
    if name not in MODEL_NAMES:  # an exact allow-list: the name picks registry documents
        raise HTTPException(404, f"no model {name!r}; models are {', '.join(MODEL_NAMES)}")
    registry, store, _ = registry_for(load_settings())
    try:
        versions = model_versions(registry, name)
    except StoreError as error:
        raise HTTPException(503, str(error)) from error
    finally:
        store.close()
    return page("model.html", page=versions, chart=versions_chart(versions))


@app.get("/compare", response_class=HTMLResponse)
def compare_page(a: str, b: str) -> str:
    settings = load_settings()
    registry, store, _ = registry_for(settings)
    try:
        comparison = compare_runs(settings.data_dir, a, b, registry)
    except KeyError as error:
        raise HTTPException(404, error.args[0]) from error
    except StoreError as error:
        raise HTTPException(503, str(error)) from error
    finally:
        store.close()
    return page("compare.html", comparison=comparison)


def _metric(summary: dict | None) -> str:
    """The out-of-sample primary metric, and the one-sided lower bound of its skill over the best baseline."""
    if not summary:
        return "not evaluated"
    primary, skill = summary["primary"], summary.get("skill")
    bound = f"; skill over {skill['baseline']} lower bound {number(skill['lower_bound'], '+.3g')}" if skill else ""
    return f"{primary['metric']} {number(primary['value'])}{bound}"


TEMPLATES.filters["metric"] = _metric
TEMPLATES.filters["number"] = number


TRIGGERS = {
    f"/api/v2/dags/{DAG_ID}/dagRuns": "conf",
    "/api/v2/backfills": "dag_run_conf",
    "/api/v2/backfills/dry_run": "dag_run_conf",
}


class TriggerFormInWords:
    """A trigger of trading_ml_training (the UI's form, a backfill, the REST API) that its form cannot
    run is answered 400 with every problem in words (trading_ml.pipeline.trigger_form), before
    Airflow's schema check would answer with a raw pattern. Everything else passes untouched."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        path = scope.get("path", "")[len(scope.get("root_path", "")) :] if scope["type"] == "http" else ""
        if scope["type"] != "http" or scope["method"] != "POST" or path not in TRIGGERS:
            return await self.app(scope, receive, send)
        messages, body = [], b""
        while True:
            message = await receive()
            messages.append(message)
            body += message.get("body", b"")
            if message["type"] != "http.request" or not message.get("more_body"):
                break
        problems = trigger_problems(body, TRIGGERS[path], backfill=path != f"/api/v2/dags/{DAG_ID}/dagRuns")
        if problems:
            answer = JSONResponse({"detail": "This run cannot start: " + " · ".join(problems)}, status_code=400)
            return await answer(scope, receive, send)

        async def replay():
            return messages.pop(0) if messages else await receive()

        return await self.app(scope, replay, send)


def trigger_problems(body: bytes, conf_key: str, backfill: bool) -> list[str]:
    """The form's problems with a trigger's JSON body; [] when it is not this DAG's or is not JSON
    (Airflow answers those itself)."""
    try:
        request = json.loads(body or b"{}")
    except ValueError:
        return []
    if not isinstance(request, dict) or (backfill and request.get("dag_id") != DAG_ID):
        return []
    conf = request.get(conf_key) or {}
    if not isinstance(conf, dict):
        return [f"the run's conf must be a JSON object of the form's fields, got {type(conf).__name__}"]
    settings = load_settings()
    return form_problems(settings, form_values(settings, conf))


class TradingMLPlugin(AirflowPlugin):
    name = "trading_ml"
    timetables = [ForwardOnlyCron]
    fastapi_apps = [{"app": app, "url_prefix": URL_PREFIX, "name": "trading-ml registry and report"}]
    fastapi_root_middlewares = [
        {"middleware": TriggerFormInWords, "name": "trading_ml_training's trigger form, in words"}
    ]
    external_views = [
        {
            "name": "trading-ml",
            "href": f"{URL_PREFIX}/",
            "url_route": "trading-ml",
            "destination": "nav",
            "category": "browse",
        },
        {
            "name": "Report",
            "href": f"{URL_PREFIX}/runs/{{RUN_ID}}/report",
            "url_route": "trading-ml-report",
            "destination": "dag_run",
        },
    ]
