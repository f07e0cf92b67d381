"""Airflow for the DAG tests: its own AIRFLOW_HOME and SQLite metadata DB, set before Airflow is imported."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest

from tests.conftest import write_config  # noqa: F401 - the DAG tests' config writer

REPO = Path(__file__).resolve().parents[2]
AIRFLOW_HOME = Path(tempfile.mkdtemp(prefix="trading-ml-airflow-"))
os.environ.update(
    AIRFLOW_HOME=str(AIRFLOW_HOME),
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{AIRFLOW_HOME / 'airflow.db'}",
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),  # Airflow puts it on sys.path: the DAG imports from it
)


@pytest.fixture(scope="session")
def airflow_db():
    """A fresh metadata DB for the session; AIRFLOW_HOME is removed at the end."""
    from airflow.utils import db

    db.resetdb()
    yield AIRFLOW_HOME
    shutil.rmtree(AIRFLOW_HOME, ignore_errors=True)
