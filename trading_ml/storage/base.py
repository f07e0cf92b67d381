"""The store protocol both backends implement, natural keys, and bar <-> document conversion."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
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
}


class Store(Protocol):
    kind: str  # "mongodb" or "tinydb"

    def upsert_many(self, collection: str, documents: list[dict]) -> int:
        """Insert or replace documents by the collection's natural key; returns how many."""

    def insert_new(self, collection: str, document: dict) -> bool:
        """Insert unless a document with the same natural key exists; atomic. True if inserted."""

    def find(self, collection: str, match: dict | None = None) -> list[dict]:
        """Documents whose fields equal every value in match (without store ids)."""

    def count(self, collection: str, match: dict | None = None) -> int: ...

    def iter_documents(self, collection: str) -> Iterator[dict]: ...

    def read_bars(self, symbol: str, timeframe: str) -> pd.DataFrame: ...

    def put_file(self, name: str, payload: bytes, metadata: dict) -> None:
        """Keep a copy of a file (GridFS under MongoDB; TinyDB leaves files on disk)."""

    def get_file(self, name: str) -> bytes | None: ...

    def close(self) -> None: ...


def natural_key(collection: str, document: dict) -> tuple:
    try:
        return tuple(document[field] for field in NATURAL_KEYS[collection])
    except KeyError as error:
        raise ValueError(
            f"{collection} document lacks key field {error}; keys are {NATURAL_KEYS.get(collection)}"
        ) from error


def bars_to_documents(symbol: str, timeframe: str, bars: pd.DataFrame, source: str) -> list[dict]:
    """One document per bar, keyed by (symbol, timeframe, timestamp)."""
    records = bars[BAR_COLUMNS].reset_index().to_dict("records")
    for record in records:
        record["timestamp"] = record["timestamp"].to_pydatetime()
        record.update(symbol=symbol, timeframe=timeframe, source=source)
    return records


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
