"""How many threads one model fit may use, and the limits that hold it to them.

Trainings that run at once (Airflow starts every chosen model's task together) share the cores: each
gets ``cores // sharing`` threads (at least one) for XGBoost, the random forest, torch and the BLAS
and OpenMP pools numpy, scipy and arch call into, instead of every library taking every core.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager


def machine_cores() -> int:
    """The cores this process may run on (its CPU affinity, which containers and taskset narrow)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def fit_threads(cores: int, sharing: int) -> int:
    """Threads for one fit when ``sharing`` fits run at once on ``cores`` cores (0: the machine's)."""
    return max(1, (cores or machine_cores()) // max(1, sharing))


@contextmanager
def limited_threads(threads: int) -> Iterator[int]:
    """Every BLAS and OpenMP pool loaded at entry held to ``threads`` (threadpoolctl), and torch's
    when torch is loaded; restored after. A library loaded inside the block is not reached: the
    models pass ``threads`` to XGBoost, the forest and torch themselves (``Dataset.threads``)."""
    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch else None
    with threadpool_limits(limits=threads):
        try:
            if torch:
                torch.set_num_threads(threads)
            yield threads
        finally:
            if torch and before:
                torch.set_num_threads(before)
