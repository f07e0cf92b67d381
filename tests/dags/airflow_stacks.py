"""Airflow deployments started for real on loopback, for the tests and ``benchmarks/bench_airflow.py``:

- ``CeleryStack``: the distributed deployment, PostgreSQL and Redis from Debian's packages with
  private data folders, and Airflow's services with the CeleryExecutor (api-server, scheduler,
  dag-processor, triggerer, Celery workers), configured as docker-compose.yaml configures them.
- ``StandaloneStack``: ``make airflow`` (scripts/airflow-standalone): SQLite and the LocalExecutor.

Every process starts in its own session, writes its log under the stack's folder and is stopped
(the whole process group) when the stack stops. Nothing listens beyond 127.0.0.1: the Celery
workers and the triggerer skip Airflow's log server (it binds every interface); on one host every
service reads the task logs from the shared log folder.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml
from cryptography.fernet import Fernet

from tests.conftest import QUICK_MODELS, merged

REPO = Path(__file__).resolve().parents[2]
POSTGRES_BIN = max(
    Path("/usr/lib/postgresql").glob("*/bin"),
    key=lambda path: int(path.parent.name),
    default=Path("/usr/lib/postgresql/15/bin"),
)
AIRFLOW = str(Path(sys.executable).with_name("airflow"))
DAG_ID = "trading_ml_training"


def small_config(folder: Path) -> Path:
    """config.yaml with a five-symbol universe (^GSPC, ^VIX, AAPL, MSFT, XOM) on 1d over two years,
    quick models and fast retries: the run the Celery test and the Airflow benchmark schedule."""
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    raw["universe"] = {
        "indices": [raw["universe"]["indices"][0], raw["universe"]["indices"][-1]],  # ^GSPC, ^VIX
        "equities": {"exchange": "XNYS", "sectors": {"Technology": ["AAPL", "MSFT"], "Energy": ["XOM"]}},
    }
    raw["timeframes"] = {"1d": {"lookback": "2y"}}
    raw["data_dir"], raw["source"] = str(folder / "data"), "synthetic"
    raw["models"] = merged(raw["models"], QUICK_MODELS)
    raw["airflow"] = {**raw["airflow"], "stage_retries": 2, "retry_delay_seconds": 2, "max_retry_delay_seconds": 5}
    path = folder / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def missing_parts() -> list[str]:
    """Why the stack cannot start here, or nothing."""
    missing = []
    if not (POSTGRES_BIN / "initdb").is_file():
        missing.append(f"PostgreSQL ({POSTGRES_BIN}/initdb; apt-get install postgresql)")
    if shutil.which("redis-server") is None:
        missing.append("redis-server (apt-get install redis-server)")
    try:
        import airflow.providers.celery  # noqa: F401
        import psycopg2  # noqa: F401
    except ImportError as error:
        missing.append(f"the project's celery extra ({error.name}; pip install -e '.[celery]')")
    if os.geteuid() == 0 and not _user_exists("postgres"):
        missing.append("a postgres user to run PostgreSQL as (root cannot)")
    return missing


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


class Process:
    """One service: started in its own session, its output in a log file, stopped with its children."""

    def __init__(self, name: str, command: list[str], env: dict[str, str], log_dir: Path):
        self.name, self.log = name, log_dir / f"{name}.log"
        with self.log.open("w") as output:
            self.popen = subprocess.Popen(
                command, env=env, stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker and the task processes it forked)."""
        try:
            os.killpg(self.popen.pid, sig)
        except ProcessLookupError:
            pass

    def stop(self) -> None:
        self.kill(signal.SIGTERM)
        try:
            self.popen.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.kill(signal.SIGKILL)
            self.popen.wait(timeout=10)

    def tail(self, lines: int = 30) -> str:
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:]) if self.log.exists() else ""


