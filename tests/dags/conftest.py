"""Airflow for the DAG tests: its own AIRFLOW_HOME and SQLite metadata DB, set before Airflow is imported."""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml

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


def write_config(folder: Path, **sections) -> Path:
    """The repo's config.yaml rooted in folder, with sections (e.g. airflow=...) merged in."""
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["data_dir"] = str(folder / "data")
    for name, values in sections.items():
        raw[name] = {**(raw.get(name) or {}), **values}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path
