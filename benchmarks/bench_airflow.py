"""What orchestration costs, the same small run everywhere: the CLI's stage calls, ``dag.test``,
``make airflow`` (standalone: SQLite, LocalExecutor) and the native Celery stack with one and two
workers; then the Celery stack again with a worker killed while it trains, and how long recovery took.

    .venv/bin/python benchmarks/bench_airflow.py [--stacks cli,dag-test,standalone,celery-1,celery-2,celery-kill]
    .venv/bin/python benchmarks/bench_airflow.py --stacks cli,dag-test --symbols 100
    .venv/bin/python benchmarks/bench_airflow.py --stacks cli,standalone --load 2   # and with 2 busy processes
    .venv/bin/python benchmarks/bench_airflow.py --stacks cli,standalone --load 2 --repeat 3   # medians of 3
    .venv/bin/python benchmarks/bench_airflow.py --stacks standalone --load 2 --load-sessions each
    .venv/bin/python benchmarks/bench_airflow.py --stacks cli,standalone --set AIRFLOW__CORE__EXECUTOR=LocalExecutor

The run is tests/dags/airflow_stacks.py's ``small_config`` (five symbols, 1d over two years, quick
models), or with ``--symbols N`` config.yaml's universe cut or grown (synthetic equities) to N
symbols; the stacks schedule it by unpausing the DAG, as an operator would. Each stack starts fresh
(its own metadata database, loopback ports and data folder). The Celery stacks need PostgreSQL,
redis-server and the ``[celery]`` extra (``make services``); the worker-loss run uses a 30 s heartbeat
timeout, as the test does.

Each stack runs twice: the first run after it started (a cold api-server, ...) and the next one.
Per stack it prints the run's wall time (the DAG run's start to end, as Airflow recorded it), the
startup (from starting the services to the triggered run's creation: services up, DAG parsed,
unpaused), the task count, the busy time (the sum of task durations) and the per-task overhead:
scheduled -> queued and queued -> running (median, 90th percentile, max); then each stage's seconds
beside the CLI's, and each stack's wall against the CLI's. ``--set KEY=VALUE`` gives every stack
an Airflow setting (the stacks start from a clean environment), e.g. an earlier default to compare
with. With ``--load N`` each stack runs again with N processes keeping a core busy each,
and every training task's slowdown is printed beside what a fair share of the cores allows; the
busy processes share this script's session, or with ``--load-sessions each`` start one each (Linux
shares the cores between sessions where ``/proc/sys/kernel/sched_autogroup_enabled`` is 1).
``--repeat N`` measures everything N times and prints medians (a sub-second task varies by a third
from run to run); ``--timeline`` prints each Airflow run's tasks in time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
HOME = tempfile.mkdtemp(prefix="bench-airflow-")  # dag.test's Airflow, in this process
os.environ.update(
    AIRFLOW_HOME=HOME,
    AIRFLOW__CORE__LOAD_EXAMPLES="False",
    AIRFLOW__CORE__DAGS_FOLDER=str(REPO / "dags"),
    AIRFLOW__CORE__PLUGINS_FOLDER=str(REPO / "plugins"),
    AIRFLOW__DATABASE__SQL_ALCHEMY_CONN=f"sqlite:///{HOME}/airflow.db",
    AIRFLOW__LOGGING__LOGGING_LEVEL="WARNING",
)
for variable in ("AIRFLOW_CONN_MONGO_DEFAULT", "TRADING_ML_MONGO_URI", "TRADING_ML_DATA_DIR"):
    os.environ.pop(variable, None)

import pandas as pd  # noqa: E402
import yaml  # noqa: E402

from benchmarks.universe import grow_universe  # noqa: E402
from tests.conftest import QUICK_MODELS  # noqa: E402
from tests.dags.airflow_stacks import DAG_ID, AirflowStack, CeleryStack, StandaloneStack, missing_parts, small_config  # noqa: E402

STACKS = ("cli", "dag-test", "standalone", "celery-1", "celery-2", "celery-kill")
KILL_HEARTBEAT_TIMEOUT = 30
STACK_SETTINGS: dict[str, str] = {}  # --set: Airflow settings given to every stack (e.g. the defaults of before)


def sized_config(folder: Path, symbols: int | None) -> Path:
    """small_config, or config.yaml's indices and first equities (grown past 26) to ``symbols``."""
    path = small_config(folder)
    if symbols is None:
        return path
    raw, full = yaml.safe_load(path.read_text()), yaml.safe_load((REPO / "config.yaml").read_text())["universe"]
    room, sectors = symbols - len(full["indices"]), {}
    for sector, equities in full["equities"]["sectors"].items():
        sectors[sector], room = equities[: max(room, 0)], room - len(equities)
    raw["universe"] = {"indices": full["indices"], "equities": {**full["equities"], "sectors": sectors}}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    grow_universe(path, symbols)
    return path


