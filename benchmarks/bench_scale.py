"""How cost grows with the universe: the pipeline at 26, 100 and 500 symbols (1d over 5 years and 1h
over 6 months, synthetic, TinyDB), wall time and peak memory per stage, and cost growth over universe
growth.

    .venv/bin/python benchmarks/bench_scale.py [--sizes 26,100,500] [--timeframes 1d,1h] [--as-of YYYY-MM-DD]
    .venv/bin/python benchmarks/bench_scale.py --isolated   # each stage in its own process, as Airflow
    .venv/bin/python benchmarks/bench_scale.py --parallel-trainings 1   # the CLI's trainings one at a time

Each size runs in its own process, so peak memory is that run's (with its worker processes',
summed: the validate and features stages' workers, and at scale the trainings', which the CLI runs
in workers of their own, several at once); with ``--isolated`` every stage runs in a process of its
own too, as Airflow's tasks do, and its peak is that task's (imports included). "ingest, a task per
pair" is ingestion as Airflow's mapped tasks do it (one store write per pair, into an empty fallback of its
own); it is not part of the CLI's end to end. Beyond the plan's 26 symbols the universe grows with
synthetic equities (SYN0001, ...) spread over the plan's five sectors (``benchmarks/universe.py``).
A ratio near 1.0 means linear; above 1.0 grows faster than the universe. The last column projects
each stage to ``--project`` symbols from the two largest sizes measured: time grows as it grew
between them (never slower than linearly), peak memory by its measured cost per added symbol.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import math
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
for name in ("TRADING_ML_MONGO_URI", "TRADING_ML_DATA_DIR", "TRADING_ML_CONFIG"):  # TinyDB in a temp folder
    os.environ.pop(name, None)

from benchmarks.universe import grow_universe  # noqa: E402
from tests.conftest import write_config  # noqa: E402
from trading_ml.drivers import load_settings  # noqa: E402
from trading_ml.models import TRAINED_MODELS  # noqa: E402
from trading_ml.pipeline import before_stage  # noqa: E402
from trading_ml.pipeline.features import build_features  # noqa: E402
from trading_ml.pipeline.ingest import ingest  # noqa: E402
from trading_ml.pipeline.resources import StageResources  # noqa: E402
from trading_ml.pipeline.validate import validate  # noqa: E402
from trading_ml.run import RunContext  # noqa: E402

PER_PAIR = "ingest, a task per pair"  # not a CLI stage: left out of "end to end"


class PeakMemory:
    """Peak memory (MB) of this process and its workers while a stage runs: resident (RSS, summed,
    every 20 ms) and proportional (PSS, summed, every 200 ms: a page the processes share, such as
    a library's code, counts once over them instead of once in each; None where Linux has no
    smaps_rollup)."""

    PSS_EVERY = 10  # samples: reading smaps_rollup walks a process's mappings

    def __init__(self):
        self.peak, self.peak_pss, self._running = 0.0, None, False

    @staticmethod
    def processes() -> list[psutil.Process]:
        process = psutil.Process()
        return [process, *process.children(recursive=True)]

    @classmethod
    def resident_mb(cls) -> float:
        """This process's resident memory and its workers' (the stages' worker processes), summed."""
        total = 0
        for process in cls.processes():
            try:
                total += process.memory_info().rss
            except psutil.NoSuchProcess:
                pass
        return total / 2**20

    @classmethod
    def proportional_mb(cls) -> float | None:
        """The processes' proportional set sizes, summed (None without /proc/<pid>/smaps_rollup)."""
        total = 0
        for process in cls.processes():
            try:
                rollup = Path(f"/proc/{process.pid}/smaps_rollup").read_text()
            except FileNotFoundError:
                if not Path("/proc/self/smaps_rollup").exists():
                    return None
                continue  # the process ended
            except OSError:
                return None
            total += next((int(line.split()[1]) for line in rollup.splitlines() if line.startswith("Pss:")), 0)
        return total / 2**10

    def __enter__(self):
        self.peak, self.peak_pss, self._running = self.resident_mb(), self.proportional_mb(), True
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self):
        ticks = 0
        while self._running:
            self.peak = max(self.peak, self.resident_mb())
            ticks += 1
            if ticks % self.PSS_EVERY == 0 and self.peak_pss is not None:
                self.peak_pss = max(self.peak_pss, self.proportional_mb() or 0.0)
            time.sleep(0.02)

    def __exit__(self, *exc):
        self._running = False
        self._thread.join()


