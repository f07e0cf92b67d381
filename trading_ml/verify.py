"""A version checked in a child process before anything serves, promotes or deploys it.

Native loaders (XGBoost's JSON parser, torch, skops) can abort or crash on a malformed file whose
sha256 matches its record, and a model that loads can still predict NaN or nonsense. So a version is
verified in a child process (forked from a helper process that has the model libraries imported,
with limits on its memory and time): every file's sha256 (a combination's members too), the load, and a
prediction on a small canary panel (a seeded synthetic market through the same feature code as
training) that must be finite and in its task's range on the rows the model can predict. Whatever
the child does (abort, segfault, run out of memory or time) is one line in the verdict.

A verdict holds for exactly the file hashes it was made on; the process that asked loads the version
only after a passing verdict for those hashes, from bytes that match them.

Run as ``python -m trading_ml.verify``, this module is the helper that forks the children.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import json
import logging
import os
import resource
import select
import signal
import struct
import subprocess
import sys
import threading
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import pandas as pd

from trading_ml.errors import DataError
from trading_ml.loading import ModelLoader, one_line
from trading_ml.models.catalogue import members_of, task_of
from trading_ml.models.tasks import TASKS
from trading_ml.registry import ModelRegistry, label

log = logging.getLogger(__name__)

MEMORY_BYTES = 2 * 1024**3  # what a child may allocate beyond what it starts with
SECONDS = 120.0  # wall time a child may take for one batch
CANARY_ROWS = 260  # rows per symbol past the warm-up (the API keeps as many)
CANARY_SEED = 7
CANARY_EQUITIES = 2
PRELOADED = ("torch", "xgboost", "arch", "sklearn.ensemble", "skops.io")  # imported once by the helper
HELPER_MARGIN = 5.0  # seconds the helper may take beyond its child's limit to answer
HELPER_START_SECONDS = 120.0  # a new helper imports the model libraries first
ONE_THREAD = dict.fromkeys(
    ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"), "1"
)  # no thread pools to fork


@dataclass(frozen=True)
class Verdict:
    """The outcome of verifying one version, for exactly the file hashes it names."""

    label: str
    hashes: tuple[str, ...]
    passed: bool
    why: str = ""


class RecordSet:
    """What a loader needs of a registry, from records already read (the child has no store)."""

    def __init__(self, records: list[dict], models_root):
        self.models_root, self.store = Path(models_root), _NoFiles()
        self._records = {(r["model_name"], r["run_id"]): r for r in records}

    def record_for_run(self, name: str, run_id: str) -> dict:
        if (name, run_id) not in self._records:
            raise DataError(f"{name} of run {run_id} was not given to the verifier")
        return self._records[(name, run_id)]


class _NoFiles:
    def get_file(self, _path):
        return None


class Verifier:
    """Verifies versions of one registry in child processes and remembers the verdicts by file hashes."""

    def __init__(self, registry: ModelRegistry, settings, memory_bytes: int = MEMORY_BYTES, seconds: float = SECONDS):
        self.registry, self.settings, self.loader = registry, settings, ModelLoader(registry)
        self.memory_bytes, self.seconds = memory_bytes, seconds
        self._verdicts: dict[tuple, Verdict] = {}
        self._lock = threading.Lock()

    def load(self, record: dict):
        """The model of a record, loaded in this process only after a passing verdict for its hashes."""
        verdict = self.verify([record])[0]
        if not verdict.passed:
            raise DataError(verdict.why)
        return self.loader.load_record(record)

    def verify(self, records: list[dict]) -> list[Verdict]:
        """A verdict per record, in order: from memory when those hashes were verified before, else
        from one child for the batch (each alone again when the batch's child died)."""
        with self._lock:
            prepared = [self._prepare(record) for record in records]
            pending = [
                (key, group) for key, group, verdict in prepared if verdict is None and key not in self._verdicts
            ]
            if pending:
                for key, verdict in self._run(pending).items():
                    self._verdicts[key] = verdict
                    if not verdict.passed:
                        log.error("verification refused %s", verdict.why)
            return [verdict or self._verdicts[key] for key, _, verdict in prepared]

    def _prepare(self, record: dict) -> tuple[tuple, list[dict], Verdict | None]:
        """(key, the records the child needs, a verdict already reached here): the files of the version
        and its members are read and hashed in this process (pure Python), GridFS restoring a missing one."""
        try:
            group = [
                record,
                *(self.registry.record_for_run(m, record["run_id"]) for m in members_of(record["model_name"])),
            ]
            hashes = tuple(sha for member in group for sha in self.loader.verified_hashes(member))
        except DataError as error:
            return (label(record), ()), [record], Verdict(label(record), (), False, one_line(error, 400))
        return (label(record), hashes), group, None

    def _run(self, pending: list[tuple[tuple, list[dict]]]) -> dict[tuple, Verdict]:
        outcome = self._child([group for _, group in pending])
        if isinstance(outcome, str) and len(pending) > 1:  # the child died: find which version did it
            return {key: verdict for item in pending for key, verdict in self._run([item]).items()}
        verdicts = {}
        for index, (key, group) in enumerate(pending):
            why = outcome if isinstance(outcome, str) else outcome[index]
            if why:
                why = why if why.startswith(key[0]) else f"{key[0]}: {why}"
                why = why if why.endswith("refusing it") else f"{why}; refusing it"
            verdicts[key] = Verdict(key[0], key[1], not why, why or "")
        return verdicts

    def _child(self, groups: list[list[dict]]) -> list[str | None] | str:
        """Each group's failure (None when it passed), or why the child gave no answer."""
        request = {
            "groups": groups,
            "models_root": str(self.registry.models_root),
            "memory_bytes": self.memory_bytes,
            "seconds": self.seconds,
        }
        answer = HELPER.ask(request, canary_parquet(self.settings), self.seconds + HELPER_MARGIN)
        if (
            isinstance(answer, list)
            and len(answer) == len(groups)
            and all(a is None or isinstance(a, str) for a in answer)
        ):
            return answer
        if isinstance(answer, dict) and answer.get("timed_out"):
            return f"verification took over {self.seconds:g} s (load and canary prediction); stopped"
        if isinstance(answer, dict) and "exit" in answer:
            return f"its files crash the loader ({_exit_text(answer['exit'])})"
        return f"the verifier gave no usable answer ({str(answer)[:80]})"


class Helper:
    """A process of this module that forks one child per batch: the fork is from a process that runs
    nothing else, so it is cheap and safe, and whatever kills the child leaves the helper and its
    caller running. It is started once per process that verifies: forked from that process while it
    has a single thread (an Airflow task forked from a worker that preloaded the model libraries: at
    once, with them loaded), else a fresh interpreter that imports them (about 5 s). Requests go to
    it as JSON and the canary as parquet; answers come back as JSON."""

    def __init__(self):
        self._lock = threading.Lock()
        self._process: subprocess.Popen | ForkedHelper | None = None

    def start(self) -> None:
        """Start the helper now, unless one is running: call it before this process starts threads
        (a MongoDB client's, a thread pool's) to have it forked rather than imported afresh."""
        with self._lock:
            self._start()

    def _start(self) -> subprocess.Popen | ForkedHelper:
        if self._process is None or self._process.poll() is not None:
            self._process = ForkedHelper() if _single_threaded() else _fresh_helper()
        return self._process

    def ask(self, request: dict, canary: bytes, seconds: float):
        with self._lock:
            process = self._start()
            try:
                _send(process.stdin, json.dumps(request, default=str).encode())
                _send(process.stdin, canary)
                reply = _receive(process.stdout, seconds + HELPER_START_SECONDS)
            except (OSError, ValueError) as error:
                reply = None
                log.error("the verifier helper failed (%s); starting a new one", error)
            if reply is None:  # the helper died or hung: never reuse it
                process.kill()
                process.wait()
                self._process = None
                return {"error": "the verifier helper stopped answering"}
            return json.loads(reply)


def start_helper() -> None:
    """Start this process's verifier helper now (see :meth:`Helper.start`)."""
    HELPER.start()


def _single_threaded() -> bool:
    """Whether this process has one thread (Linux's /proc lists them; elsewhere: not known, so no)."""
    try:
        return len(os.listdir("/proc/self/task")) == 1
    except OSError:
        return False


def _fresh_helper() -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trading_ml.verify"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        close_fds=True,
        env={**os.environ, **ONE_THREAD},
    )


