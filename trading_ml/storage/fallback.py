"""The store a stage works with: MongoDB while it answers, the TinyDB fallback from its first failure.

This is the one place that handles a store fault: every operation a stage makes (index creation,
reads, counts, writes, version claims, GridFS) goes through :class:`FallbackStore`. When MongoDB
fails, the operation is repeated on TinyDB and the rest of the stage (and of a CLI run) stays there;
``choice`` says so, and `trading-ml sync` copies it back later. What TinyDB then lacks (a model this
run registered in MongoDB) makes the stage stop with a one-line StoreError that says to re-run.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pandas as pd

from trading_ml.errors import StoreError
from trading_ml.storage.base import Store, StoreChoice
from trading_ml.storage.tiny import TinyStore

log = logging.getLogger(__name__)


class FallbackStore:
    def __init__(self, store: Store, choice: StoreChoice, fallback_dir: Path):
        self.active, self.choice, self.fallback_dir = store, choice, Path(fallback_dir)
        self.fell_back = False  # MongoDB failed (at the stage's start or during it) and TinyDB took over

    @property
    def kind(self) -> str:
        return self.active.kind

    def _call(self, operation: str, *args):
        try:
            return getattr(self.active, operation)(*args)
        except StoreError as error:
            if self.active.kind == "tinydb":
                raise
            self._fall_back(error)
            return getattr(self.active, operation)(*args)

    def _fall_back(self, error: StoreError) -> None:
        log.warning(
            "%s; continuing on TinyDB at %s (`trading-ml sync` copies it to MongoDB later)", error, self.fallback_dir
        )
        self.active.close()
        self.active = TinyStore(self.fallback_dir)
        self.choice = StoreChoice("tinydb", f"{error}; fell back to TinyDB mid-run")
        self.fell_back = True

    def upsert_many(self, collection: str, documents: list[dict]) -> int:
        return self._call("upsert_many", collection, documents)

    def upsert_newer(self, collection: str, documents: list[dict]) -> int:
        return self._call("upsert_newer", collection, documents)

    def insert_new(self, collection: str, document: dict) -> bool:
        return self._call("insert_new", collection, document)

    def update_fields(self, collection: str, match: dict, fields: dict) -> bool:
        return self._call("update_fields", collection, match, fields)

    def replace_if(self, collection: str, document: dict, revision: int | None) -> bool:
        return self._call("replace_if", collection, document, revision)

    def find(self, collection: str, match: dict | None = None) -> list[dict]:
        return self._call("find", collection, match)

    def count(self, collection: str, match: dict | None = None) -> int:
        return self._call("count", collection, match)

    def read_bars(self, symbol: str, timeframe: str) -> pd.DataFrame:
        return self._call("read_bars", symbol, timeframe)

    def put_file(self, name: str, payload: bytes, metadata: dict) -> None:
        self._call("put_file", name, payload, metadata)

    def get_file(self, name: str) -> bytes | None:
        return self._call("get_file", name)

    def missing(self, what: str) -> StoreError | None:
        """Why ``what`` may be missing here: MongoDB failed and TinyDB lacks it."""
        if not self.fell_back:
            return None
        return StoreError(
            f"{what} is not in the TinyDB fallback: {self.choice.reason.split('; fell back')[0]}; "
            "it is in MongoDB: re-run this stage when MongoDB answers"
        )

    def close(self) -> None:
        self.active.close()
