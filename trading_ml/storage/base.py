"""The store protocol both backends implement, natural keys, and bar <-> document conversion."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Protocol

import pandas as pd

from trading_ml.data.bars import BAR_COLUMNS, bar_index, empty_bars

# Every collection's natural key: upserts on it make re-runs add no duplicates.
NATURAL_KEYS: dict[str, tuple[str, ...]] = {
    "market_data": ("symbol", "timeframe", "timestamp"),
    "validation_reports": ("run_id", "symbol", "timeframe"),
    "pipeline_runs": ("run_id",),
    "ml_models": ("model_name", "version"),
    "model_versions": ("model_name", "version"),  # version claims: one run per version, even at the same time
    "model_production": ("model_name",),  # the production pointer: one document per model
}
# Collections read and written in parts: market_data per symbol and timeframe (TinyDB: a file each).
PARTITIONS: dict[str, tuple[str, ...]] = {"market_data": ("symbol", "timeframe")}
# The field that says which run owns a document: a write never replaces another owner's document.
OWNERS: dict[str, str] = {"ml_models": "run_id", "model_versions": "run_id"}
STAMP = "updated_at"  # every write sets it; sync keeps whichever copy of a document is newer


@dataclass(frozen=True)
class StoreChoice:
    """Which backend a stage used and why; goes into the run manifest."""

    kind: str
    reason: str

    def to_dict(self) -> dict:
        return asdict(self)


class Store(Protocol):
    @property
    def kind(self) -> str:
        """ "mongodb" or "tinydb"."""

    def upsert_many(self, collection: str, documents: list[dict]) -> int:
        """Insert or replace documents by the collection's natural key, stamped with updated_at;
        returns how many. Raises ConflictError (writing none) for a key another run owns."""

    def upsert_newer(self, collection: str, documents: list[dict]) -> int:
        """Like upsert_many, but keeps each document's own updated_at and replaces only an older
        stored copy (or none); a key another run owns is kept. Returns how many were written."""

    def insert_new(self, collection: str, document: dict) -> bool:
        """Insert unless a document with the same natural key exists; atomic. True if inserted."""

    def update_fields(self, collection: str, match: dict, fields: dict) -> bool:
        """Set fields (and updated_at) on the one document equal to ``match``; True if it exists."""

    def replace_if(self, collection: str, document: dict, revision: int | None) -> bool:
        """Compare and set: replace the document with this natural key if its ``revision`` equals
        ``revision`` (insert it if ``revision`` is None and there is none); atomic. True if written."""

    def find(self, collection: str, match: dict | None = None) -> list[dict]:
        """Documents whose fields equal every value in match (without store ids)."""

    def count(self, collection: str, match: dict | None = None) -> int: ...

    def read_bars(self, symbol: str, timeframe: str) -> pd.DataFrame: ...

    def put_file(self, name: str, payload: bytes, metadata: dict) -> None:
        """Keep a copy of a file (GridFS under MongoDB; TinyDB leaves files on disk)."""

    def get_file(self, name: str) -> bytes | None: ...

    def close(self) -> None: ...


def replaces(collection: str, incoming: dict, stored: dict | None) -> bool:
    """Whether upsert_newer writes ``incoming`` over ``stored``: nothing stored, or a stored copy of
    the same owner that differs and is older (or has no stamp)."""
    if stored is None:
        return True
    owner = OWNERS.get(collection)
    if owner and stored.get(owner) != incoming.get(owner):
        return False
    if {k: v for k, v in stored.items() if k != STAMP} == {k: v for k, v in incoming.items() if k != STAMP}:
        return False
    return STAMP not in stored or stored[STAMP] < incoming.get(STAMP, "")


def partitions(collection: str, documents: list[dict]) -> list[tuple[dict, list[dict]]]:
    """[(match, documents)] grouping documents by the collection's partition fields (one group if none)."""
    fields, groups = PARTITIONS.get(collection, ()), dict[tuple, list[dict]]()
    for document in documents:
        groups.setdefault(tuple(document[f] for f in fields), []).append(document)
    return [(dict(zip(fields, values)), group) for values, group in groups.items()]


def now_stamp() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")


def stamped(documents: list[dict]) -> list[dict]:
    """Copies of the documents with updated_at set to now."""
    stamp = now_stamp()
    return [{**document, STAMP: stamp} for document in documents]


def natural_key(collection: str, document: dict) -> tuple:
    try:
        return tuple(document[field] for field in NATURAL_KEYS[collection])
    except KeyError as error:
        raise ValueError(
            f"{collection} document lacks key field {error}; keys are {NATURAL_KEYS.get(collection)}"
        ) from error


def bars_to_documents(symbol: str, timeframe: str, bars: pd.DataFrame, source: str) -> list[dict]:
    """One document per bar, keyed by (symbol, timeframe, timestamp)."""
    keys = ("timestamp", *BAR_COLUMNS)
    rows = zip(bars.index.to_pydatetime(), *(bars[column].tolist() for column in BAR_COLUMNS))
    return [dict(zip(keys, row), symbol=symbol, timeframe=timeframe, source=source) for row in rows]


def documents_to_bars(documents: Iterable[dict]) -> pd.DataFrame:
    frame = pd.DataFrame(list(documents))
    if frame.empty:
        return empty_bars()
    frame = frame.set_index(bar_index(pd.to_datetime(frame["timestamp"], utc=True)))
    return frame.sort_index()[BAR_COLUMNS].astype("float64")


def mask_uri(uri: str | None) -> str:
    """A connection string safe to log: the password becomes ***."""
    if not uri:
        return "(none)"
    return re.sub(r"(://[^:/@]+:)[^@]*@", r"\1***@", uri)
