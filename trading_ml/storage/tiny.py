"""TinyDB, the embedded fallback: JSON files in TinyDB's format under data/fallback/.

One file per collection, except ``market_data``, which has one file per symbol and timeframe
(``market_data/AAPL_1d.json``): an ingest task rewrites only its own pair's file, so a write costs
the same however large the universe (with one shared file, N per-pair writes cost O(N²)).
Every read and write goes through TinyDB's API. A write opens the file's table behind TinyDB's
CachingMiddleware, so the file is parsed once and written once whatever the batch; a batch is
merged by natural key with one index of the table (TinyDB's ``upsert`` scans the table per
document: O(N²) for a pair's bars). Each write holds an exclusive lock on its file (parallel Airflow
tasks share them) and lands through a temp file and rename, so a crash never leaves half a file.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import glob
import json
import logging
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from tinydb import TinyDB
from tinydb.middlewares import CachingMiddleware
from tinydb.storages import Storage

from trading_ml.errors import ConflictError, StoreError, one_line
from trading_ml.io import atomic_write_bytes
from trading_ml.storage.base import (
    NATURAL_KEYS,
    OWNERS,
    PARTITIONS,
    STAMP,
    documents_to_bars,
    now_stamp,
    replaces,
    stamped,
)

log = logging.getLogger(__name__)


PLAIN = (float, int, str, bool, type(None))  # stored as they are


def _encode(value):
    if isinstance(value, dt.datetime):
        return {"$date": value.isoformat()}
    if isinstance(value, dict):
        return {k: v if type(v) in PLAIN else _encode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [v if type(v) in PLAIN else _encode(v) for v in value]
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
    return tuple(v["$date"] if isinstance(v := encoded[field], dict) else v for field in NATURAL_KEYS[collection])


def _same_key(collection: str, encoded: dict):
    """A TinyDB condition: the stored document with this document's natural key."""
    key = _stored_key(collection, encoded)
    return lambda stored: _stored_key(collection, stored) == key


def _overwrite(stored: dict, document: dict) -> None:
    """Replace a stored document's whole content in place (TinyDB's update with fields would merge)."""
    stored.clear()
    stored.update(document)


class _Replacements:
    """The condition and the update of one TinyDB ``update`` pass that replaces the stored documents
    an incoming batch (natural key -> document) has a version of; what it matches leaves
    ``incoming``, so what remains there is new."""

    def __init__(self, collection: str, incoming: dict[tuple, dict], newer_only: bool):
        self.collection, self.incoming, self.newer_only = collection, incoming, newer_only
        self.owner, self.chosen = OWNERS.get(collection), dict[int, dict]()

    def matches(self, stored: dict) -> bool:
        key = _stored_key(self.collection, stored)
        document = self.incoming.pop(key, None)
        if document is None:
            return False
        if self.newer_only:
            if not replaces(self.collection, document, stored):
                return False
        elif self.owner and stored.get(self.owner) != document.get(self.owner):
            raise ConflictError(
                f"{self.collection} {key} belongs to {self.owner} {stored.get(self.owner)!r}, "
                f"not {document.get(self.owner)!r}; nothing was written"
            )
        self.chosen[id(stored)] = document  # TinyDB hands the same dict to replace() next
        return True

    def replace(self, stored: dict) -> None:
        _overwrite(stored, self.chosen[id(stored)])

    @property
    def count(self) -> int:
        return len(self.chosen)


class AtomicJSONStorage(Storage):
    """TinyDB storage that writes through a temp file and os.replace."""

    def __init__(self, path: str):
        self.path = Path(path)

    def read(self):
        try:
            if not self.path.exists() or self.path.stat().st_size == 0:
                return None
            with self.path.open(encoding="utf-8") as handle:
                data = json.load(handle)
        except (OSError, ValueError, RecursionError) as error:
            raise StoreError(
                f"the TinyDB fallback file {self.path} cannot be read ({one_line(error)}); restore it or move it aside"
            ) from error
        if not isinstance(data, dict) or not all(isinstance(table, dict) for table in data.values()):
            raise StoreError(
                f"the TinyDB fallback file {self.path} is not a TinyDB file (an object of tables of documents); "
                "restore it or move it aside"
            )
        return {name: _documents_only(self.path, name, table) for name, table in data.items()}

    def write(self, data) -> None:
        # json.dumps (not dump) uses the C encoder
        atomic_write_bytes(self.path, json.dumps(data, separators=(",", ":")).encode())

    def close(self) -> None:
        pass


def _documents_only(path: Path, name: str, table: dict) -> dict:
    """A table's entries that are documents; any other is skipped with one line naming it."""
    for key in [k for k, document in table.items() if not isinstance(document, dict)]:
        log.warning(
            "%s: table %s entry %s is a %s, not a document; skipped (fix or remove it)",
            path,
            name,
            key[:20],
            type(table.pop(key)).__name__,
        )
    return table