def ingest_per_pair(settings, ctx: RunContext, data_dir: Path) -> None:
    """Ingestion as Airflow's mapped tasks do it, one store write per pair, into its own empty fallback."""
    own = dataclasses.replace(
        settings, data_dir=data_dir, storage=dataclasses.replace(settings.storage, fallback_dir=data_dir / "fallback")
    )
    own_ctx = RunContext.create(own, ctx.as_of.isoformat(), ctx.symbols, ctx.timeframes, ctx.source)
    resources = StageResources.open(own_ctx)
    for symbol, timeframe in own_ctx.pairs:
        ingest(own_ctx, [(symbol, timeframe)], resources)


def run_stage(ctx: RunContext, label: str, resources: StageResources) -> dict[str, float] | None:
    """One stage of the CLI's run by its label ("train <model>" for one training, "train" for all of
    them as the CLI trains them: then each model's seconds)."""
    # the model stages load torch and xgboost: imported here, as a training task does, so the data
    # stages' memory is theirs alone
    if label.startswith("train "):
        from trading_ml.pipeline.train import train

        train(ctx, label.removeprefix("train "), resources)
        return
    if label == "train":  # every model, as the CLI trains them (at scale: worker processes, in parallel)
        from trading_ml.pipeline.train import train_models

        seconds: dict[str, float] = {}
        train_models(ctx, resources, on_trained=lambda manifest, s: seconds.update({manifest["model_name"]: s}))
        return seconds
    later = {"combine": "train", "evaluate": "evaluate", "deploy": "deploy", "report": "report"}
    if label in later:  # imported when it runs, as the CLI does: the data stages' process holds none of them
        stage_function = getattr(importlib.import_module(f"trading_ml.pipeline.{later[label]}"), label)
    else:
        stage_function = {"ingest": ingest, "validate": validate, "features": build_features}[label]
    stage_function(ctx, resources=resources)
    return None


def run_in_turn(ctx: RunContext, label: str, labels: list[str], resources: StageResources) -> dict | None:
    """``label``, one of ``labels`` run in turn in this process, as the CLI's run makes it."""
    before_stage(label, labels)
    return run_stage(ctx, label, resources)


