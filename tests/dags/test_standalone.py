"""`make airflow` (scripts/airflow-standalone): the local Airflow listens on 127.0.0.1 only, and its
plugin pages need the UI's login. Before, `airflow standalone` left its log servers on every
interface (8793, 8794) and the plugin pages open."""

from __future__ import annotations

import time

import psutil

from tests.dags.airflow_stacks import StandaloneStack, http_status


def listening(root: psutil.Process) -> set[tuple[str, int]]:
    """(address, port) of every listening TCP socket of the process and its children."""
    found = set()
    for process in [root, *root.children(recursive=True)]:
        try:
            found |= {(c.laddr.ip, c.laddr.port) for c in process.net_connections("tcp") if c.status == psutil.CONN_LISTEN}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def test_make_airflow_listens_on_loopback_only_and_the_plugin_needs_a_login():
    stack = StandaloneStack()
    try:
        stack.start()
        time.sleep(15)  # the scheduler, dag-processor and triggerer are up too: any log server would listen by now
        sockets = listening(psutil.Process(stack.script.popen.pid))
        assert ("127.0.0.1", stack.api_port) in sockets
        assert {address for address, _ in sockets} == {"127.0.0.1"}, sockets
        assert http_status(f"http://127.0.0.1:{stack.api_port}/trading-ml/") == 401
    finally:  # Ctrl-C's path first (SIGTERM to the script's process group), then SIGKILL after 20 s
        stack.stop()