class TinyStore:
    kind = "tinydb"

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path(self, collection: str) -> Path:
        """The collection's file; for a partitioned collection, the one file it had before partitioning."""
        return self.directory / f"{collection}.json"

    def _file_of(self, collection: str, document: dict) -> Path:
        if collection not in PARTITIONS:
            return self.path(collection)
        return self.directory / collection / ("_".join(str(document[f]) for f in PARTITIONS[collection]) + ".json")

    def _files(self, collection: str, match: dict | None = None) -> list[Path]:
        """The files that can hold documents equal to ``match`` (all of the collection's without one)."""
        if collection not in PARTITIONS:
            return [self.path(collection)] if self.path(collection).exists() else []
        self._split_unpartitioned(collection)
        given = match or {}
        pattern = "_".join(glob.escape(str(given[f])) if f in given else "*" for f in PARTITIONS[collection])
        return sorted((self.directory / collection).glob(f"{pattern}.json"))

    def _split_unpartitioned(self, collection: str) -> None:
        """Move a fallback written before partitioning (one market_data.json) into its partitions."""
        if not self.path(collection).exists():
            return
        with self._locked(self.path(collection)):
            if self.path(collection).exists():
                database = TinyDB(str(self.path(collection)), storage=AtomicJSONStorage)
                documents = [dict(document) for document in database.table(collection).all()]
                database.close()
                self._merge(collection, documents)
                self.path(collection).unlink()

    @contextmanager
    def _locked(self, path: Path):
        """An exclusive lock on one file for a whole read-modify-write: parallel Airflow tasks share the files."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.with_name(f".{path.stem}.lock").open("w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def upsert_many(self, collection: str, documents: list[dict]) -> int:
        """Merge by natural key in memory and write each touched file once (TinyDB's upsert scans per call)."""
        if collection in PARTITIONS:
            self._split_unpartitioned(collection)
        self._merge(collection, [_encode(document) for document in stamped(documents)])
        return len(documents)

    def upsert_newer(self, collection: str, documents: list[dict]) -> int:
        if collection in PARTITIONS:
            self._split_unpartitioned(collection)
        return self._merge(collection, [_encode(document) for document in documents], newer_only=True)

    def _merge(self, collection: str, encoded: list[dict], newer_only: bool = False) -> int:
        """One read and one write per touched file, through TinyDB's API: one ``update`` pass over
        the stored documents replaces those the batch has a newer version of (keeping their doc
        ids), one ``insert_multiple`` adds the rest. A document of another owner is never
        replaced: upsert_many refuses (writing nothing), upsert_newer keeps it."""
        by_partition: dict[tuple, list[dict]] = defaultdict(list)
        by_file: dict[Path, list[dict]] = defaultdict(list)
        written = 0
        fields = PARTITIONS.get(collection, ())
        for document in encoded:
            by_partition[tuple(document[f] for f in fields)].append(document)
        for documents in by_partition.values():  # the file's path once per partition, not per document
            by_file[self._file_of(collection, documents[0])] += documents
        for path, documents in by_file.items():
            incoming = {_stored_key(collection, document): document for document in documents}
            with self._table(path, collection) as table:
                replacing = _Replacements(collection, incoming, newer_only)
                table.update(replacing.replace, replacing.matches)
                added = [d for d in incoming.values() if not newer_only or replaces(collection, d, None)]
                if added:
                    table.insert_multiple(added)
            written += replacing.count + len(added)
        return written

    def insert_new(self, collection: str, document: dict) -> bool:
        encoded = _encode(document)
        with self._table(self._file_of(collection, encoded), collection) as table:
            if table.contains(_same_key(collection, encoded)):
                return False
            table.insert(encoded)
        return True

    def update_fields(self, collection: str, match: dict, fields: dict) -> bool:
        wanted = _encode(match)
        with self._table(self._file_of(collection, wanted), collection) as table:
            current = table.get(lambda stored: all(stored.get(k) == v for k, v in wanted.items()))
            if current is None:
                return False
            table.update({**_encode(fields), STAMP: now_stamp()}, doc_ids=[current.doc_id])
        return True

    def replace_if(self, collection: str, document: dict, revision: int | None) -> bool:
        encoded = _encode(stamped([document])[0])
        with self._table(self._file_of(collection, encoded), collection) as table:
            current = table.get(_same_key(collection, encoded))
            if (current.get("revision") if current else None) != revision:
                return False
            if current is None:
                table.insert(encoded)
            else:
                table.update(lambda stored: _overwrite(stored, encoded), doc_ids=[current.doc_id])
        return True

    @contextmanager
    def _table(self, path: Path, collection: str):
        """The collection's TinyDB table in one file, locked for the whole read-modify-write. Behind
        CachingMiddleware the file is read once and written once, when the block ends without an
        error (an error leaves the file as it was)."""
        with self._locked(path):
            database = TinyDB(str(path), storage=CachingMiddleware(AtomicJSONStorage))
            yield database.table(collection, cache_size=0)
            database.close()  # flushes the cache: one atomic write, if anything changed

    def find(self, collection: str, match: dict | None = None) -> list[dict]:
        match = match or {}
        return [d for d in self._documents(collection, match) if all(d.get(k) == v for k, v in match.items())]

    def _documents(self, collection: str, match: dict | None = None) -> list[dict]:
        """Every document of the files that can hold ``match`` (the whole collection without one)."""
        documents = []
        for path in self._files(collection, match):
            with self._locked(path):
                database = TinyDB(str(path), storage=AtomicJSONStorage)
                documents += [_decode(dict(d)) for d in database.table(collection).all()]
                database.close()
        return documents

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
