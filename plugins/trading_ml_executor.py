"""The LocalExecutor of ``make airflow``, with the pipeline's libraries imported before it forks its
workers: each task process is forked from a worker, so it starts with torch, xgboost, arch,
scikit-learn and the stages loaded instead of importing them again (about 4 s a training task).
Each worker runs in a session of its own: where Linux shares the cores between sessions, two
parallel trainings then get a share each instead of splitting the scheduler's.

    AIRFLOW__CORE__EXECUTOR=trading_ml_executor.PreloadedLocalExecutor   (scripts/airflow-standalone)
"""

from __future__ import annotations

import multiprocessing
import os

from airflow.executors.local_executor import LocalExecutor, _run_worker

from trading_ml.drivers import own_scheduling_group, preload_for_tasks


def run_worker_in_own_session(parent: int, **worker) -> None:
    """Airflow's worker loop, in a session of its own that ends with ``parent`` (the scheduler)."""
    own_scheduling_group(parent)
    _run_worker(**worker)


class PreloadedLocalExecutor(LocalExecutor):
    """LocalExecutor whose start imports the libraries first (only useful with the fork start
    method, Linux's default; with spawn the workers import nothing more than before), and whose
    workers each run in a session of their own."""

    def start(self) -> None:
        if self.is_mp_using_fork:
            preload_for_tasks()
        super().start()

    def _spawn_worker(self) -> None:
        """LocalExecutor._spawn_worker (Airflow 3.x) with the worker's loop in its own session."""
        worker = multiprocessing.Process(
            target=run_worker_in_own_session,
            args=(os.getpid(),),
            kwargs={
                "logger_name": self.log.name,
                "input": self.activity_queue,
                "output": self.result_queue,
                "unread_messages": self._unread_messages,
                "team_conf": self.conf,
            },
        )
        worker.start()
        assert worker.pid is not None  # started
        self.workers[worker.pid] = worker