class ForkedHelper:
    """A helper forked from this single-threaded process, with what :class:`Helper` uses of a Popen:
    its request and answer pipes, poll, kill and wait. It keeps only those pipes and stderr open,
    takes the default signal handlers, and leaves without running this process's exit handlers."""

    def __init__(self):
        requests_read, requests_write = os.pipe()
        answers_read, answers_write = os.pipe()
        self.pid, self.returncode = os.fork(), None
        if self.pid == 0:
            _serve_forked(requests_read, answers_write)
        os.close(requests_read)
        os.close(answers_write)
        self.stdin, self.stdout = os.fdopen(requests_write, "wb"), os.fdopen(answers_read, "rb")

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def kill(self) -> None:
        if self.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)

    def wait(self) -> int:
        if self.returncode is None:
            self.returncode = os.waitstatus_to_exitcode(os.waitpid(self.pid, 0)[1])
        return self.returncode


def _serve_forked(requests_read: int, answers_write: int) -> None:
    """The forked helper's life: its two pipes and stderr kept, the loop served, then gone."""
    try:
        for number in (signal.SIGTERM, signal.SIGINT):
            signal.signal(number, signal.SIG_DFL)
        kept = sorted({2, requests_read, answers_write})
        for low, high in zip([-1, *kept], [*kept, os.sysconf("SC_OPEN_MAX")]):
            os.closerange(low + 1, high)
        os.open(os.devnull, os.O_RDONLY)  # 0; serve_helper points 1 at stderr
        os.environ.update(ONE_THREAD)
        serve_helper(os.fdopen(requests_read, "rb"), os.fdopen(answers_write, "wb"))
    finally:
        os._exit(0)


