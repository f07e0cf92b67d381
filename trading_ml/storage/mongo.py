"""MongoDB through pymongo: database `trading_system`, unique indexes on every natural key.

Every driver error becomes a one-line StoreError (the URI's password masked), so a stage can fall
back to TinyDB or stop with a clear message; no pymongo traceback reaches a user.
"""

from __future__ import annotations

from contextlib import contextmanager

import gridfs
import pandas as pd
from pymongo import ASCENDING, MongoClient, ReplaceOne, UpdateOne
from pymongo.errors import BulkWriteError, ConfigurationError, DuplicateKeyError, PyMongoError

from trading_ml.errors import ConfigError, ConflictError, StoreError
from trading_ml.storage.base import (
    NATURAL_KEYS,
    OWNERS,
    STAMP,
    documents_to_bars,
    mask_uri,
    natural_key,
    now_stamp,
    partitions,
    replaces,
    stamped,
)

BATCH_SIZE = 5000
DUPLICATE_KEY = 11000


def brief(error: Exception) -> str:
    """A driver error in one short line (server selection errors carry a whole topology)."""
    text = str(error).splitlines()[0] if str(error) else ""
    text = text.split(", Timeout:")[0].split(" (configured timeouts")[0]
    return f"{type(error).__name__}: {text[:160]}"