def cli_run(config: Path) -> dict:
    """Every stage called in this process, as ``trading-ml run`` does (the report included)."""
    from trading_ml.drivers import load_settings
    from trading_ml.models.catalogue import chosen_models
    from trading_ml.pipeline.deploy import deploy
    from trading_ml.pipeline.evaluate import evaluate
    from trading_ml.pipeline.features import build_features
    from trading_ml.pipeline.ingest import ingest
    from trading_ml.pipeline.report import report
    from trading_ml.pipeline.resources import StageResources
    from trading_ml.pipeline.train import combine, train
    from trading_ml.pipeline.validate import validate
    from trading_ml.run import RunContext

    settings = load_settings(config)
    start = time.perf_counter()
    ctx = RunContext.create(
        settings, dt.date.today().isoformat(), settings.symbols, list(settings.timeframes), "synthetic"
    )
    stages: dict[str, float] = {}

    def timed(label, stage, *args, **kwargs):
        began = time.perf_counter()
        stage(*args, **kwargs)
        stages[label] = time.perf_counter() - began

    with StageResources.open(ctx) as resources:
        timed("ingest", ingest, ctx, resources=resources)
        timed("validate", validate, ctx, resources)
        timed("features", build_features, ctx, resources)
        for name in chosen_models(ctx.models):
            timed(f"train_{name}", train, ctx, name, resources)
        timed("combine", combine, ctx, resources)
        timed("evaluate", evaluate, ctx, resources)
        timed("deploy", deploy, ctx, resources)
        timed("report", report, ctx, resources)
    return {"wall": time.perf_counter() - start, "state": "success", "stages": stages}


def dag_test_run(config: Path) -> dict:
    """``dag.test()``: every task through Airflow's task runner and XCom, in this process, no scheduler."""
    from airflow.dag_processing.dagbag import DagBag
    from airflow.utils import db

    db.resetdb()
    os.environ["TRADING_ML_CONFIG"] = str(config)
    dag = DagBag(str(REPO / "dags")).get_dag(DAG_ID)
    start = time.perf_counter()
    run = dag.test()
    return {"wall": time.perf_counter() - start, "state": run.state, "tasks": len(run.get_task_instances())}


def stack_run(stack: AirflowStack, start, kill_during_training: bool = False) -> dict:
    """Start the stack, unpause the DAG, trigger a run (killing the worker of the first
    training task when asked); the run's figures from the metadata database, and (without a kill)
    the figures of a second run triggered once the first ended, under ``next``."""
    started = time.monotonic()
    try:
        start()
        run_id = stack.start_run()
        ready = time.monotonic() - started  # services up, DAG parsed, run created
        killed = (
            (*stack.kill_worker_running_training(run_id), dt.datetime.now(dt.UTC)) if kill_during_training else None
        )
        stack.wait_for_run(run_id, 1800)
        figures = {"startup": ready, **run_figures(stack, run_id)}
        figures.update(recovery(stack, run_id, killed) if killed else {})
        if not kill_during_training:  # the same run again on the stack that is up now: what each later run costs
            next_id = stack.trigger_another_run()
            stack.wait_for_run(next_id, 1800)
            figures["next"] = run_figures(stack, next_id)
        return figures
    finally:
        stack.stop()


def stamp(value) -> pd.Timestamp:
    return pd.Timestamp(value).tz_localize("UTC") if pd.Timestamp(value).tzinfo is None else pd.Timestamp(value)


def run_figures(stack: AirflowStack, run_id: str) -> dict:
    """Wall time, task count, busy time and the per-task overhead of one DAG run."""
    [(state, run_start, run_end)] = stack.query(
        "SELECT state, start_date, end_date FROM dag_run WHERE dag_id = %s AND run_id = %s", DAG_ID, run_id
    )
    rows = stack.query(
        "SELECT task_id, scheduled_dttm, queued_dttm, start_date, end_date FROM task_instance "
        "WHERE dag_id = %s AND run_id = %s AND state = 'success'",
        DAG_ID,
        run_id,
    )
    gaps = {"scheduled -> queued": [], "queued -> running": []}
    busy, stages, timeline = 0.0, {}, []
    for task, scheduled, queued, start, end in rows:
        offsets = [
            (stamp(at) - stamp(run_start)).total_seconds() if at else None for at in (scheduled, queued, start, end)
        ]
        timeline.append((task, *offsets))
        if scheduled and queued:
            gaps["scheduled -> queued"].append((stamp(queued) - stamp(scheduled)).total_seconds())
        gaps["queued -> running"].append((stamp(start) - stamp(queued)).total_seconds())
        busy += (took := (stamp(end) - stamp(start)).total_seconds())
        stages[task] = stages.get(task, 0.0) + took  # a mapped task's instances summed
    return {
        "state": state,
        "wall": (stamp(run_end) - stamp(run_start)).total_seconds(),
        "tasks": len(rows),
        "busy": busy,
        "overhead": {name: spread(values) for name, values in gaps.items()},
        "stages": stages,
        "timeline": sorted(timeline, key=lambda row: row[3]),
    }


