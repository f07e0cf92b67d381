"""A version checked in a child process before anything serves, promotes or deploys it.

Native loaders (XGBoost's JSON parser, torch, skops) can abort or crash on a malformed file whose
sha256 matches its record, and a model that loads can still predict NaN or nonsense. So a version is
verified in a child process (forked from a server that has the model libraries imported, with limits
on its memory and time): every file's sha256 (a combination's members too), the load, and a
prediction on a small canary panel (a seeded synthetic market through the same feature code as
training) that must be finite and in its task's range on the rows the model can predict. Whatever
the child does (abort, segfault, run out of memory or time) is one line in the verdict.

A verdict holds for exactly the file hashes it was made on; the process that asked loads the version
only after a passing verdict for those hashes, from bytes that match them.
"""

from __future__ import annotations

import logging
import multiprocessing
import resource
import signal
import threading
from multiprocessing.connection import wait
from dataclasses import dataclass

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
PRELOADED = ("trading_ml.verify", "torch", "xgboost", "arch", "sklearn.ensemble", "skops.io")
_context_lock = threading.Lock()
_context = None


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
        self.models_root, self.store = models_root, _NoFiles()
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
        self._canary: pd.DataFrame | None = None

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
            pending = [(key, group) for key, group, verdict in prepared if verdict is None and key not in self._verdicts]
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
            group = [record, *(self.registry.record_for_run(m, record["run_id"]) for m in members_of(record["model_name"]))]
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
        context = forkserver()
        receiver, sender = context.Pipe(duplex=False)
        process = context.Process(target=_verify_in_child, args=(groups, self.registry.models_root, self.canary(), self.memory_bytes, sender),
                                  daemon=True)
        _start(process)
        sender.close()  # the child's end: only the child writes
        try:
            answer, timed_out = _answer_of(receiver, process, self.seconds)
        finally:
            if process.is_alive():
                process.kill()
            process.join()
            receiver.close()
        if timed_out:
            return f"verification took over {self.seconds:g} s (load and canary prediction); stopped"
        if answer is None:
            return f"its files crash the loader ({_exit_text(process.exitcode)})"
        return answer

    def canary(self) -> pd.DataFrame:
        if self._canary is None:
            self._canary = canary_panel(self.settings)
        return self._canary


def forkserver():
    """The multiprocessing context whose server has the model libraries imported (started once)."""
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(list(PRELOADED))
            _context = context
    return _context


def _start(process) -> None:
    """Start the child, also from a daemonic process (Airflow's LocalExecutor runs tasks in them, and
    multiprocessing refuses them children): the child is joined or killed before its parent goes on."""
    config = multiprocessing.current_process()._config
    daemonic = config.pop("daemon", None)
    try:
        process.start()
    finally:
        if daemonic is not None:
            config["daemon"] = daemonic


def _answer_of(receiver, process, seconds: float) -> tuple[object, bool]:
    """(the child's answer or None when it died without one, whether it ran out of time)."""
    ready = wait([receiver, process.sentinel], timeout=seconds)
    if not ready:
        return None, True
    if receiver.poll(0.2):  # an answer, possibly sent just before the child exited, or the end of a dead child's pipe
        try:
            return receiver.recv(), False
        except (EOFError, OSError):
            pass
    process.join(5)  # the exit status, for the verdict
    return None, False


def _exit_text(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"the verifying process died of {signal.Signals(-code).name}"
        except ValueError:
            return f"the verifying process died of signal {-code}"
    return f"the verifying process exited with {code} without an answer"


def _verify_in_child(groups: list[list[dict]], models_root, canary: pd.DataFrame, memory_bytes: int, sender) -> None:
    """In the child: limit memory, then load and check each group's first record."""
    _limit_memory(memory_bytes)
    answers = []
    for group in groups:
        try:
            model = ModelLoader(RecordSet(group, models_root)).load_record(group[0])
            check_predictions(model, canary)
            answers.append(None)
        except MemoryError:
            answers.append(f"loading or predicting needed over {memory_bytes / 1024**3:g} GiB")
        except DataError as error:
            answers.append(one_line(error, 400))
        except Exception as error:  # whatever a model's own code raises on the canary: its failure, in one line
            answers.append(f"it failed to predict a canary panel ({type(error).__name__}: {one_line(error)})")
    sender.send(answers)
    sender.close()


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
    for part in [*getattr(model, "members", []), model]:
        task = TASKS[task_of(part.name)]
        predicted = part.predict(canary)
        if not isinstance(predicted, pd.DataFrame) or not set(task.predictions) <= set(predicted.columns) or len(predicted) != len(canary):
            raise DataError(f"{part.name} did not predict its task's columns {list(task.predictions)} for the canary panel")
        due = _due_rows(canary)
        problem = task.invalid(predicted[list(task.predictions)][due])
        if problem:
            raise DataError(f"{part.name} predicts {problem} on a canary panel")


def _due_rows(table: pd.DataFrame) -> np.ndarray:
    """Each symbol's newer half of rows: every model must predict them (an LSTM has its history there)."""
    symbols = table.index.get_level_values("symbol")
    position = pd.Series(1, index=table.index).groupby(symbols).cumcount().to_numpy()
    counts = pd.Series(symbols).map(pd.Series(symbols).value_counts()).to_numpy()
    return position >= counts // 2


def canary_panel(settings) -> pd.DataFrame:
    """A small feature panel of a seeded synthetic market: the benchmark, the volatility index and a
    few equities of the universe, CANARY_ROWS bars past the warm-up before a fixed date."""
    from trading_ml.data.calendars import bars_before
    from trading_ml.data.synthetic import SyntheticMarket
    from trading_ml.features.build import build_timeframe, feature_panel

    options, timeframe = settings.features, settings.models.timeframe
    market_inputs = [options.benchmark, options.volatility_index]
    equities = [s for s in settings.symbols if s not in market_inputs and settings.instrument(s).kind == "equity"][:CANARY_EQUITIES]
    symbols = [s for s in dict.fromkeys(market_inputs + equities) if s in settings.universe]
    end = pd.Timestamp("2024-01-02", tz="UTC")
    exchange = settings.instrument(options.benchmark).exchange
    start = bars_before(exchange, timeframe, end, options.warmup_bars + CANARY_ROWS) - pd.Timedelta(days=7)
    market = SyntheticMarket(seed=CANARY_SEED)
    instruments = {s: settings.instrument(s) for s in symbols}
    bars = {s: market.bars(instruments[s], timeframe, start, end) for s in symbols}
    panel, excluded = feature_panel(build_timeframe(bars, instruments, timeframe, options), instruments)
    if panel is None:
        raise DataError(f"no canary panel could be built from the synthetic market ({excluded}); check features and models.timeframe")
    return panel
