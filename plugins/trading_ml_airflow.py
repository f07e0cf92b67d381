"""What the DAG and the plugin share: MongoDB's URI from the Airflow connection, and the schedule's
timetable (Airflow puts this folder on sys.path for the scheduler, workers, api-server and
dag-processor; the plugin registers the timetable, which a custom one needs to be deserialized)."""

from __future__ import annotations

from urllib.parse import urlencode

import pendulum
from airflow.sdk.exceptions import AirflowNotFoundException
from airflow.timetables.interval import CronDataIntervalTimetable

from trading_ml.drivers import load_settings


def mongo_uri(conn_id: str | None = None) -> str | None:
    """The URI of the connection (default: config's ``airflow.mongo_conn_id``) through the mongo
    provider's hook, with its extras as options; None when it is not set, and the library then uses
    TinyDB, as it does when the server does not answer."""
    from airflow.providers.mongo.hooks.mongo import MongoHook

    try:
        hook = MongoHook(mongo_conn_id=conn_id or load_settings().airflow.mongo_conn_id)
    except AirflowNotFoundException:
        return None
    options = {key: str(value).lower() if isinstance(value, bool) else value for key, value in hook.extras.items()}
    return hook.uri + (f"?{urlencode(options)}" if options else "")


class ForwardOnlyCron(CronDataIntervalTimetable):
    """A cron schedule of data intervals (run at each interval's end) that, without catch-up, only
    runs intervals ending after now: unpausing (the trigger form's "Unpause on trigger" does it)
    never starts the interval that ended while the DAG was paused, on the whole universe, which
    nobody asked for. Catch-up and backfills are Airflow's, unchanged."""

    def _skip_to_latest(self, earliest):
        running = self._align_to_prev(pendulum.now("UTC"))  # the start of the interval now is in
        return running if earliest is None else max(running, self._align_to_next(earliest))