def spread(values: list[float]) -> tuple[float, float, float]:
    """Median, 90th percentile and max."""
    ordered = sorted(values)
    return statistics.median(ordered), ordered[int(0.9 * (len(ordered) - 1))], ordered[-1]


def recovery(stack: CeleryStack, run_id: str, killed: tuple[str, str, dt.datetime]) -> dict:
    """From the kill: when the scheduler failed the lost attempt, when the retry ran and where."""
    task, worker, when = killed
    [(lost_end,)] = stack.query(
        "SELECT end_date FROM task_instance_history WHERE dag_id = %s AND run_id = %s AND task_id = %s "
        "AND try_number = 1",
        DAG_ID,
        run_id,
        task,
    )
    [(retry_start, tries, host)] = stack.query(
        "SELECT start_date, try_number, hostname FROM task_instance WHERE dag_id = %s AND run_id = %s AND task_id = %s",
        DAG_ID,
        run_id,
        task,
    )
    return {
        "killed": f"{worker} while it ran {task}; try {tries} ran on {host}",
        "detected": (stamp(lost_end) - pd.Timestamp(when)).total_seconds(),
        "retried": (stamp(retry_start) - pd.Timestamp(when)).total_seconds(),
    }


def cli_in_new_process(config: Path) -> dict:
    """cli_run in a fresh interpreter, as `trading-ml run` starts: every import paid, none warm."""
    child = subprocess.run(
        [sys.executable, __file__, "--cli-config", str(config)], capture_output=True, text=True, check=True
    )
    return json.loads(child.stdout.strip().splitlines()[-1])


def measure(name: str, config: Path) -> dict | str:
    """One stack's figures, or why it could not run here."""
    if name == "cli":
        return cli_in_new_process(config)
    if name == "dag-test":
        return dag_test_run(config)
    if name == "standalone":
        stack = StandaloneStack(config)
        stack.env.update(STACK_SETTINGS)
        return stack_run(stack, stack.start)
    missing = missing_parts()
    if missing:
        return "skipped: " + "; ".join(missing)
    workers = 1 if name == "celery-1" else 2
    stack = CeleryStack(config, KILL_HEARTBEAT_TIMEOUT if name == "celery-kill" else 120)
    stack.env.update(STACK_SETTINGS)
    return stack_run(stack, lambda: stack.start(workers=workers), kill_during_training=name == "celery-kill")


LABELS = {
    "cli": "CLI (stage calls, one process)",
    "dag-test": "dag.test (in process)",
    "standalone": "standalone (make airflow)",
    "celery-1": "Celery, 1 worker",
    "celery-2": "Celery, 2 workers",
    "celery-kill": "Celery, 2 workers, 1 killed",
}


def print_figures(results: dict[str, dict | str]) -> None:
    print(
        f"{'':32} {'wall':>7} {'startup':>8} {'tasks':>5} {'busy':>7}   scheduled->queued   queued->running (median "
        "/ p90 / max)"
    )
    for name, figures in results.items():
        if isinstance(figures, str):
            print(f"{LABELS[name]:32} {figures}")
            continue
        startup = f"{figures['startup']:7.1f}s" if "startup" in figures else f"{'':8}"
        tasks = f"{figures['tasks']:5d}" if "tasks" in figures else f"{'':5}"
        busy = f"{figures['busy']:6.1f}s" if "busy" in figures else f"{'':7}"
        overhead = (
            "   ".join(
                " / ".join(f"{v:.2f}" for v in figures["overhead"][k]) + " s"
                for k in ("scheduled -> queued", "queued -> running")
            )
            if "overhead" in figures
            else ""
        )
        state = "" if figures["state"] == "success" else f"  ({figures['state']})"
        walls = f"  (median of {', '.join(f'{w:.1f}' for w in figures['walls'])} s)" if "walls" in figures else ""
        print(f"{LABELS[name]:32} {figures['wall']:6.1f}s {startup} {tasks} {busy}   {overhead}{state}{walls}")
    cli = results.get("cli")
    if isinstance(cli, dict):
        ratios = [
            f"{n} {f['wall'] / cli['wall']:.2f}x" for n, f in results.items() if n != "cli" and isinstance(f, dict)
        ]
        print("wall against the CLI's: " + (", ".join(ratios) or "-"))
    print_stages(results)
    kill = results.get("celery-kill")
    if isinstance(kill, dict) and "killed" in kill:
        print(f"\nworker loss: killed {kill['killed']}")
        print(
            f"  the scheduler failed the lost attempt {kill['detected']:.1f} s after the kill "
            f"(heartbeat timeout {KILL_HEARTBEAT_TIMEOUT} s); the retry started {kill['retried']:.1f} s after it"
        )
        if isinstance(results.get("celery-2"), dict):
            print(
                f"  the run took {kill['wall'] - results['celery-2']['wall']:+.1f} s against 2 workers without a loss"
            )


