"""docker-compose.yaml: every service of the distributed deployment, health checks, secrets only as Docker
secrets, and the configuration the native CeleryExecutor test runs."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import yaml

from trading_ml.models.threads import machine_cores

REPO = Path(__file__).resolve().parent.parent
COMPOSE = yaml.safe_load((REPO / "docker-compose.yaml").read_text())
SERVICES = COMPOSE["services"]
AIRFLOW_SERVICES = {
    "airflow-apiserver",
    "airflow-scheduler",
    "airflow-dag-processor",
    "airflow-worker",
    "airflow-triggerer",
}
ONE_SHOT = {"airflow-init"}
SIGNALS_API = "signals-api"
SECRET_NAME = re.compile(r"PASSWORD|SECRET|FERNET|TOKEN", re.IGNORECASE)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    return dict(item.split("=", 1) for item in env) if isinstance(env, list) else {k: str(v) for k, v in env.items()}


def test_every_service_of_the_deployment_is_there_with_a_health_check():
    assert set(SERVICES) == {"postgres", "redis", "mongodb", *AIRFLOW_SERVICES, *ONE_SHOT, SIGNALS_API}
    for name, service in SERVICES.items():
        if name not in ONE_SHOT:
            assert service.get("healthcheck", {}).get("test"), f"{name} has no health check"
    for name in AIRFLOW_SERVICES:
        assert environment(SERVICES[name])["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor"
        assert SERVICES[name]["depends_on"]["airflow-init"]["condition"] == "service_completed_successfully"
    assert "container_name" not in SERVICES["airflow-worker"]  # `--scale airflow-worker=N` needs unnamed containers
    assert environment(SERVICES["airflow-worker"])["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://redis:")
    assert "@postgres/airflow" in environment(SERVICES["airflow-scheduler"])["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"]


def test_the_project_is_in_the_image_and_data_and_models_are_on_a_shared_volume():
    for name in AIRFLOW_SERVICES:
        build = SERVICES[name]["build"]
        assert (
            build["context"] == "."
            and build["args"]["AIRFLOW_BASE"] == "${AIRFLOW_BASE:-apache/airflow:3.3.2-python3.12}"
        )
    dockerfile = (REPO / "Dockerfile").read_text()
    assert (
        "ARG AIRFLOW_BASE=apache/airflow:3.3.2-python3.12\nFROM ${AIRFLOW_BASE}" in dockerfile
        and "pip install" in dockerfile
    )
    for source in re.findall(r"^COPY --chown=\S+ (.+) \S+$", dockerfile, re.MULTILINE):
        for path in source.split():
            assert (REPO / path).exists(), path
    for name in AIRFLOW_SERVICES:
        assert "trading-ml-data:/opt/trading-ml/data" in SERVICES[name]["volumes"]
    assert {"trading-ml-data", "mongo-data", "postgres-data"} <= set(COMPOSE["volumes"])


def test_the_build_context_is_the_library_the_dag_and_its_packaging_only():
    """.dockerignore lets in exactly what the image installs and runs; before it, the build context held
    .venv (5 GB), data/ and secrets/."""
    rules = [line for line in (REPO / ".dockerignore").read_text().splitlines() if line and not line.startswith("#")]
    assert rules[0] == "*"
    allowed = {rule[1:] for rule in rules if rule.startswith("!")}
    assert allowed == {
        "pyproject.toml",
        "README.md",
        "logical_pipe.py",
        "train_production_models.py",
        "config.yaml",
        "constraints.txt",
        "trading_ml",
        "dags",
        "plugins",
        "scripts/deployment_secrets.py",
    }
    assert all((REPO / path).exists() for path in allowed)
    assert not allowed & {".venv", "data", "secrets", "tests", ".git"}
    dockerfile = (REPO / "Dockerfile").read_text()
    assert (
        "AIRFLOW__CORE__DAGS_FOLDER=/opt/trading-ml/dags" in dockerfile
        and "AIRFLOW__CORE__PLUGINS_FOLDER=/opt/trading-ml/plugins" in dockerfile
    )


def test_no_secret_is_in_the_file_or_an_environment_variable_only_docker_secrets():
    """Before: passwords and the Fernet key were plain environment variables of every container. Now
    each is a Docker secret file read through *_CMD, *_FILE or Airflow's local-file secrets backend."""
    declared = set(COMPOSE["secrets"])
    for name, service in SERVICES.items():
        for key, value in environment(service).items():
            if SECRET_NAME.search(key) and not key.startswith("AIRFLOW__SECRETS__BACKEND"):
                assert key.endswith(("_CMD", "_FILE")), f"{name}: {key} must read a secret file"
            assert not re.search(r"://[^/\s]*:[^@/{\s]+@", value), f"{name}: {key} has a literal password"
            for secret in re.findall(r"/run/secrets/([\w.]+)", value) + re.findall(r"\{(\w+)\}", value):
                assert secret in declared and secret in service.get("secrets", []), f"{name}: {key} reads {secret}"
    assert all(spec["file"].startswith("${TRADING_ML_SECRETS_DIR:-./secrets}/") for spec in COMPOSE["secrets"].values())
    used = set(re.findall(r"(?<!\$)\$\{([A-Z_]+)", (REPO / "docker-compose.yaml").read_text()))
    example = dict(
        line.split("=", 1)
        for line in (REPO / ".env.example").read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert used <= set(example) and not any(
        SECRET_NAME.search(key) for key in example if not key.endswith("_DIR")
    )  # a folder's name, not a secret
    ignored = (REPO / ".gitignore").read_text().split()
    assert ".env" in ignored and "/secrets/" in ignored


def load_secrets_script():
    import importlib.util

    spec = importlib.util.spec_from_file_location("deployment_secrets", REPO / "scripts" / "deployment_secrets.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_secrets_are_generated_once_checked_for_format_and_a_placeholder_is_refused(tmp_path):
    from cryptography.fernet import Fernet

    script = load_secrets_script()
    folder = tmp_path / "secrets"
    written = script.generate(folder)
    assert set(written) == {
        Path(spec["file"]).name for spec in COMPOSE["secrets"].values()
    }  # every secret compose mounts
    assert script.problems(folder) == []
    Fernet((folder / "airflow_fernet_key").read_text().strip())  # a key Airflow accepts
    key = (folder / "airflow_fernet_key").read_text()
    assert script.generate(folder) == [] and (folder / "airflow_fernet_key").read_text() == key  # never replaced
    password = (folder / "postgres_password").read_text().strip()
    assert script.url("db+postgresql+psycopg2://airflow:{postgres_password}@postgres/airflow", folder) == (
        f"db+postgresql+psycopg2://airflow:{password}@postgres/airflow"
    )
    printed = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "deployment_secrets.py"),
            "url",
            "x://{postgres_password}@h/airflow",
            str(folder),
        ],
        capture_output=True,
        text=True,
    )
    assert printed.stdout.endswith(
        "@h/airflow"
    )  # no newline: Airflow's *_CMD keeps it (the first real build's "airflow\n")

    (folder / "airflow_fernet_key").write_text(
        "change-me\n"
    )  # the old .env.example's value: passed compose, failed at runtime
    assert any("placeholder" in problem for problem in script.problems(folder))
    (folder / "airflow_fernet_key").write_text("bm90IGEga2V5\n")
    assert any("is not a Fernet key" in problem for problem in script.problems(folder))
    (folder / "postgres_password").unlink()
    assert any("postgres_password is missing" in problem for problem in script.problems(folder))
    init = " ".join(SERVICES["airflow-init"]["command"])
    assert init.index("deployment_secrets.py check /run/secrets airflow") < init.index(
        "airflow db migrate"
    )  # checked before anything starts


