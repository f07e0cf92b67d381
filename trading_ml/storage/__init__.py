"""Where documents live: MongoDB when it answers, else the TinyDB fallback."""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass

from trading_ml.config import Settings
from trading_ml.errors import StoreError
from trading_ml.storage.base import NATURAL_KEYS, Store, bars_to_documents, mask_uri
from trading_ml.storage.mongo import MongoStore
from trading_ml.storage.tiny import TinyStore

log = logging.getLogger(__name__)

__all__ = ["Store", "StoreChoice", "MongoStore", "TinyStore", "open_store", "sync_to_mongo", "bars_to_documents"]


@dataclass(frozen=True)
class StoreChoice:
    """Which backend a stage used and why; goes into the run manifest."""

    kind: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


def open_store(settings: Settings, mongo_uri: str | None = None) -> tuple[Store, StoreChoice]:
    """MongoStore when a URI is set and a ping answers in time, else TinyStore with a warning."""
    uri = mongo_uri or settings.storage.mongo_uri
    fallback = settings.storage.fallback_dir
    if not uri:
        return TinyStore(fallback), StoreChoice("tinydb", f"no MongoDB URI configured; using {fallback}")
    try:
        store = MongoStore.connect(uri, settings.storage.database, settings.storage.ping_timeout_ms)
    except StoreError as error:
        log.warning("%s; falling back to TinyDB at %s", error, fallback)
        return TinyStore(fallback), StoreChoice("tinydb", f"{error}; fell back to {fallback}")
    return store, StoreChoice("mongodb", f"MongoDB at {mask_uri(uri)} answered")


def sync_to_mongo(settings: Settings, mongo_uri: str | None = None) -> dict[str, dict[str, int]]:
    """Copy every TinyDB fallback document into MongoDB by natural key: nothing lost, none twice."""
    uri = mongo_uri or settings.storage.mongo_uri
    if not uri:
        raise StoreError("sync needs a MongoDB URI: set TRADING_ML_MONGO_URI or storage.mongo_uri")
    tiny = TinyStore(settings.storage.fallback_dir)
    mongo = MongoStore.connect(uri, settings.storage.database, settings.storage.ping_timeout_ms)
    summary = {}
    try:
        for collection in NATURAL_KEYS:
            documents = list(tiny.iter_documents(collection))
            mongo.upsert_many(collection, documents)
            summary[collection] = {"copied": len(documents), "in_mongodb": mongo.count(collection)}
    finally:
        mongo.close()
    return summary
