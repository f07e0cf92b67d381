"""Files that are never half-written: write to a temp name beside the target, then rename."""

from __future__ import annotations

import hashlib
import io
import json
import os
import threading
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.csv as arrow_csv

from trading_ml.data.bars import BAR_COLUMNS


def atomic_write_bytes(path: Path, payload: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with temporary.open("wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def json_bytes(document: dict) -> bytes:
    """A document as the project writes JSON: indented, keys sorted, a newline at the end."""
    return (json.dumps(document, indent=2, sort_keys=True, default=str) + "\n").encode()


def write_json(path: Path, document: dict) -> Path:
    return atomic_write_bytes(path, json_bytes(document))


def read_json(path: Path) -> dict:
    return json.loads(Path(path).read_text())


def write_bars_csv(path: Path, bars: pd.DataFrame) -> Path:
    """Bars as CSV: an ISO 8601 UTC timestamp column, then the bar columns at full precision."""
    return write_table_csv(path, bars[BAR_COLUMNS])


def write_table_csv(path: Path, table: pd.DataFrame) -> Path:
    """A timestamp-indexed table as CSV with ISO 8601 UTC timestamps (what `pd.read_csv` reads back)."""
    frame = table.reset_index(drop=True)
    frame.insert(0, "timestamp", table.index.strftime("%Y-%m-%dT%H:%M:%SZ"))
    buffer = io.BytesIO()
    arrow_csv.write_csv(pa.Table.from_pandas(frame, preserve_index=False), buffer, arrow_csv.WriteOptions(quoting_style="needed"))
    return atomic_write_bytes(path, buffer.getvalue())


def write_parquet(path: Path, table: pd.DataFrame) -> Path:
    buffer = io.BytesIO()
    table.to_parquet(buffer, index=True)
    return atomic_write_bytes(path, buffer.getvalue())


def sha256_bytes(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def intact(path: Path, sha256: str) -> bool:
    """The file exists and is byte for byte what a manifest recorded."""
    return Path(path).is_file() and sha256_file(path) == sha256


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