class AirflowStack:
    """What every stack offers: its folder, its processes, the airflow CLI in its environment, SQL on
    its metadata database, waiting on a condition, and stopping everything."""

    def __init__(self, prefix: str):
        self.root = Path(tempfile.mkdtemp(prefix=prefix))  # under /tmp: the postgres user can reach it
        self.logs = self.root / "service-logs"
        self.logs.mkdir()
        self.api_port = free_port()
        self.processes: dict[str, Process] = {}
        self.env = self.clean_env()

    @staticmethod
    def clean_env() -> dict[str, str]:
        """This environment without Airflow's and trading-ml's settings, with this venv's bin first."""
        env = {key: value for key, value in os.environ.items() if not key.startswith(("AIRFLOW", "TRADING_ML"))}
        return {**env, "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}"}

    def airflow(self, *args: str, timeout: float = 180) -> str:
        result = subprocess.run([AIRFLOW, *args], env=self.env, capture_output=True, text=True, timeout=timeout)
        if result.returncode != 0:
            raise RuntimeError(f"airflow {' '.join(args)} failed: {result.stderr[-2000:]}")
        return result.stdout

    def query(self, sql: str, *params) -> list[tuple]:
        raise NotImplementedError

    def task_log(self, run_id: str, task: str, attempt: int) -> str:
        """The log Airflow kept of one task attempt (Airflow's default log file layout)."""
        folder = self.root / "airflow" / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}" / f"task_id={task}"
        return (folder / f"attempt={attempt}.log").read_text()

    def start_run(self) -> str:
        """Unpause the DAG once it is parsed and trigger a run over the config's universe (unpausing
        alone starts none: the schedule runs only quarters that end after it); the run's id."""
        self.wait_for(
            "the DAG parsed into the database", lambda: self.query("SELECT 1 FROM dag WHERE dag_id = %s", DAG_ID), 300
        )
        self.airflow("dags", "unpause", DAG_ID)
        self.airflow("dags", "trigger", DAG_ID)
        [(run_id,)] = self.wait_for(
            "the triggered run", lambda: self.query("SELECT run_id FROM dag_run WHERE dag_id = %s", DAG_ID), 120
        )
        return run_id

    def trigger_another_run(self) -> str:
        """Trigger one more run of the unpaused DAG; its id."""
        known = {run_id for (run_id,) in self.query("SELECT run_id FROM dag_run WHERE dag_id = %s", DAG_ID)}
        self.airflow("dags", "trigger", DAG_ID)

        def new_run():
            return [r for (r,) in self.query("SELECT run_id FROM dag_run WHERE dag_id = %s", DAG_ID) if r not in known]

        return self.wait_for("the triggered run", new_run, 120)[0]

    def wait_for_run(self, run_id: str, timeout: float = 900) -> str:
        """The run's final state, success or failed; on timeout, the state of each of its tasks too."""

        def finished():
            [(state,)] = self.query("SELECT state FROM dag_run WHERE dag_id = %s AND run_id = %s", DAG_ID, run_id)
            return state if state in ("success", "failed") else None

        try:
            return self.wait_for("the run to finish", finished, timeout, every=1)
        except TimeoutError as error:
            tasks = self.query(
                "SELECT task_id, map_index, state, try_number FROM task_instance WHERE dag_id = %s AND run_id = %s",
                DAG_ID,
                run_id,
            )
            raise TimeoutError(f"{error}\ntasks: {tasks}") from None

    def wait_for(self, what: str, check, timeout: float, every: float = 1.0):
        """check() until it returns something true; its value. On timeout, the services' last lines."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = check()
            if found:
                return found
            dead = [
                name
                for name, p in self.processes.items()
                if p.popen.poll() is not None and not name.startswith("worker")
            ]
            if dead:
                raise RuntimeError(
                    f"waiting for {what}: {', '.join(dead)} stopped:\n"
                    + "\n".join(self.processes[d].tail() for d in dead)
                )
            time.sleep(every)
        tails = "\n".join(f"--- {name}\n{p.tail(15)}" for name, p in self.processes.items())
        raise TimeoutError(f"{what} did not happen within {timeout:.0f} s\n{tails}")

    def stop_processes(self) -> None:
        for process in reversed(list(self.processes.values())):
            process.stop()

    def stop(self) -> None:
        self.stop_processes()
        shutil.rmtree(self.root, ignore_errors=True)


class StandaloneStack(AirflowStack):
    """``make airflow`` as a user starts it (scripts/airflow-standalone: SQLite, LocalExecutor, the UI
    on a free loopback port), with its own AIRFLOW_HOME and data folder."""

    def __init__(self, config: Path | None = None):
        super().__init__("trading-ml-standalone-")
        self.env.update(
            AIRFLOW_HOME=str(self.root / "airflow"),
            TRADING_ML_DATA_DIR=str(self.root / "data"),
            AIRFLOW__API__PORT=str(self.api_port),
        )
        if config is not None:
            self.env["TRADING_ML_CONFIG"] = str(config)

    @property
    def script(self) -> Process:
        return self.processes["standalone"]

    def start(self) -> StandaloneStack:
        self.processes["standalone"] = Process(
            "standalone", [str(REPO / "scripts" / "airflow-standalone")], self.env, self.logs
        )
        self.wait_for(
            "the api-server",
            lambda: http_status(f"http://127.0.0.1:{self.api_port}/api/v2/version") == 200,
            180,
            every=2,
        )
        return self

    def query(self, sql: str, *params) -> list[tuple]:
        with sqlite3.connect(
            f"file:{self.root / 'airflow' / 'airflow.db'}?mode=ro", uri=True, timeout=30
        ) as connection:
            return connection.execute(sql.replace("%s", "?"), params).fetchall()


def http_status(url: str) -> int:
    """The HTTP status of a GET, or 0 when nothing answers."""
    try:
        return urllib.request.urlopen(url, timeout=30).status
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return 0


class Operator:
    """The stack's REST API as the UI calls it, logged in as admin (the password `make airflow` wrote)."""

    def __init__(self, stack: StandaloneStack):
        self.base = f"http://127.0.0.1:{stack.api_port}"
        password = json.loads((stack.root / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())[
            "admin"
        ]
        self.token = self.call("POST", "/auth/token", {"username": "admin", "password": password})["access_token"]

    def call(self, method: str, path: str, body: dict | None = None) -> dict:
        headers = {
            "Content-Type": "application/json",
            **({"Authorization": f"Bearer {self.token}"} if hasattr(self, "token") else {}),
        }
        request = urllib.request.Request(
            self.base + path, json.dumps(body).encode() if body is not None else None, headers, method=method
        )
        with urllib.request.urlopen(request, timeout=60) as answer:
            return json.load(answer)

    def runs(self) -> list[dict]:
        return self.call("GET", f"/api/v2/dags/{DAG_ID}/dagRuns")["dag_runs"]


class CeleryStack(AirflowStack):
    """PostgreSQL + Redis + Airflow (CeleryExecutor) on loopback."""

    def __init__(self, config: Path, heartbeat_timeout: int = 30):
        super().__init__("trading-ml-celery-")
        self.pg_port, self.redis_port = free_port(), free_port()
        self.env.update(self._airflow_env(config, heartbeat_timeout))

    # PostgreSQL and Redis
    def _as_postgres(self, command: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *command] if os.geteuid() == 0 else command

    def start_postgres(self) -> None:
        data = self.root / "postgres"
        data.mkdir()
        if os.geteuid() == 0:
            shutil.chown(self.root, "postgres")
            shutil.chown(data, "postgres")
            shutil.chown(self.logs, "postgres")
        subprocess.run(
            self._as_postgres(
                [str(POSTGRES_BIN / "initdb"), "-D", str(data), "-U", "airflow", "--auth=trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
        )
        options = f"-c listen_addresses=127.0.0.1 -p {self.pg_port} -k {data} -c fsync=off"
        subprocess.run(
            self._as_postgres(
                [
                    str(POSTGRES_BIN / "pg_ctl"),
                    "-D",
                    str(data),
                    "-o",
                    options,
                    "-l",
                    str(self.logs / "postgres.log"),
                    "-w",
                    "start",
                ]
            ),
            check=True,
            capture_output=True,
        )
        self._pg_data = data
        subprocess.run(
            [str(POSTGRES_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "airflow", "airflow"],
            check=True,
            capture_output=True,
        )

    def stop_postgres(self) -> None:
        if getattr(self, "_pg_data", None):
            subprocess.run(
                self._as_postgres([str(POSTGRES_BIN / "pg_ctl"), "-D", str(self._pg_data), "-m", "immediate", "stop"]),
                capture_output=True,
            )

    def start_redis(self) -> None:
        (self.root / "redis").mkdir()
        self.processes["redis"] = Process(
            "redis",
            [
                "redis-server",
                "--port",
                str(self.redis_port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.root / "redis"),
            ],
            os.environ.copy(),
            self.logs,
        )

    # Airflow
    @property
    def database_url(self) -> str:
        return f"postgresql+psycopg2://airflow@127.0.0.1:{self.pg_port}/airflow"

    def _airflow_env(self, config: Path, heartbeat_timeout: int) -> dict[str, str]:
        """Airflow's settings as docker-compose.yaml sets them, on this stack's loopback ports."""
        return {
            "AIRFLOW_HOME": str(self.root / "airflow"),
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
            "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.database_url,
            "AIRFLOW__CELERY__BROKER_URL": f"redis://127.0.0.1:{self.redis_port}/0",
            "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{self.database_url}",
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
            "AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS": "trading_ml_celery.CELERY_CONFIG",  # as docker-compose.yaml
            "AIRFLOW__WORKERS__MIN_HEARTBEAT_INTERVAL": "1",
            "AIRFLOW__API__HOST": "127.0.0.1",
            "AIRFLOW__API__PORT": str(self.api_port),
            "AIRFLOW__API__SECRET_KEY": secrets.token_urlsafe(32),
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(heartbeat_timeout),
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # a task the lost worker had taken but not started is re-queued
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
            "TRADING_ML_CONFIG": str(config),
        }

    def start_airflow(self, workers: int) -> None:
        """As airflow-init and the services of docker-compose.yaml: migrate, create the pools, start."""
        from trading_ml.drivers import airflow_pools, load_settings

        self.airflow("db", "migrate", timeout=600)
        for name, slots, description in airflow_pools(load_settings(self.env["TRADING_ML_CONFIG"])):
            self.airflow("pools", "set", name, str(slots), description)
        for name, command in (
            ("api-server", ["api-server"]),
            ("scheduler", ["scheduler"]),
            ("dag-processor", ["dag-processor"]),
            ("triggerer", ["triggerer", "--skip-serve-logs"]),
        ):
            self.processes[name] = Process(name, [AIRFLOW, *command], self.env, self.logs)
        for number in range(1, workers + 1):
            self.start_worker(number)

    def start_worker(self, number: int) -> None:
        """A Celery worker with its own name; its tasks report it as their hostname (two workers share
        this host, and the test tells their tasks apart by it)."""
        name = f"worker{number}"
        env = {
            **self.env,
            "TRADING_ML_WORKER_NAME": name,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "worker_name.hostname",
            "PYTHONPATH": str(Path(__file__).parent / "celery_hostname"),
        }
        self.processes[name] = Process(
            name, [AIRFLOW, "celery", "worker", "--celery-hostname", f"{name}@%h", "--skip-serve-logs"], env, self.logs
        )

    def kill_worker_running_training(self, run_id: str) -> tuple[str, str]:
        """SIGKILL, as a lost machine, the worker (and the task processes it forked) running the run's
        first training task once one runs: (task, worker)."""

        def training():
            return self.query(
                "SELECT task_id, hostname FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id LIKE "
                "'train_%%' "
                "AND state = 'running' AND hostname LIKE 'worker%%'",
                DAG_ID,
                run_id,
            )

        task, worker = self.wait_for("a training task running", training, 900, every=0.2)[0]
        self.processes[worker].kill()
        return task, worker

    def start(self, workers: int = 2) -> CeleryStack:
        self.start_postgres()
        self.start_redis()
        self.start_airflow(workers)
        return self

    def stop(self) -> None:
        self.stop_processes()
        self.stop_postgres()
        shutil.rmtree(self.root, ignore_errors=True)

    def query(self, sql: str, *params) -> list[tuple]:
        import psycopg2

        with psycopg2.connect(host="127.0.0.1", port=self.pg_port, user="airflow", dbname="airflow") as connection:
            with connection.cursor() as cursor:
                cursor.execute(sql, params)
                return cursor.fetchall()