def isolated_stage(context_file: Path, label: str) -> dict:
    """``label`` run in a process of its own on the run ``context_file`` describes: its seconds and
    that process's peak resident memory (what an Airflow task of it needs)."""
    done = subprocess.run(
        [sys.executable, __file__, "--stage", label, "--context", str(context_file)], capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(f"stage {label} failed in its own process: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def stage_in_this_process(context_file: Path, label: str) -> None:
    """The child of :func:`isolated_stage`: print the stage's seconds and this process's peak (MB)."""
    description = json.loads(context_file.read_text())
    ctx = RunContext.from_dict(description, load_settings(Path(description["config_path"])))
    start = time.perf_counter()
    run_stage(ctx, label, StageResources.open(ctx))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KB on Linux
    print(json.dumps({"seconds": time.perf_counter() - start, "peak_mb": peak}))


def run_size(size: int, as_of: str, timeframes: list[str], isolated: bool = False, parallel: int = 0) -> dict:
    figures = {}

    def stage(label, action):
        start = time.perf_counter()
        with PeakMemory() as memory:
            result = action()
        figures[label] = {"seconds": time.perf_counter() - start, "peak_mb": memory.peak, "pss_mb": memory.peak_pss}
        if isinstance(result, dict) and "seconds" in result:  # measured in its own process
            figures[label] = result
        elif isinstance(result, dict):  # the trainings: each model's seconds in its worker
            figures[label]["models"] = result
        proportional = f" ({memory.peak_pss:.0f} MB PSS)" if memory.peak_pss is not None else ""
        print(
            f"  {size:>4} {label:<26} {figures[label]['seconds']:8.1f}s {memory.peak:8.0f} MB{proportional}",
            file=sys.stderr,
            flush=True,
        )
        return result

    with tempfile.TemporaryDirectory() as folder:
        config = write_config(Path(folder), models={"parallel_trainings": parallel})
        grow_universe(config, size)
        settings = load_settings(config)
        ctx = RunContext.create(settings, as_of, settings.symbols[:size], timeframes, "synthetic")
        resources = StageResources.open(ctx)
        context_file = Path(folder) / "context.json"
        context_file.write_text(json.dumps(ctx.to_dict()))
        stage(PER_PAIR, lambda: ingest_per_pair(settings, ctx, Path(folder) / "per-pair"))
        trainings = [f"train {name}" for name in TRAINED_MODELS] if isolated else ["train"]
        labels = ["ingest", "validate", "features", *trainings, "combine", "evaluate", "deploy", "report"]
        for label in labels:
            if isolated:
                stage(label, lambda lb=label: isolated_stage(context_file, lb))
            else:
                stage(label, lambda lb=label: run_in_turn(ctx, lb, labels, resources))
    return figures


def projection(sizes: list[int], seconds: dict, peaks: dict, target: int) -> str:
    """A stage at ``target`` symbols from the two largest sizes: time by their growth exponent (at
    least 1, linear), peak memory by their cost per added symbol."""
    small, large = sizes[-2], sizes[-1]
    exponent = math.log(max(seconds[large], 1e-9) / max(seconds[small], 1e-9)) / math.log(large / small)
    time = seconds[large] * (target / large) ** max(exponent, 1.0)
    memory = peaks[large] + max(peaks[large] - peaks[small], 0.0) / (large - small) * (target - large)
    return f"{time:12.0f}s {memory:7.0f}MB"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="26,100,500")
    parser.add_argument("--timeframes", default="1d,1h")
    parser.add_argument("--as-of", default="2026-11-20")
    parser.add_argument("--project", type=int, default=3000, help="project every stage to this many symbols")
    parser.add_argument("--isolated", action="store_true", help="every stage in a process of its own (as Airflow)")
    parser.add_argument(
        "--parallel-trainings", type=int, default=0, help="models.parallel_trainings (0: one per core; 1: least memory)"
    )
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # internal: run one size, print JSON
    parser.add_argument("--stage", help=argparse.SUPPRESS)  # internal: run one stage of --context, print JSON
    parser.add_argument("--context", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.stage:
        stage_in_this_process(args.context, args.stage)
        return
    if args.one:
        timeframes = args.timeframes.split(",")
        print(json.dumps(run_size(args.one, args.as_of, timeframes, args.isolated, args.parallel_trainings)))
        return
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {}
    for size in sizes:
        done = subprocess.run(
            [sys.executable, __file__, "--one", str(size), "--as-of", args.as_of, "--timeframes", args.timeframes]
            + ["--parallel-trainings", str(args.parallel_trainings)]
            + (["--isolated"] if args.isolated else []),
            capture_output=True,
            text=True,
        )
        sys.stderr.write(done.stderr[-2000:] if done.returncode else "")
        results[size] = json.loads(done.stdout.strip().splitlines()[-1])
    stages = list(results[sizes[0]])
    header = "".join(f"{f'{n} sym':>18}" for n in sizes)
    growth = "".join(f"{f'x{n / sizes[0]:.1f} ratio':>14}" for n in sizes[1:])
    print(f"{'stage':<26}{header}{growth}{f'{args.project} projected':>22}")
    for label in [*stages, "end to end"]:
        cli_stages = {n: [v for name, v in results[n].items() if name != PER_PAIR] for n in sizes}
        seconds = {
            n: sum(v["seconds"] for v in cli_stages[n]) if label == "end to end" else results[n][label]["seconds"]
            for n in sizes
        }
        peaks = {
            n: max(v["peak_mb"] for v in cli_stages[n]) if label == "end to end" else results[n][label]["peak_mb"]
            for n in sizes
        }
        cells = "".join(f"{seconds[n]:8.1f}s {peaks[n]:6.0f}MB" for n in sizes)
        ratios = "".join(f"{(seconds[n] / seconds[sizes[0]]) / (n / sizes[0]):14.2f}" for n in sizes[1:])
        projected = projection(sizes, seconds, peaks, args.project) if len(sizes) > 1 else ""
        print(f"{label:<26}{cells}{ratios}{projected}")
        models = {n: results[n][label].get("models", {}) for n in sizes} if label != "end to end" else {}
        for model in models.get(sizes[0], {}):  # the CLI's trainings: each one's time in its worker
            cells = "".join(f"{models[n].get(model, float('nan')):8.1f}s {'':8}" for n in sizes)
            print(f"  {model:<24}{cells}")
    proportional = {n: [v.get("pss_mb") for name, v in results[n].items() if name != PER_PAIR] for n in sizes}
    if all(None not in values for values in proportional.values()):
        cells = "".join(f"{'':9} {max(proportional[n]):6.0f}MB" for n in sizes)
        print(f"{'end to end, PSS':<26}{cells}")
        for label in stages:
            if label != PER_PAIR:
                cells = "".join(f"{'':9} {results[n][label]['pss_mb']:6.0f}MB" for n in sizes)
                print(f"  {label:<24}{cells}")
        print("PSS: each page shared between the processes (libraries' code, files read) counted once over them")
    if any("models" in results[n].get("train", {}) for n in sizes):
        print("indented: each training's seconds in its worker; at scale they run at once (train is the wall time)")
    print("ratio = (time growth) / (universe growth): 1.0 is linear, above 1.0 grows faster than the universe")
    if args.isolated:
        print("each stage ran in its own process: a peak is that task's, and end to end's is the largest task's")


if __name__ == "__main__":
    main()