def print_stages(results: dict[str, dict | str]) -> None:
    """Seconds per stage: the CLI's stage calls beside each stack's task durations (a mapped task's
    instances summed); a stack's tasks that the CLI has no stage for (plan, report, ...) last."""
    measured = {
        n: figures["stages"] for n, figures in results.items() if isinstance(figures, dict) and "stages" in figures
    }
    if len(measured) < 2:
        return
    order = list(dict.fromkeys(task for stages in measured.values() for task in stages))
    order.sort(key=lambda task: task not in measured.get("cli", {}))
    widths = {n: max(14, len(n) + 2) for n in measured}
    print(
        f"\nseconds per stage (task durations; a mapped task summed)\n{'':32}"
        + "".join(f"{n:>{widths[n]}}" for n in measured)
    )
    for task in order:
        print(
            f"{task:32}"
            + "".join(
                f"{stages[task]:{widths[n] - 1}.1f}s" if task in stages else f"{'-':>{widths[n]}}"
                for n, stages in measured.items()
            )
        )


def measure_fresh(name: str, label: str, folder: Path, symbols: int | None) -> tuple[dict | str, Path]:
    """One stack measured in a folder of its own (``folder/label``); its figures and its config."""
    (folder / label).mkdir(parents=True)
    config = sized_config(folder / label, symbols)
    print(f"running {LABELS[label]} ...", file=sys.stderr, flush=True)
    return measure(name, config), config


def add_next_run(results: dict[str, dict | str], name: str) -> None:
    """A stack's second run as a row of its own (``<name> next``), after the first."""
    figures = results[name]
    if isinstance(figures, dict) and "next" in figures:
        results[f"{name} next"] = {"state": "success", **figures.pop("next")}
        LABELS[f"{name} next"] = f"{LABELS[name]}, next run"


@contextmanager
def busy_processes(count: int, own_sessions: bool = False):
    """``count`` processes that each keep a core busy while the block runs: other work on the machine,
    in this script's session or each in a session of its own (where Linux shares the cores between
    sessions, that is a share each)."""
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], start_new_session=own_sessions)
        for _ in range(count)
    ]
    try:
        yield
    finally:
        for burner in burners:
            burner.kill()
            burner.wait()


def loaded_twin(name: str, load: int) -> str:
    """The result name of ``name``'s run with ``load`` busy processes beside it (``standalone next`` ->
    ``standalone+2 next``)."""
    first, _, next_run = name.partition(" ")
    return f"{first}+{load}" + (f" {next_run}" if next_run else "")


def print_fair_share(results: dict[str, dict | str], load: int) -> None:
    """Each training task with ``load`` busy processes beside it against the same task alone, and the
    slowdown its fair share of the cores allows: (busy processes + cores) / cores, when the parallel
    trainings' threads fill the cores (models.cores / airflow.parallel_trainings each)."""
    cores = os.cpu_count() or 1
    bound = (load + cores) / cores
    for name, figures in results.items():
        loaded = results.get(loaded_twin(name, load))
        if not isinstance(figures, dict) or not isinstance(loaded, dict) or "stages" not in figures:
            continue
        runs = f" (medians of {len(figures['walls'])} runs)" if "walls" in figures else ""
        print(f"\n{LABELS[name]}: each training with {load} busy processes beside it, against alone{runs}")
        print(f"  a fair share of {cores} cores allows up to {bound:.1f}x")
        for task, alone in figures["stages"].items():
            if task.startswith("train_") and task in loaded.get("stages", {}):
                ratio = loaded["stages"][task] / alone
                verdict = "within its share" if ratio <= bound else "slower than its share"
                print(f"  {task:32} {alone:6.1f}s -> {loaded['stages'][task]:6.1f}s  {ratio:4.1f}x  {verdict}")


