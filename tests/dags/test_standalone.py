"""`make airflow` (scripts/airflow-standalone) as an operator meets it, through its REST API and the UI in
headless Chromium: it listens on 127.0.0.1 only and the plugin pages need the login; unpausing and a
small trigger start only the run asked for; the trigger form has real widgets and answers in words;
each DAG run has a Report tab; the runs, model and comparison pages show the quarterly runs.

Set TRADING_ML_SCREENSHOTS=DIR to keep the screenshots (the README's come from here)."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import time
import urllib.parse
import urllib.request
from pathlib import Path

import matplotlib.image
import psutil
import pytest

from tests.browser import CHROMIUM, Browser
from tests.dags.airflow_stacks import DAG_ID, Operator, StandaloneStack, http_status

SMALL_RUN = {"symbols": ["^GSPC", "AAPL", "MSFT"], "timeframes": ["1d"], "models": ["regime_rf"], "deploy": False}
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None, reason="needs Debian's chromium (make test installs it when run as root)"
)


def listening(root: psutil.Process) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the process and its children."""
    found = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            found |= {
                (c.laddr.ip, c.laddr.port) for c in process.net_connections("tcp") if c.status == psutil.CONN_LISTEN
            }
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


@pytest.fixture(scope="module")
def stack(quarterly_runs):
    """`make airflow` over a copy of the four quarterly runs (quick models, the configured universe)."""
    folder, config = quarterly_runs
    stack = StandaloneStack(Path(config))
    shutil.copytree(folder / "data", stack.root / "data")
    try:
        stack.start()
        stack.wait_for(
            "the DAG parsed into the database", lambda: stack.query("SELECT 1 FROM dag WHERE dag_id = %s", DAG_ID), 300
        )
        yield stack
    finally:  # Ctrl-C's path first (SIGTERM to the script's process group), then SIGKILL after 20 s
        stack.stop()


@pytest.fixture(scope="module")
def operator(stack):
    return Operator(stack)


