"""Where documents live: MongoDB when it answers, else the TinyDB fallback."""

from __future__ import annotations

import logging

from trading_ml.config import Settings
from trading_ml.errors import StoreError
from trading_ml.storage.base import Store, StoreChoice, bars_to_documents, mask_uri
from trading_ml.storage.fallback import FallbackStore
from trading_ml.storage.mongo import MongoStore
from trading_ml.storage.tiny import TinyStore

log = logging.getLogger(__name__)

__all__ = [
    "Store",
    "StoreChoice",
    "FallbackStore",
    "MongoStore",
    "TinyStore",
    "open_store",
    "open_stage_store",
    "bars_to_documents",
]


def open_store(settings: Settings, mongo_uri: str | None = None, fall_back: bool = True) -> tuple[Store, StoreChoice]:
    """MongoStore when a URI is set and a ping answers in time, else TinyStore with a warning. With
    ``fall_back=False`` (reading a registry or bars that live in MongoDB) a MongoDB that does not
    answer is a StoreError: retry later, never an empty TinyDB."""
    uri = mongo_uri or settings.storage.mongo_uri
    fallback = settings.storage.fallback_dir
    if not uri:
        return TinyStore(fallback), StoreChoice("tinydb", f"no MongoDB URI configured; using {fallback}")
    try:
        store = MongoStore.connect(uri, settings.storage.database, settings.storage.ping_timeout_ms)
    except StoreError as error:
        if not fall_back:
            raise StoreError(
                f"{error}; the registry and the stored bars live there: start it (or fix the URI) and retry"
            ) from error
        log.warning("%s; falling back to TinyDB at %s", error, fallback)
        return TinyStore(fallback), StoreChoice("tinydb", f"{error}; fell back to {fallback}")
    return store, StoreChoice("mongodb", f"MongoDB at {mask_uri(uri)} answered")


def open_stage_store(settings: Settings, mongo_uri: str | None = None) -> FallbackStore:
    """The store a stage works with: :func:`open_store`, falling back to TinyDB if MongoDB fails later."""
    store, choice = open_store(settings, mongo_uri)
    stage_store = FallbackStore(store, choice, settings.storage.fallback_dir)
    stage_store.fell_back = choice.kind == "tinydb" and bool(
        mongo_uri or settings.storage.mongo_uri
    )  # MongoDB did not answer the ping
    return stage_store