def _send(stream, payload: bytes) -> None:
    stream.write(struct.pack(">Q", len(payload)) + payload)
    stream.flush()


def _receive(stream, seconds: float | None = None) -> bytes | None:
    """One length-prefixed message, or None at the end of the stream (or past ``seconds``)."""
    if seconds is not None and not select.select([stream], [], [], seconds)[0]:
        return None
    header = stream.read(8)
    if len(header) < 8:
        return None
    payload = stream.read(struct.unpack(">Q", header)[0])
    return payload


def serve_helper(requests, answers) -> None:
    """The helper's loop: read a request, fork a child that verifies, answer with what it wrote or how it ended.
    ``answers`` must not be file descriptor 1: it becomes stderr, so whatever a library prints goes there."""
    os.dup2(2, 1)
    warnings.filterwarnings(
        "ignore", message=".*use of fork\\(\\) may lead to deadlocks", category=DeprecationWarning
    )  # ONE_THREAD
    for module in PRELOADED:
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    while (message := _receive(requests)) is not None and (canary := _receive(requests)) is not None:
        request = {**json.loads(message), "canary": pd.read_parquet(io.BytesIO(canary))}
        _send(answers, json.dumps(_verify_forked(request)).encode())


def _verify_forked(request: dict):
    """The child's answers (a list), or {"timed_out": True} / {"exit": code} when it gave none."""
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: verify, write the answers, leave without cleanup of the helper's state
        os.close(read_end)
        try:
            answers = _verify_in_child(
                request["groups"], request["models_root"], request["canary"], request["memory_bytes"]
            )
            with os.fdopen(write_end, "wb") as out:
                out.write(json.dumps(answers).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    received, deadline = b"", time.monotonic() + request["seconds"]
    with os.fdopen(read_end, "rb") as pipe:
        while (left := deadline - time.monotonic()) > 0 and select.select([pipe], [], [], left)[0]:
            chunk = os.read(pipe.fileno(), 1 << 16)
            if not chunk:
                break
            received += chunk
        timed_out = time.monotonic() >= deadline
    if timed_out:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if timed_out:
        return {"timed_out": True}
    code = os.waitstatus_to_exitcode(status)
    try:
        return json.loads(received) if code == 0 else {"exit": code}
    except ValueError:
        return {"exit": code}


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"the verifying process died of {signal.Signals(-code).name}"
        except ValueError:
            return f"the verifying process died of signal {-code}"
    return f"the verifying process exited with {code} without an answer"


def _verify_in_child(
    groups: list[list[dict]], models_root, canary: pd.DataFrame, memory_bytes: int
) -> list[str | None]:
    """In the child: limit memory, then load and check each group's first record."""
    _limit_memory(memory_bytes)
    warnings.simplefilter("ignore")  # e.g. scikit-learn's note that a forked child runs its forest on one core
    answers: list[str | None] = []
    for group in groups:
        try:
            model = ModelLoader(cast(ModelRegistry, RecordSet(group, models_root))).load_record(group[0])
            check_predictions(model, canary)
            answers.append(None)
        except MemoryError:
            answers.append(f"loading or predicting needed over {memory_bytes / 1024**3:g} GiB")
        except DataError as error:
            answers.append(one_line(error, 400))
        except Exception as error:  # whatever a model's own code raises on the canary: its failure, in one line
            answers.append(f"it failed to predict a canary panel ({type(error).__name__}: {one_line(error)})")
    return answers


def _limit_memory(extra: int) -> None:
    with open("/proc/self/statm") as statm:
        size = int(statm.read().split()[0]) * resource.getpagesize()
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = size + extra
    if hard != resource.RLIM_INFINITY:
        wanted = min(wanted, hard)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))