def test_airflow_init_checks_exactly_the_secrets_mounted_into_the_airflow_services(tmp_path):
    """The first real build found airflow-init refusing to start: it checked mongo_root_password, which
    only the mongodb service mounts."""
    script = load_secrets_script()
    assert set(script.MOUNTED["airflow"]) == set(SERVICES["airflow-init"]["secrets"])
    assert set(script.MOUNTED["all"]) == set(COMPOSE["secrets"])
    script.generate(tmp_path)
    (tmp_path / "mongo_root_password").unlink()
    assert script.problems(tmp_path, script.MOUNTED["airflow"]) == []
    assert script.main(["check", str(tmp_path), "airflow"]) == 0 and script.main(["check", str(tmp_path)]) == 1
    assert script.main(["check", str(tmp_path), "nobody"]) == 2


def test_the_compose_file_runs_what_the_native_celery_test_runs():
    """tests/dags/airflow_stacks.py is the compose deployment on loopback: the same executor, broker,
    result-backend driver, log servers skipped, a shortened heartbeat timeout."""
    stack = (REPO / "tests" / "dags" / "airflow_stacks.py").read_text()
    env = environment(SERVICES["airflow-scheduler"])
    assert env["AIRFLOW__CORE__EXECUTOR"] == "CeleryExecutor" and '"AIRFLOW__CORE__EXECUTOR": "CeleryExecutor"' in stack
    assert (
        "db+postgresql+psycopg2://" in env["AIRFLOW__CELERY__RESULT_BACKEND_CMD"]
        and '"AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.database_url}"' in stack
    )
    assert "postgresql+psycopg2" in env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN_CMD"] and "postgresql+psycopg2://" in stack
    assert (
        env["AIRFLOW__CELERY__BROKER_URL"].startswith("redis://")
        and '"AIRFLOW__CELERY__BROKER_URL": f"redis://' in stack
    )
    for service, flag in (("airflow-worker", "--skip-serve-logs"), ("airflow-triggerer", "--skip-serve-logs")):
        assert flag in SERVICES[service]["command"] and flag in stack
    heartbeat_timeout = re.fullmatch(
        r"\$\{AIRFLOW_TASK_HEARTBEAT_TIMEOUT:-(\d+)\}", env["AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT"]
    )
    assert heartbeat_timeout and int(heartbeat_timeout[1]) < 300  # a lost worker's task waits minutes, not Airflow's 5
    assert SERVICES["airflow-worker"]["mem_limit"].startswith("${AIRFLOW_WORKER_MEMORY:-")
    dockerfile = (REPO / "Dockerfile").read_text()
    assert "--constraint /opt/trading-ml/constraints.txt" in dockerfile and '"/opt/trading-ml[celery]"' in dockerfile
    assert (
        "mkdir -p /opt/trading-ml/data && chown -R airflow:0 /opt/trading-ml" in dockerfile
    )  # the data volume's mount point, owned by uid 50000
    pins = {line.split("==")[0].lower() for line in (REPO / "constraints.txt").read_text().splitlines() if "==" in line}
    assert {
        "apache-airflow",
        "apache-airflow-providers-celery",
        "celery",
        "psycopg2-binary",
        "asyncpg",
        "torch",
    } <= pins


