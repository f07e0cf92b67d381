"""The LocalExecutor of ``make airflow``, with the pipeline's libraries imported before it forks its
workers: each task process is forked from a worker, so it starts with torch, xgboost, arch,
scikit-learn and the stages loaded instead of importing them again (about 4 s a training task).

    AIRFLOW__CORE__EXECUTOR=trading_ml_executor.PreloadedLocalExecutor   (scripts/airflow-standalone)
"""

from __future__ import annotations

from airflow.executors.local_executor import LocalExecutor

from trading_ml.drivers import preload_for_tasks


class PreloadedLocalExecutor(LocalExecutor):
    """LocalExecutor whose start imports the libraries first (only useful with the fork start
    method, Linux's default; with spawn the workers import nothing more than before)."""

    def start(self) -> None:
        if self.is_mp_using_fork:
            preload_for_tasks()
        super().start()