def medians(runs: list[dict | str]) -> dict | str:
    """One stack's figures over repeated runs: the median of the wall, the busy time, the startup and
    each stage's seconds (``walls``: every run's wall); the first run's task
    overheads and timeline. A stack that did not run (a reason) or did not succeed stays as it was."""
    measured = [f for f in runs if isinstance(f, dict)]
    if len(measured) != len(runs) or len(runs) == 1 or any(f["state"] != "success" for f in measured):
        return runs[0]
    merged = dict(measured[0])
    for key in ("wall", "busy", "startup"):
        if key in merged:
            merged[key] = statistics.median(f[key] for f in measured)
    merged["stages"] = {
        task: statistics.median(f["stages"][task] for f in measured if task in f["stages"])
        for task in measured[0]["stages"]
    }
    merged["walls"] = [f["wall"] for f in measured]
    return merged


def print_timelines(results: dict[str, dict | str]) -> None:
    """Each stack run's tasks in the order they started: seconds from the run's start to the task's
    scheduling, queueing, start and end (where the wall time goes between and inside tasks)."""
    for name, figures in results.items():
        if not isinstance(figures, dict) or "timeline" not in figures:
            continue
        print(f"\n{LABELS[name]}: each task from the run's start (s)\n{'':34}scheduled  queued   start     end")
        for task, *offsets in figures["timeline"]:
            print(f"  {task:32}" + "".join(f"{'-' if at is None else f'{at:.2f}':>8}" for at in offsets))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stacks", default=",".join(STACKS), help=f"comma-separated, of {', '.join(STACKS)}")
    parser.add_argument(
        "--symbols", type=int, help="config.yaml's universe cut or grown to N symbols (default: the test's five)"
    )
    parser.add_argument(
        "--load", type=int, default=0, help="also run each stack with this many busy processes beside it"
    )
    parser.add_argument(
        "--load-sessions",
        choices=("one", "each"),
        default="one",
        help="the busy processes share this script's session (default) or each start one of their own",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="an environment variable for every stack, e.g. AIRFLOW__CORE__EXECUTOR=LocalExecutor (repeatable)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="measure every stack this many times; figures are medians"
    )
    parser.add_argument("--timeline", action="store_true", help="also print each Airflow run's tasks in time")
    parser.add_argument("--cli-config", type=Path, help=argparse.SUPPRESS)  # internal: one CLI run, JSON out
    args = parser.parse_args()
    if args.cli_config:
        print(json.dumps(cli_run(args.cli_config)))
        return
    STACK_SETTINGS.update(setting.split("=", 1) for setting in args.set if "=" in setting)
    stacks = args.stacks.split(",")
    unknown = sorted(set(stacks) - set(STACKS))
    if unknown:
        parser.error(f"unknown stack(s) {', '.join(unknown)}; choose from {', '.join(STACKS)}")
    repeats: dict[str, list[dict | str]] = {}
    with tempfile.TemporaryDirectory() as folder:
        for attempt in range(args.repeat):
            for name in stacks:
                results: dict[str, dict | str] = {}
                results[name], config = measure_fresh(name, name, Path(folder) / str(attempt), args.symbols)
                add_next_run(results, name)
                if args.load:
                    loaded = f"{name}+{args.load}"
                    LABELS[loaded] = f"{LABELS[name].split(' (')[0]}, {args.load} busy beside"
                    with busy_processes(args.load, own_sessions=args.load_sessions == "each"):
                        results[loaded], config = measure_fresh(name, loaded, Path(folder) / str(attempt), args.symbols)
                    add_next_run(results, loaded)
                for label, figures in results.items():
                    repeats.setdefault(label, []).append(figures)
        settings = yaml.safe_load(config.read_text())
    results = {label: medians(runs) for label, runs in repeats.items()}
    count = len(settings["universe"]["indices"]) + sum(
        len(s) for s in settings["universe"]["equities"]["sectors"].values()
    )
    print(
        f"== {count} symbols, 1d over {settings['timeframes']['1d']['lookback']}, quick models {QUICK_MODELS}, "
        "synthetic, TinyDB =="
    )
    print_figures(results)
    if args.load:
        print_fair_share(results, args.load)
    if args.timeline:
        print_timelines(results)


if __name__ == "__main__":
    try:
        main()
    finally:
        shutil.rmtree(HOME, ignore_errors=True)