def check_predictions(model, canary: pd.DataFrame) -> None:
    """A DataError unless the model (and each member of a combination) predicts every canary row past
    the first half of each symbol's rows, with values in its task's range."""
    due = _due_rows(canary)
    for part in [*getattr(model, "members", []), model]:
        task = TASKS[task_of(part.name)]
        predicted = part.predict(canary)
        if (
            not isinstance(predicted, pd.DataFrame)
            or not set(task.predictions) <= set(predicted.columns)
            or len(predicted) != len(canary)
        ):
            raise DataError(
                f"{part.name} did not predict its task's columns {list(task.predictions)} for the canary panel"
            )
        problem = task.invalid(predicted[list(task.predictions)][due])
        if problem:
            raise DataError(f"{part.name} predicts {problem} on a canary panel")


def _due_rows(table: pd.DataFrame) -> np.ndarray:
    """Each symbol's newer half of rows: every model must predict them (an LSTM has its history there)."""
    symbols = table.index.get_level_values("symbol")
    position = pd.Series(1, index=table.index).groupby(symbols).cumcount().to_numpy()
    counts = pd.Series(symbols).map(pd.Series(symbols).value_counts()).to_numpy()
    return position >= counts // 2


_CANARIES: dict[tuple, bytes] = {}  # the canary as parquet, per the settings it depends on


def canary_parquet(settings) -> bytes:
    """The canary panel as parquet (what the helper receives), built once per process and settings."""
    key = (settings.features, settings.models.timeframe, tuple(settings.universe.items()))
    if key not in _CANARIES:
        buffer = io.BytesIO()
        canary_panel(settings).to_parquet(buffer)
        _CANARIES[key] = buffer.getvalue()
    return _CANARIES[key]


def canary_panel(settings) -> pd.DataFrame:
    """A small feature panel of a seeded synthetic market: the benchmark, the volatility index and a
    few equities of the universe, CANARY_ROWS bars past the warm-up before a fixed date."""
    from trading_ml.data.calendars import bars_before
    from trading_ml.data.synthetic import SyntheticMarket
    from trading_ml.features.build import build_timeframe, feature_panel

    options, timeframe = settings.features, settings.models.timeframe
    market_inputs = [options.benchmark, options.volatility_index]
    equities = [s for s in settings.symbols if s not in market_inputs and settings.instrument(s).kind == "equity"][
        :CANARY_EQUITIES
    ]
    symbols = [s for s in dict.fromkeys(market_inputs + equities) if s in settings.universe]
    end = pd.Timestamp("2024-01-02", tz="UTC")
    exchange = settings.instrument(options.benchmark).exchange
    start = bars_before(exchange, timeframe, end, options.warmup_bars + CANARY_ROWS) - pd.Timedelta(days=7)
    market = SyntheticMarket(seed=CANARY_SEED)
    instruments = {s: settings.instrument(s) for s in symbols}
    bars = {s: market.bars(instruments[s], timeframe, start, end) for s in symbols}
    panel, excluded = feature_panel(build_timeframe(bars, instruments, timeframe, options), instruments)
    if panel is None:
        raise DataError(
            f"no canary panel could be built from the synthetic market ({excluded}); check features and "
            "models.timeframe"
        )
    return panel


HELPER = Helper()

if __name__ == "__main__":
    serve_helper(sys.stdin.buffer, os.fdopen(os.dup(1), "wb"))
