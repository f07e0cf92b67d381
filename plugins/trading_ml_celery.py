"""The Celery workers' configuration (``[celery] celery_config_options``, set by docker-compose.yaml):
Airflow's default, with the pipeline's libraries imported in a worker's main process before Celery
forks its pool. Each task is forked from a pool process, so it starts with torch, xgboost, arch,
scikit-learn and the stages loaded, as under ``make airflow``'s PreloadedLocalExecutor.

    AIRFLOW__CELERY__CELERY_CONFIG_OPTIONS=trading_ml_celery.CELERY_CONFIG
"""

from __future__ import annotations

from trading_ml.drivers import preload_for_tasks


def __getattr__(name: str):
    """CELERY_CONFIG, Airflow's default, read only when Celery asks (Airflow imports every file of
    plugins/ in every service, also where the celery extra is not installed)."""
    if name == "CELERY_CONFIG":
        from airflow.providers.celery.executors.default_celery import DEFAULT_CELERY_CONFIG

        return DEFAULT_CELERY_CONFIG
    raise AttributeError(name)


def preload(**_signal) -> None:
    """Celery's worker_init: in the worker's main process, before its pool processes are forked."""
    preload_for_tasks()


try:
    from celery.signals import worker_init
except ImportError:
    pass
else:
    worker_init.connect(preload, weak=False, dispatch_uid="trading_ml_preload")
