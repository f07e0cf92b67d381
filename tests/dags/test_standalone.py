"""`make airflow` (scripts/airflow-standalone): the local Airflow listens on 127.0.0.1 only, and its
plugin pages need the UI's login. Before, `airflow standalone` left its log servers on every
interface (8793, 8794) and the plugin pages open."""

from __future__ import annotations

import os
import signal
import subprocess
import time
import urllib.error
import urllib.request

import psutil

from tests.dags.celery_stack import REPO, free_port


def listening(root: psutil.Process) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the process and its children."""
    found = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            found |= {(c.laddr.ip, c.laddr.port) for c in process.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def status(url: str) -> int:
    try:
        return urllib.request.urlopen(url, timeout=5).status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


def test_make_airflow_listens_on_loopback_only_and_the_plugin_needs_a_login(tmp_path):
    port = free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "TRADING_ML"))}
    env.update(AIRFLOW_HOME=str(tmp_path / "airflow"), TRADING_ML_DATA_DIR=str(tmp_path / "data"), AIRFLOW__API__PORT=str(port))
    with (tmp_path / "airflow.log").open("w") as log:
        script = subprocess.Popen([str(REPO / "scripts" / "airflow-standalone")], env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        deadline = time.monotonic() + 180
        while status(f"http://127.0.0.1:{port}/api/v2/version") != 200:
            assert time.monotonic() < deadline and script.poll() is None, (tmp_path / "airflow.log").read_text()[-3000:]
            time.sleep(2)
        time.sleep(15)  # the scheduler, dag-processor and triggerer are up too: any log server would listen by now
        sockets = listening(psutil.Process(script.pid))
        assert (("127.0.0.1", port)) in sockets
        assert {address for address, _ in sockets} == {"127.0.0.1"}, sockets
        assert status(f"http://127.0.0.1:{port}/trading-ml/") == 401
    finally:  # Ctrl-C's path first; whatever still runs after 30 s is killed with its process group
        os.killpg(script.pid, signal.SIGTERM)
        try:
            script.wait(timeout=30)
        except subprocess.TimeoutExpired:
            pass
        try:
            os.killpg(script.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        script.wait(timeout=30)