@pytest.fixture(scope="module")
def screenshots(tmp_path_factory) -> Path:
    kept = os.environ.get("TRADING_ML_SCREENSHOTS")
    folder = Path(kept) if kept else tmp_path_factory.mktemp("screenshots")
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def small_run(stack, operator):
    """Unpause and trigger a small run exactly as the UI's form does (PATCH the DAG, POST a run); the
    run once it finished."""
    operator.call("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False})
    run_id = operator.call("POST", f"/api/v2/dags/{DAG_ID}/dagRuns", {"logical_date": None, "conf": SMALL_RUN})[
        "dag_run_id"
    ]
    state = stack.wait_for_run(run_id, 600)
    assert state == "success", stack.script.tail(40)
    return run_id


def test_make_airflow_listens_on_loopback_only_and_the_plugin_needs_a_login(stack):
    """Before, `airflow standalone` left its log servers on every interface (8793, 8794) and the plugin pages open."""
    time.sleep(5)  # the scheduler, dag-processor and triggerer are up: any log server would listen by now
    sockets = listening(psutil.Process(stack.script.popen.pid))
    assert ("127.0.0.1", stack.api_port) in sockets
    assert {address for address, _ in sockets} == {"127.0.0.1"}, sockets
    for path in ("/trading-ml/", "/trading-ml/runs", "/trading-ml/models/regime_rf"):
        assert http_status(f"http://127.0.0.1:{stack.api_port}{path}") == 401


def test_unpausing_and_a_small_trigger_start_only_the_run_asked_for(stack, operator, small_run):
    """Before: the form's "Unpause on trigger" (checked by default) made the scheduler start the last
    finished quarter on the full universe beside the small run. Now the next automatic run is the
    quarter that ends after now, and the scheduler, looping meanwhile, started nothing else."""
    time.sleep(10)  # more scheduler loops after the run finished
    runs = operator.runs()
    assert [(r["dag_run_id"], r["run_type"]) for r in runs] == [(small_run, "manual")]
    [(create_after,)] = stack.query("SELECT next_dagrun_create_after FROM dag WHERE dag_id = %s", DAG_ID)
    assert dt.datetime.fromisoformat(create_after).replace(tzinfo=dt.UTC) > dt.datetime.now(dt.UTC)


@needs_chromium
def test_the_trigger_form_has_widgets_descriptions_and_answers_in_words(stack, operator, screenshots):
    """Before: symbols, timeframes and models were one-per-line text areas, the source a text box, and a
    bad ticker got the raw jsonschema pattern in a red banner."""
    with Browser(height=2300) as browser:
        browser.set_cookie(operator.base, "_token", operator.token)
        browser.open(f"{operator.base}/dags/{DAG_ID}")
        browser.wait_for("[...document.querySelectorAll('button')].some(b => b.innerText.trim() == 'Trigger')")
        browser.evaluate("[...document.querySelectorAll('button')].find(b => b.innerText.trim() == 'Trigger').click()")
        browser.wait_for(
            "document.body.innerText.includes('Run Parameters') && document.body.innerText.includes('CSV folder')"
        )
        form = browser.text()
        for shown in (
            "AAPL (Technology)",
            "XOM (Energy)",
            "^VIX (index)",
            "1d over 5y",
            "1h over 6mo",
            "synthetic: Synthetic market (seeded, offline)",
            "regime_rf: regime",
            "Other symbols",
            "Tickers outside the configured universe",
            "The last day the run may see",
        ):
            assert shown in form, shown
        one_per_line = (
            "[...document.querySelectorAll('textarea')].filter(t => (t.placeholder || '').includes('new line')).length"
        )
        assert (
            browser.evaluate(one_per_line) == 1
        )  # only Other symbols is free text (the note box is the other textarea)
        shot = browser.screenshot(screenshots / "trigger-form.png")
        browser.evaluate(
            "[...document.querySelectorAll('textarea')].find(t => (t.placeholder || '').includes('new line')).focus()"
        )
        browser.call("Input.insertText", text="aapl\nNOT A TICKER")
        browser.evaluate(
            "[...document.querySelectorAll('button')].filter(b => b.innerText.trim() == 'Trigger').pop().click()"
        )
        banner = browser.wait_for(
            "[...document.querySelectorAll('[role=alert], .chakra-alert__root, div')]"
            ".map(e => e.innerText).find(t => t && t.startsWith('400') && t.includes('cannot start')) || ''"
        )
        assert "Other symbols: 'aapl' is not a ticker" in banner and "(did you mean AAPL?)" in banner
        assert "'NOT A TICKER' is not a ticker" in banner and "does not match" not in banner
        browser.screenshot(screenshots / "trigger-form-error.png", full_page=False)
    assert_has_content(shot)


@needs_chromium
def test_each_dag_run_has_a_report_tab_and_the_pages_show_runs_versions_and_comparisons(
    stack, operator, small_run, screenshots
):
    with Browser(height=1100) as browser:
        browser.set_cookie(operator.base, "_token", operator.token)
        browser.open(f"{operator.base}/dags/{DAG_ID}/runs/{urllib.parse.quote(small_run)}")
        browser.wait_for("[...document.querySelectorAll('a')].some(e => e.innerText.trim() == 'Report')")
        browser.evaluate("[...document.querySelectorAll('a')].find(e => e.innerText.trim() == 'Report').click()")
        title = browser.wait_for(
            "document.querySelector('iframe') && document.querySelector('iframe').contentDocument"
            " && document.querySelector('iframe').contentDocument.title"
        )
        assert title == f"trading-ml report {small_run}"
        browser.screenshot(screenshots / "dag-run-report-tab.png", full_page=False)

        browser.open(f"{operator.base}/trading-ml/runs")
        browser.wait_for("!!document.querySelector('#runs')")
        assert (
            browser.evaluate("document.querySelectorAll('#runs tr').length") == 1 + 4 + 1
        )  # header, four quarters, the small run
        link = browser.evaluate(
            f"[...document.querySelectorAll('#runs a')].map(a => a.getAttribute('href'))"
            f".find(h => h.startsWith('/dags/{DAG_ID}/runs/'))"
        )
        assert link == f"/dags/{DAG_ID}/runs/{urllib.parse.quote(small_run)}"  # the Airflow run links to its DAG run
        runs_shot = browser.screenshot(screenshots / "runs-page.png")
        browser.evaluate("document.querySelector('#compare button').click()")
        browser.wait_for("!!document.querySelector('#differences')")
        assert "as_of" in browser.text() and "regime_rf" in browser.text()
        browser.screenshot(screenshots / "compare-page.png")

        browser.open(f"{operator.base}/trading-ml/models/volatility_garch")
        browser.wait_for(
            "!!document.querySelector('#versions-chart img') && document.querySelector('#versions-chart img').complete"
        )
        assert browser.evaluate("document.querySelector('#versions-chart img').naturalWidth") > 300
        assert browser.evaluate("document.querySelectorAll('#versions tr').length") == 1 + 4
        model_shot = browser.screenshot(screenshots / "model-page.png")
    assert_has_content(runs_shot)
    assert_has_content(model_shot)


def assert_has_content(shot: Path) -> None:
    pixels = matplotlib.image.imread(shot)
    assert pixels.shape[0] > 300 and pixels[..., :3].std() > 0.05  # a page with content, not a blank one
