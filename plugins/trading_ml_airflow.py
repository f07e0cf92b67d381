"""What the DAG and the plugin share: MongoDB's URI from the Airflow connection (Airflow puts this
folder on sys.path for the scheduler, workers, api-server and dag-processor)."""

from __future__ import annotations

from urllib.parse import urlencode

from airflow.sdk.exceptions import AirflowNotFoundException

from trading_ml.config_file import load_settings


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
