"""docker-compose.yaml: every service of the distributed deployment, health checks, no literal secret."""

from __future__ import annotations

import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW_SERVICES = {"airflow-apiserver", "airflow-scheduler", "airflow-dag-processor", "airflow-worker", "airflow-triggerer"}
ONE_SHOT = {"airflow-init"}
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN", re.IGNORECASE)
FROM_ENV = re.compile(r"^\$\{[A-Z_]+:\?[^}]+\}$")  # ${NAME:?message}: compose refuses to start without it


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return dict(item.split("=", 1) for item in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


def test_every_service_of_the_deployment_is_there_with_a_health_check():
    assert set(SERVICES) == {"postgres", "redis", "mongodb", *AIRFLOW_SERVICES, *ONE_SHOT}
    for name, service in SERVICES.items():
        if name not in ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in AIRFLOW_SERVICES:
        assert environment(SERVICES[name])["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert SERVICES[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert "container_name" not in SERVICES["airflow-worker"]  # `--scale airflow-worker=N` needs unnamed containers
    assert environment(SERVICES["airflow-worker"])["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert "postgres" in environment(SERVICES["airflow-scheduler"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"]


def test_the_project_is_in_the_image_and_data_and_models_are_on_a_shared_volume():
    assert all(SERVICES[name]["build"] == "." for name in AIRFLOW_SERVICES)
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "FROM apache/airflow:3.3.2-python3.12" in dockerfile and "pip install" in dockerfile
    for source in re.findall(r"^COPY --chown=\S+ (.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), path
    for name in AIRFLOW_SERVICES:
        assert "trading-ml-data:/opt/trading-ml/data" in SERVICES[name]["volumes"]
    assert {"trading-ml-data", "mongo-data", "postgres-data"} <= set(COMPOSE["volumes"])


def test_no_secret_is_written_in_the_file_and_the_env_example_names_them_all():
    for name, service in SERVICES.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key):
                assert FROM_ENV.match(value), f"{name}: {key} must come from .env"
            for password in re.findall(r"://(?:\$\{[^}]+\}|[^:@/]+):(\$\{[^}]+\}|[^@/]+)@", value):
                assert FROM_ENV.match(password), f"{name}: {key} has a literal password"
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_]+)", (REPO / "docker-compose.yaml").read_text()))
    example = dict(line.split("=", 1) for line in (REPO / ".env.example").read_text().splitlines() if "=" in line and not line.startswith("#"))
    assert used <= set(example)
    assert ".env" in (REPO / ".gitignore").read_text().split()


def test_the_ui_is_published_on_loopback_by_default_and_mongodb_is_not_published():
    assert SERVICES["airflow-apiserver"]["ports"] == ["${AIRFLOW_UI_BIND:-127.0.0.1:8080}:8080"]
    assert all("ports" not in SERVICES[name] for name in ("mongodb", "postgres", "redis"))


def test_both_deployments_map_an_sp500_universe_on_two_timeframes():
    s_and_p_pairs = (503 + 6) * 2  # one ingest task per symbol x timeframe; Airflow's default cap is 1024
    standalone = re.search(r'MAX_MAP_LENGTH:-(\d+)', (REPO / "scripts" / "airflow-standalone").read_text())
    assert int(standalone.group(1)) >= s_and_p_pairs
    for name in AIRFLOW_SERVICES:
        assert int(environment(SERVICES[name])["AIRFLOW__CORE__MAX_MAP_LENGTH"]) >= s_and_p_pairs