def test_the_ui_is_published_on_loopback_by_default_and_mongodb_is_not_published():
    assert SERVICES["airflow-apiserver"]["ports"] == ["${AIRFLOW_UI_BIND:-127.0.0.1:8080}:8080"]
    assert all("ports" not in SERVICES[name] for name in ("mongodb", "postgres", "redis"))


def test_the_signals_api_is_a_service_over_the_same_registry_and_data_volume_on_loopback(tmp_path):
    api = SERVICES[SIGNALS_API]
    assert api["ports"] == ["${SIGNALS_API_BIND:-127.0.0.1:8000}:8000"] and api["command"][:1] == ["serve"]
    assert api["entrypoint"][-1] == "trading-ml" and "trading-ml-data:/opt/trading-ml/data" in api["volumes"]
    assert api["image"] == SERVICES["airflow-scheduler"]["image"] and "openapi.json" in " ".join(
        api["healthcheck"]["test"]
    )
    assert api["depends_on"]["mongodb"]["condition"] == "service_healthy"
    assert environment(api) == {
        "TRADING_ML_MONGO_URI_FILE": "/run/secrets/signals_api_mongo_uri"
    }  # the registry the DAG writes
    script = load_secrets_script()
    script.generate(tmp_path)
    from trading_ml.drivers import load_settings

    settings = load_settings(env={"TRADING_ML_MONGO_URI_FILE": str(tmp_path / "signals_api_mongo_uri")})
    connection = (tmp_path / "airflow_connections.json").read_text()
    assert (
        settings.storage.mongo_uri.startswith("mongodb://trading:")
        and settings.storage.mongo_uri.split("://")[1] in connection
    )


def test_both_deployments_map_an_sp500_universe_on_two_timeframes():
    s_and_p_pairs = (503 + 6) * 2  # one ingest task per symbol x timeframe; Airflow's default cap is 1024
    standalone = re.search(r"MAX_MAP_LENGTH:-(\d+)", (REPO / "scripts" / "airflow-standalone").read_text())
    assert int(standalone.group(1)) >= s_and_p_pairs
    for name in AIRFLOW_SERVICES:
        assert int(environment(SERVICES[name])["AIRFLOW__CORE__MAX_MAP_LENGTH"]) >= s_and_p_pairs


def test_the_python_one_liners_the_deployments_run_work_against_this_checkout():
    """airflow-init and scripts/airflow-standalone read the pools from the config with `python -c`: a
    renamed import there fails only inside a container (it once did), so each runs here too."""
    texts = [(REPO / "docker-compose.yaml").read_text(), (REPO / "scripts" / "airflow-standalone").read_text()]
    snippets = [code for text in texts for code in re.findall(r"python -c '([^']*airflow_pools[^']*)'", text)]
    assert len(snippets) == 2
    for code in snippets:
        result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120)
        assert result.returncode == 0, result.stderr
        pools = [line.split("\t")[:2] for line in result.stdout.splitlines()]
        assert pools == [["market_data_source", "4"], ["model_training", str(machine_cores())]]