class MongoStore:
    kind = "mongodb"

    def __init__(self, client: MongoClient, database: str, uri: str = ""):
        self.client = client
        self.database = client[database]
        self.uri = mask_uri(uri)
        self._indexed: set[str] = set()

    @classmethod
    def connect(cls, uri: str, database: str, timeout_ms: int = 2000) -> MongoStore:
        """Connect and ping; raises StoreError (with the URI masked) when no server answers.

        A database named in the URI (``mongodb://host/NAME``) wins over ``database``.
        """
        try:
            client: MongoClient = MongoClient(
                uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, tz_aware=True
            )
            database = client.get_default_database(database).name
        except (ConfigurationError, ValueError) as error:
            raise ConfigError(
                f"MongoDB URI {mask_uri(uri)} is not valid ({brief(error)}); write it as "
                "mongodb://HOST:PORT/DATABASE, with USER:PASSWORD@ before HOST when it needs a login"
            ) from error
        try:
            client.admin.command("ping")
        except PyMongoError as error:
            client.close()
            raise StoreError(f"MongoDB at {mask_uri(uri)} did not answer: {type(error).__name__}") from error
        return cls(client, database, uri)

    @contextmanager
    def _driver_errors(self, action: str):
        try:
            yield
        except PyMongoError as error:
            raise StoreError(f"MongoDB at {self.uri}: {action} failed: {brief(error)}") from error

    def _collection(self, name: str):
        collection = self.database[name]
        if name not in self._indexed and name in NATURAL_KEYS:
            keys = [(field, ASCENDING) for field in NATURAL_KEYS[name]]
            with self._driver_errors(f"creating the index of {name}"):
                collection.create_index(keys, unique=True, name="natural_key")
            self._indexed.add(name)
        return collection

    def _key_filter(self, collection: str, document: dict) -> dict:
        """The natural key, plus the owner: an upsert then never matches another run's document,
        and the unique index refuses to insert a second one beside it."""
        match = dict(zip(NATURAL_KEYS[collection], natural_key(collection, document)))
        owner = OWNERS.get(collection)
        return {**match, owner: document[owner]} if owner else match

    def _bulk(self, collection: str, operations: list) -> tuple[int, int]:
        """(written, refused as duplicate keys) for a batch of upserts."""
        target = self._collection(collection)
        with self._driver_errors(f"writing {collection}"):
            try:
                result = target.bulk_write(operations, ordered=False)
            except BulkWriteError as error:
                errors = error.details.get("writeErrors", [])
                if any(e.get("code") != DUPLICATE_KEY for e in errors):
                    raise
                return error.details.get("nUpserted", 0) + error.details.get("nModified", 0), len(errors)
        return result.upserted_count + result.modified_count, 0

    def upsert_many(self, collection: str, documents: list[dict]) -> int:
        for start in range(0, len(documents), BATCH_SIZE):
            batch = stamped(documents[start : start + BATCH_SIZE])
            operations = [UpdateOne(self._key_filter(collection, d), {"$set": d}, upsert=True) for d in batch]
            _, refused = self._bulk(collection, operations)
            if refused:
                raise ConflictError(
                    f"{collection}: {refused} document(s) have the natural key of another run's document; nothing of "
                    "theirs was replaced"
                )
        return len(documents)

    def upsert_newer(self, collection: str, documents: list[dict]) -> int:
        """Compares with the stored copies (read a partition at a time through the key's index), then
        inserts what is missing ($setOnInsert, so a copy written meanwhile is kept) and replaces an
        older copy only if it is still the one read (its stamp in the filter)."""
        written = 0
        for match, group in partitions(collection, documents):
            stored = {natural_key(collection, d): d for d in self.find(collection, match)}
            operations: list[UpdateOne | ReplaceOne] = []
            for document in group:
                old = stored.get(natural_key(collection, document))
                if not replaces(collection, document, old):
                    continue
                key = dict(zip(NATURAL_KEYS[collection], natural_key(collection, document)))
                if old is None:
                    operations.append(UpdateOne(key, {"$setOnInsert": document}, upsert=True))
                else:
                    operations.append(ReplaceOne({**key, STAMP: old.get(STAMP, {"$exists": False})}, document))
            for start in range(0, len(operations), BATCH_SIZE):
                written += self._bulk(collection, operations[start : start + BATCH_SIZE])[0]
        return written

    def insert_new(self, collection: str, document: dict) -> bool:
        target = self._collection(collection)
        with self._driver_errors(f"inserting into {collection}"):
            try:
                target.insert_one(dict(document))  # the unique natural-key index decides
            except DuplicateKeyError:
                return False
        return True

    def update_fields(self, collection: str, match: dict, fields: dict) -> bool:
        with self._driver_errors(f"updating {collection}"):
            result = self._collection(collection).update_one(match, {"$set": {**fields, STAMP: now_stamp()}})
        return result.matched_count == 1

    def replace_if(self, collection: str, document: dict, revision: int | None) -> bool:
        document = stamped([document])[0]
        if revision is None:
            return self.insert_new(collection, document)
        match = {**dict(zip(NATURAL_KEYS[collection], natural_key(collection, document))), "revision": revision}
        with self._driver_errors(f"replacing in {collection}"):
            return self._collection(collection).replace_one(match, document).matched_count == 1

    def find(self, collection: str, match: dict | None = None) -> list[dict]:
        with self._driver_errors(f"reading {collection}"):
            return list(self._collection(collection).find(match or {}, {"_id": False}))

    def count(self, collection: str, match: dict | None = None) -> int:
        with self._driver_errors(f"counting {collection}"):
            return self._collection(collection).count_documents(match or {})

    def read_bars(self, symbol: str, timeframe: str) -> pd.DataFrame:
        with self._driver_errors(f"reading {symbol} {timeframe} bars"):
            cursor = (
                self._collection("market_data")
                .find({"symbol": symbol, "timeframe": timeframe}, {"_id": False})
                .sort("timestamp", ASCENDING)
            )
            return documents_to_bars(cursor)

    def put_file(self, name: str, payload: bytes, metadata: dict) -> None:
        """Keep a copy of a model file in GridFS under its name (replacing an earlier copy)."""
        files = gridfs.GridFS(self.database)
        with self._driver_errors(f"writing {name} to GridFS"):
            for old in files.find({"filename": name}):
                files.delete(old._id)
            files.put(payload, filename=name, metadata=metadata)

    def get_file(self, name: str) -> bytes | None:
        with self._driver_errors(f"reading {name} from GridFS"):
            latest = gridfs.GridFS(self.database).find_one({"filename": name}, sort=[("uploadDate", -1)])
            return latest.read() if latest else None

    def close(self) -> None:
        self.client.close()
