"""TinyDB, the embedded fallback: one JSON file per collection under data/fallback/.

TinyDB's own upsert scans the table on every call, so writes merge by natural key in memory and
write the file once. Each write holds an exclusive file lock (parallel Airflow tasks share the
files) and lands through a temp file and rename, so a crash never leaves half a file.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from tinydb import TinyDB
from tinydb.storages import Storage

from trading_ml.io import atomic_write_bytes
from trading_ml.storage.base import NATURAL_KEYS, documents_to_bars


def _encode(value):
    if isinstance(value, dt.datetime):
        return {"$date": value.isoformat()}
    if isinstance(value, dict):
        return {k: _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_encode(v) for v in value]
    return value


def _decode(value):
    if isinstance(value, dict):
        if set(value) == {"$date"}:
            return dt.datetime.fromisoformat(value["$date"])
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


def _stored_key(collection: str, encoded: dict) -> tuple:
    """The natural key of an encoded document (dates stay in their ISO form, which is hashable)."""
    values = (encoded[field] for field in NATURAL_KEYS[collection])
    return tuple(v["$date"] if isinstance(v, dict) else v for v in values)


class AtomicJSONStorage(Storage):
    """TinyDB storage that writes through a temp file and os.replace."""

    def __init__(self, path: str):
        self.path = Path(path)

    def read(self):
        if not self.path.exists() or self.path.stat().st_size == 0:
            return None
        with self.path.open(encoding="utf-8") as handle:
            return json.load(handle)

    def write(self, data) -> None:
        # json.dumps (not dump) uses the C encoder
        atomic_write_bytes(self.path, json.dumps(data, separators=(",", ":")).encode())

    def close(self) -> None:
        pass


class TinyStore:
    kind = "tinydb"

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, collection: str) -> Path:
        return self.directory / f"{collection}.json"

    @contextmanager
    def _locked(self, collection: str):
        """An exclusive lock for a whole read-modify-write: parallel Airflow tasks share the files."""
        lock_path = self.directory / f".{collection}.lock"
        with lock_path.open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    @contextmanager
    def _table(self, collection: str):
        with self._locked(collection):
            database = TinyDB(str(self.path(collection)), storage=AtomicJSONStorage)
            try:
                yield database.table(collection)
            finally:
                database.close()

    def upsert_many(self, collection: str, documents: list[dict]) -> int:
        """Merge by natural key in memory and write the file once (TinyDB's upsert scans per call).

        Works on TinyDB's file format ({table: {doc_id: document}}) directly, so the cost is one
        parse and one write of the file, not one Document object per stored row.
        """
        if not documents:
            return 0
        with self._locked(collection):
            storage = AtomicJSONStorage(self.path(collection))
            data = storage.read() or {}
            table = data.setdefault(collection, {})
            ids = {_stored_key(collection, stored): doc_id for doc_id, stored in table.items()}
            next_id = max(map(int, table), default=0) + 1
            for document in documents:
                encoded = _encode(document)
                key = _stored_key(collection, encoded)
                if key not in ids:
                    ids[key], next_id = str(next_id), next_id + 1
                table[ids[key]] = encoded
            storage.write(data)
        return len(documents)

    def iter_documents(self, collection: str) -> Iterator[dict]:
        if not self.path(collection).exists():
            return iter(())
        with self._table(collection) as table:
            documents = [_decode(dict(d)) for d in table.all()]
        return iter(documents)

    def find(self, collection: str, match: dict | None = None) -> list[dict]:
        match = match or {}
        return [d for d in self.iter_documents(collection) if all(d.get(k) == v for k, v in match.items())]

    def count(self, collection: str, match: dict | None = None) -> int:
        return len(self.find(collection, match))

    def read_bars(self, symbol: str, timeframe: str) -> pd.DataFrame:
        return documents_to_bars(self.find("market_data", {"symbol": symbol, "timeframe": timeframe}))

    def put_file(self, name: str, payload: bytes, metadata: dict) -> None:
        """Model files stay on disk under the run root; TinyDB keeps only their records."""

    def get_file(self, name: str) -> bytes | None:
        return None

    def close(self) -> None:
        pass
