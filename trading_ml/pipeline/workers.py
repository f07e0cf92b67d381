"""Work a stage spreads over worker processes: ingest's pairs (the CLI's), validate's pairs and
features' symbols, which are Python and pandas and use one core each, and at scale the CLI's
trainings (``trading_ml.pipeline.train.train_models``) and evaluate's tasks.

Workers are joblib's loky processes: they start fresh (no locks or client threads copied from the
stage's process, and unlike multiprocessing's ``spawn`` without importing the caller's main script
again), and they die with the stage's process (``PR_SET_PDEATHSIG``), so a stage killed with kill -9
leaves no worker writing after it; a worker writes its files atomically, as the stage does. Small
work (fewer than ``MIN_CALLS`` calls) and one core stay in the stage's process: starting workers
costs about two seconds.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from joblib.externals.loky import ProcessPoolExecutor

from trading_ml.models.threads import fit_threads

log = logging.getLogger(__name__)

MIN_CALLS = 64  # fewer calls than this (the plan's 26 symbols x 2 timeframes) run in the stage's process
# a run of this many symbols trains and evaluates its models in workers (a smaller one in the
# stage's process: a worker's start and imports would cost more than they save)
SPREAD_FROM_SYMBOLS = 64
PR_SET_PDEATHSIG = 1


class Workers:
    """``processes`` worker processes (default one per core of ``cores``; 0: the machine's), started
    on the first :meth:`map` that is worth them and stopped when the ``with`` block ends."""

    def __init__(self, cores: int, processes: int = 0):
        self.processes = processes or fit_threads(cores, 1)
        self._pool: ProcessPoolExecutor | None = None

    def map(self, function: Callable[..., Any], calls: Iterable[tuple], min_calls: int | None = None) -> Iterator[Any]:
        """``function(*call)`` for each call, results in order; in the workers when there are at least
        ``min_calls`` calls (default MIN_CALLS) and more than one process, or when ``min_calls`` is 1
        (always in a worker). A call's exception is raised here."""
        calls = list(calls)
        if not self.spreads(len(calls), min_calls):
            return (function(*call) for call in calls)
        if self._pool is None:
            log.info("starting %d worker processes", self.processes)
            self._pool = ProcessPoolExecutor(self.processes, initializer=die_with_parent, initargs=(os.getpid(),))
        chunk = max(1, len(calls) // (8 * self.processes))
        return self._pool.map(call_with, [function] * len(calls), calls, chunksize=chunk)

    def spreads(self, calls: int, min_calls: int | None = None) -> bool:
        """Whether :meth:`map` runs this many calls in the workers."""
        min_calls = MIN_CALLS if min_calls is None else min_calls
        return calls >= min_calls and (self.processes > 1 or min_calls == 1)

    def __enter__(self) -> Workers:
        return self

    def __exit__(self, error_type, *exc) -> None:
        self.close(kill=error_type is not None)  # after an error, the calls still queued are not worth finishing

    def close(self, kill: bool = False) -> None:
        """Stop the workers (their memory goes back to the system) once their calls are done, or at
        once with ``kill``; a later :meth:`map` starts new ones."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, kill_workers=kill)
            self._pool = None


_KEPT: dict[tuple[str, str], Any] = {}  # what this worker process keeps for the run it works on


def kept_for_run(what: str, run_id: str, make: Callable[[], Any]) -> Any:
    """``make()``, made once per run and kind (``what``) in this worker process and kept for its next
    calls of that run; a new run's replaces the old run's. Only for worker processes: the stage's own
    process would keep it after the stage."""
    key = (what, run_id)
    if key not in _KEPT:
        for old in [k for k in _KEPT if k[0] == what]:
            del _KEPT[old]
        _KEPT[key] = make()
    return _KEPT[key]


def call_with(function: Callable[..., Any], call: tuple) -> Any:
    return function(*call)


def die_with_parent(parent: int) -> None:
    """Ask Linux to kill this worker when ``parent`` (the stage's process) dies; exit now if it has."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):  # not Linux: a worker of a killed stage finishes its call
        log.debug("no parent-death signal on this system")
    if os.getppid() != parent:  # the parent died before the signal was asked for
        os._exit(1)
