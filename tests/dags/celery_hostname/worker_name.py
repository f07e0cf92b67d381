"""Airflow's [core] hostname_callable for the Celery test: each worker on this one host reports its
own name (TRADING_ML_WORKER_NAME), so the test can tell which worker ran which task."""

import os
import socket


def hostname() -> str:
    return os.environ.get("TRADING_ML_WORKER_NAME") or socket.getfqdn()
