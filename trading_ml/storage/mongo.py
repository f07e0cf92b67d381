"""MongoDB through pymongo: database `trading_system`, unique indexes on every natural key."""

from __future__ import annotations

from collections.abc import Iterator

import gridfs
import pandas as pd
from pymongo import ASCENDING, MongoClient, UpdateOne
from pymongo.errors import DuplicateKeyError, PyMongoError

from trading_ml.errors import StoreError
from trading_ml.storage.base import NATURAL_KEYS, documents_to_bars, mask_uri, natural_key

BATCH_SIZE = 5000


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
        client = MongoClient(
            uri, serverSelectionTimeoutMS=timeout_ms, connectTimeoutMS=timeout_ms, tz_aware=True
        )
        database = client.get_default_database(database).name
        try:
            client.admin.command("ping")
        except PyMongoError as error:
            client.close()
            raise StoreError(f"MongoDB at {mask_uri(uri)} did not answer: {type(error).__name__}") from error
        return cls(client, database, uri)

    def _collection(self, name: str):
        collection = self.database[name]
        if name not in self._indexed and name in NATURAL_KEYS:
            keys = [(field, ASCENDING) for field in NATURAL_KEYS[name]]
            collection.create_index(keys, unique=True, name="natural_key")
            self._indexed.add(name)
        return collection

    def upsert_many(self, collection: str, documents: list[dict]) -> int:
        target = self._collection(collection)
        for start in range(0, len(documents), BATCH_SIZE):
            batch = documents[start : start + BATCH_SIZE]
            operations = [
                UpdateOne(dict(zip(NATURAL_KEYS[collection], natural_key(collection, d))), {"$set": d}, upsert=True)
                for d in batch
            ]
            try:
                target.bulk_write(operations, ordered=False)
            except PyMongoError as error:
                raise StoreError(f"writing {collection} to MongoDB at {self.uri} failed: {error}") from error
        return len(documents)

    def insert_new(self, collection: str, document: dict) -> bool:
        try:
            self._collection(collection).insert_one(dict(document))  # the unique natural-key index decides
        except DuplicateKeyError:
            return False
        except PyMongoError as error:
            raise StoreError(f"MongoDB insert into {collection} failed: {type(error).__name__}") from error
        return True

    def find(self, collection: str, match: dict | None = None) -> list[dict]:
        return list(self._collection(collection).find(match or {}, {"_id": False}))

    def count(self, collection: str, match: dict | None = None) -> int:
        return self._collection(collection).count_documents(match or {})

    def iter_documents(self, collection: str) -> Iterator[dict]:
        return self._collection(collection).find({}, {"_id": False})

    def read_bars(self, symbol: str, timeframe: str) -> pd.DataFrame:
        cursor = self._collection("market_data").find(
            {"symbol": symbol, "timeframe": timeframe}, {"_id": False}
        ).sort("timestamp", ASCENDING)
        return documents_to_bars(cursor)

    def put_file(self, name: str, payload: bytes, metadata: dict) -> None:
        """Keep a copy of a model file in GridFS under its name (replacing an earlier copy)."""
        files = gridfs.GridFS(self.database)
        try:
            for old in files.find({"filename": name}):
                files.delete(old._id)
            files.put(payload, filename=name, metadata=metadata)
        except PyMongoError as error:
            raise StoreError(f"writing {name} to GridFS at {self.uri} failed: {error}") from error

    def get_file(self, name: str) -> bytes | None:
        latest = gridfs.GridFS(self.database).find_one({"filename": name}, sort=[("uploadDate", -1)])
        return latest.read() if latest else None

    def close(self) -> None:
        self.client.close()
