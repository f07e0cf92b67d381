"""Files that are never half-written: write to a temp name beside the target, then rename. A temp
file a killed writer left (kill -9 between write and rename) is removed by the next write of the
same target."""

from __future__ import annotations

import hashlib
import io
import json
import math
import mmap
import os
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as arrow_csv
import pyarrow.parquet as pq

from trading_ml.errors import DataError, one_line


def atomic_write_bytes(path: Path, payload: bytes) -> Path:
    return atomic_write(path, lambda handle: handle.write(payload))


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> Path:
    """``path`` as ``write`` fills it, all or nothing: written to a temporary beside it, synced, then
    renamed over it (a reader sees the old file or the new one, never part of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with temporary.open("wb") as handle:
            write(handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    return path


def remove_stale_temporaries(path: Path) -> list[Path]:
    """Remove the temp files of ``path`` whose writing process no longer runs on this host. A process
    lists a folder once, at its first write there, and keeps the temp files it found (listing it at
    every write cost O(files) each: O(N^2) over a stage that writes N files into one folder); a
    writer killed after that leaves its temp file to the next process that writes there (a re-run)."""
    found, removed = _temporaries_in(path.parent), []
    for name in list(found.get(path.name, ())):
        pid = int(name.rsplit(".", 3)[1])
        if not process_alive(pid):
            (path.parent / name).unlink(missing_ok=True)
            found[path.name].remove(name)
            removed.append(path.parent / name)
    return removed


_TEMPORARIES: dict[tuple[int, Path], dict[str, list[str]]] = {}  # (process, folder) -> file name -> temp names


def _temporaries_in(folder: Path) -> dict[str, list[str]]:
    """The temp files (``.NAME.PID.THREAD.tmp``) in ``folder`` when this process first wrote there, by
    the name of the file each was to become; a forked child lists the folder again."""
    key = (os.getpid(), folder)
    if key not in _TEMPORARIES:
        for inherited in [k for k in _TEMPORARIES if k[0] != key[0]]:  # a forked parent's lists
            del _TEMPORARIES[inherited]
        found: dict[str, list[str]] = {}
        with suppress(FileNotFoundError), os.scandir(folder) as entries:
            for entry in entries:
                if (target := temporary_target(entry.name)) is not None:
                    found.setdefault(target, []).append(entry.name)
        _TEMPORARIES[key] = found
    return _TEMPORARIES[key]


def temporary_target(name: str) -> str | None:
    """The file a temp file named ``.NAME.PID.THREAD.tmp`` was to become (NAME), or None for any other name."""
    head, pid, thread, suffix = (name.rsplit(".", 3) + ["", "", ""])[:4]
    if head[:1] == "." and len(head) > 1 and pid.isdigit() and thread.isdigit() and suffix == "tmp":
        return head[1:]
    return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def json_bytes(document: dict) -> bytes:
    """A document as the project writes JSON: indented, keys sorted, a newline at the end; a value
    that is not a finite number (NaN, inf) is written as null, so strict parsers read every file."""
    return (
        json.dumps(finite_or_null(document), indent=2, sort_keys=True, default=str, allow_nan=False) + "\n"
    ).encode()


def number(value, spec: str = ".4g") -> str:
    """A number as text in ``spec``; 'n/a' for one that is not there (null in JSON) or not finite."""
    if value is None or (isinstance(value, float | np.floating) and not math.isfinite(value)):
        return "n/a"
    return format(value, spec)


def finite_or_null(value):
    """The value with every NaN or infinite float (numpy's too) replaced by None, at any depth."""
    if isinstance(value, float | np.floating):
        return float(value) if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def write_json(path: Path, document: dict) -> Path:
    return atomic_write_bytes(path, json_bytes(document))


def read_json(path: Path) -> dict:
    """A JSON file a stage wrote; a DataError naming it when it is not JSON (truncated, edited)."""
    try:
        return json.loads(Path(path).read_text())
    except (ValueError, RecursionError) as error:  # JSONDecodeError, UnicodeDecodeError
        raise DataError(
            f"{path} is not valid JSON ({one_line(error, 120)}); re-run the stage that writes it"
        ) from error


# Arrow allocates from glibc's heap, not its default mimalloc pool: a frame read from parquet keeps
# Arrow's buffers (zero-copy), and mimalloc held 0.24 GB more than them for the 500-symbol training
# table; glibc's freed pages go back to the system with release_freed_memory. This covers pyarrow's
# Python calls; Arrow's C++ code follows ARROW_DEFAULT_MEMORY_POOL, which trading_ml/__init__.py sets.
pa.set_memory_pool(pa.system_memory_pool())

COLUMNS_READ_AT_ONCE = 16


def read_parquet(path: Path, handle: BinaryIO | None = None) -> pd.DataFrame:
    """A parquet file a stage wrote (read through ``handle`` when given: :func:`open_checked`'s); a
    DataError naming it when it cannot be read (truncated, replaced). Read COLUMNS_READ_AT_ONCE
    columns at a time, each handed to pandas as its own block without a copy: at 500 symbols the
    training table (0.7 GB) reads in under a second with a peak of 0.1 GB over the table, against
    1.7 GB read whole."""
    with _read_or_data_error(path, "parquet"):
        parquet = pq.ParquetFile(handle if handle is not None else path)
        metadata = parquet.schema_arrow.pandas_metadata or {}
        index_columns = {c for c in metadata.get("index_columns", []) if isinstance(c, str)}
        names = [n for n in parquet.schema_arrow.names if n not in index_columns]
        first = _read_columns(parquet, names[:COLUMNS_READ_AT_ONCE], with_index=True)
        parts = [first]
        for start in range(COLUMNS_READ_AT_ONCE, len(names), COLUMNS_READ_AT_ONCE):
            parts.append(_read_columns(parquet, names[start : start + COLUMNS_READ_AT_ONCE]).set_axis(first.index))
        table = pd.concat(parts, axis=1) if len(parts) > 1 else first
        pa.default_memory_pool().release_unused()
        return table


@contextmanager
def _read_or_data_error(path: Path, kind: str) -> Iterator[None]:
    """A file that cannot be read as ``kind`` (truncated, replaced) as one DataError naming it; a
    missing file stays FileNotFoundError."""
    try:
        yield
    except (pa.ArrowException, ValueError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise DataError(
            f"{path} cannot be read as {kind} ({one_line(error, 120)}); re-run the stage that writes it"
        ) from error


def _read_columns(parquet: pq.ParquetFile, names: list[str], with_index: bool = False) -> pd.DataFrame:
    """``names`` of ``parquet`` as a frame of one block per column (with the file's index, or a range)."""
    arrow_table = parquet.read(columns=names, use_pandas_metadata=with_index)
    return arrow_table.to_pandas(split_blocks=True, self_destruct=True)


def write_table_csv(path: Path, table: pd.DataFrame) -> Path:
    """A timestamp-indexed table as CSV with ISO 8601 UTC timestamps (what `pd.read_csv` reads back)."""
    frame = table.reset_index(drop=True)
    frame.insert(0, "timestamp", iso_utc_seconds(table.index))
    arrow, options = pa.Table.from_pandas(frame, preserve_index=False), arrow_csv.WriteOptions(quoting_style="needed")
    return atomic_write(path, lambda handle: arrow_csv.write_csv(arrow, handle, options))


def iso_utc_seconds(index: pd.DatetimeIndex) -> np.ndarray:
    """Each timestamp as 2024-08-01T13:30:00Z (to the second; naive ones taken as UTC), formatted by
    numpy: strftime takes 5x as long."""
    utc = index.tz_convert("UTC").tz_localize(None) if index.tz is not None else index
    return np.char.add(np.datetime_as_string(utc.values.astype("datetime64[s]"), unit="s"), "Z")


def write_parquet(path: Path, table: pd.DataFrame) -> Path:
    """``table`` (with its index) as parquet, streamed to the file: no copy of the encoded file in memory."""
    return atomic_write(path, lambda handle: table.to_parquet(handle, index=True))


def write_mapped_table(path: Path, table: pd.DataFrame) -> Path:
    """``table`` (with its index) as an uncompressed Arrow IPC file that :func:`read_mapped_table`
    maps instead of reading: its float columns keep NaN as values (no validity bitmap), so they
    convert to pandas without a copy. Float columns are handed to Arrow without a copy either."""
    schema = pa.Schema.from_pandas(table, preserve_index=True)  # object columns: their type from their values
    stored_levels = schema.pandas_metadata["index_columns"]  # a level's column name, or a RangeIndex's description
    levels = {name: level for level, name in enumerate(stored_levels) if isinstance(name, str)}

    def values(name: str):
        return table.index.get_level_values(levels[name]) if name in levels else table[name]

    arrays = [
        pa.array(values(field.name).to_numpy(), type=field.type, from_pandas=False)
        if pa.types.is_floating(field.type)
        else pa.array(values(field.name), type=field.type, from_pandas=True)
        for field in schema
    ]
    arrow = pa.Table.from_arrays(arrays, schema=schema)

    def write(handle: BinaryIO) -> None:
        with pa.ipc.new_file(handle, arrow.schema) as writer:
            writer.write_table(arrow, max_chunksize=max(len(arrow), 1))

    return atomic_write(path, write)


def read_mapped_table(path: Path, handle: BinaryIO | None = None) -> pd.DataFrame:
    """A file :func:`write_mapped_table` wrote, memory-mapped (through ``handle`` when given:
    :func:`open_checked`'s): its float columns are views of the file's pages, which every process
    mapping it shares (read-only; pandas copies on write). A DataError naming it when it cannot be
    read. The file must not be truncated while mapped (the stages replace files by renaming, which
    leaves a mapped file as it was)."""
    with _read_or_data_error(path, "an Arrow file"):
        if handle is None:
            source = pa.memory_map(str(path))
        else:  # the mapping keeps the file it maps, whatever is renamed over the path
            source = pa.BufferReader(pa.py_buffer(mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ)))
        return pa.ipc.open_file(source).read_all().to_pandas(split_blocks=True)


MATRIX_DTYPE = np.dtype("<f4")  # what write_mapped_matrix stores


def write_mapped_matrix(path: Path, shape: tuple[int, int], blocks: Iterable[np.ndarray]) -> str:
    """A float32 matrix of ``shape`` as a .npy file that :class:`StoredMatrix` reads, written
    from ``blocks`` of consecutive rows as they come (no copy of the whole matrix in memory, none of
    the file mapped); its sha256, computed as it is written."""
    digest = hashlib.sha256()

    def write(handle: BinaryIO) -> None:
        header = io.BytesIO()
        descr = np.lib.format.dtype_to_descr(MATRIX_DTYPE)
        np.lib.format.write_array_header_1_0(header, {"descr": descr, "fortran_order": False, "shape": shape})
        digest.update(header.getvalue())
        handle.write(header.getvalue())
        rows = 0
        for block in blocks:  # one block at a time
            if block.ndim != 2 or block.shape[1] != shape[1]:
                raise ValueError(f"{path}: a block of shape {block.shape} in a matrix of {shape[1]} columns")
            rows += len(block)
            data = memoryview(np.ascontiguousarray(block, dtype=MATRIX_DTYPE)).cast("B")
            digest.update(data)
            handle.write(data)
        if rows != shape[0]:
            raise ValueError(f"{path}: {rows} rows written of a matrix of {shape[0]}")

    atomic_write(path, write)
    return digest.hexdigest()


# rows a gather reads into a buffer of its own before placing them (4 MB at 119 float32 features)
READ_CHUNK_ROWS = 8_192


class StoredMatrix:
    """A matrix :func:`write_mapped_matrix` wrote, read through one open file that was checked
    against the sha256 a manifest recorded (a file renamed over the path later is never read).

    :meth:`rows` copies just the rows asked for with ``preadv``, so the process maps none of the
    file: a gather of short runs of rows through a mapping maps the large page-cache folios around
    them (at 500 symbols a batch of 65,536 rows in table order mapped 272 MB of the 286 MB file).
    :meth:`mapped` is the whole matrix, mapped read-only, for a reader of most of it."""

    def __init__(self, path: Path, handle: BinaryIO, shape: tuple[int, int], offset: int):
        self.path, self.shape = path, shape
        self._handle, self._offset, self._row_bytes = handle, offset, shape[1] * MATRIX_DTYPE.itemsize
        self._mapping: mmap.mmap | None = None
        self._mapped: np.ndarray | None = None

    @classmethod
    def open(cls, path: Path, sha256: str) -> StoredMatrix | None:
        """The matrix at ``path`` if it holds the bytes ``sha256`` names, None when it is missing or
        other bytes; a DataError naming it when those bytes are not a 2-D float32 .npy matrix."""
        path = Path(path)
        handle = open_checked(path, sha256)
        if handle is None:
            return None
        try:
            with _read_or_data_error(path, "a float32 matrix (.npy)"):
                shape, offset = _matrix_header(handle)
            return cls(path, handle, shape, offset)
        except BaseException:
            handle.close()
            raise

    def rows(self, positions: np.ndarray) -> np.ndarray:
        """The rows at ``positions``, in that order, as an array of the caller's own."""
        positions = np.asarray(positions, dtype=np.intp)
        if positions.size and (positions.min() < 0 or positions.max() >= self.shape[0]):
            raise IndexError(f"{self.path}: rows outside 0..{self.shape[0] - 1} asked for")
        out = np.empty((len(positions), self.shape[1]), dtype=MATRIX_DTYPE)
        if np.all(np.diff(positions) > 0):  # ascending: each run straight into its place
            self._read_runs(positions, out)
            return out
        order = np.argsort(positions, kind="stable")
        ascending = positions[order]
        chunk = np.empty((min(len(positions), READ_CHUNK_ROWS), self.shape[1]), dtype=MATRIX_DTYPE)
        for first in range(0, len(ascending), len(chunk)):
            part = ascending[first : first + len(chunk)]
            self._read_runs(part, chunk)
            out[order[first : first + len(part)]] = chunk[: len(part)]
        return out

    def _read_runs(self, ascending: np.ndarray, into: np.ndarray) -> None:
        """Rows ``ascending`` into the first rows of ``into``, one read per run of consecutive rows."""
        if not len(ascending):
            return
        starts = np.flatnonzero(np.diff(ascending, prepend=ascending[0] - 2) != 1)
        ends = np.append(starts[1:], len(ascending))
        for start, end in zip(starts.tolist(), ends.tolist(), strict=True):
            self._read_into(into[start:end], int(ascending[start]))

    def _read_into(self, target: np.ndarray, first_row: int) -> None:
        view = memoryview(target).cast("B")
        offset = self._offset + first_row * self._row_bytes
        while view:  # a read may return fewer bytes than asked
            got = os.preadv(self._handle.fileno(), [view], offset)
            if got == 0:
                raise DataError(f"{self.path} ended before row {first_row}; re-run the stage that writes it")
            view, offset = view[got:], offset + got

    def mapped(self) -> np.ndarray:
        """The whole matrix, read-only: the file's pages, shared by the processes that map it."""
        if self._mapped is None:
            self._mapping = mmap.mmap(self._handle.fileno(), 0, access=mmap.ACCESS_READ)
            count = self.shape[0] * self.shape[1]
            self._mapped = np.frombuffer(self._mapping, MATRIX_DTYPE, count, self._offset).reshape(self.shape)
        return self._mapped

    def release(self) -> None:
        """Let go of the mapped pages this process touched: they stop counting against it, and a
        later read takes them from the page cache again (the same file, still mapped)."""
        if self._mapping is not None and hasattr(mmap, "MADV_DONTNEED"):  # Linux and most Unixes
            self._mapping.madvise(mmap.MADV_DONTNEED)


def _sha256_of(handle: BinaryIO) -> str:
    digest = hashlib.sha256()
    for block in iter(lambda: handle.read(1 << 20), b""):
        digest.update(block)
    return digest.hexdigest()


def _matrix_header(handle: BinaryIO) -> tuple[tuple[int, int], int]:
    """The shape and data offset of the .npy file ``handle`` reads; ValueError unless it holds a
    whole 2-D float32 matrix in C order, as :func:`write_mapped_matrix` writes."""
    handle.seek(0)
    if np.lib.format.read_magic(handle) != (1, 0):
        raise ValueError("not a version 1.0 .npy header")
    shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
    if dtype != MATRIX_DTYPE or len(shape) != 2 or fortran_order:
        raise ValueError(f"it holds {dtype} of {len(shape)} dimensions")
    offset, size = handle.tell(), os.fstat(handle.fileno()).st_size
    if size != offset + shape[0] * shape[1] * MATRIX_DTYPE.itemsize:
        raise ValueError(f"{size} bytes, not the {shape} matrix its header announces")
    return shape, offset


def sha256_bytes(payload: bytes) -> str:
    return hashlib.sha256(payload).hexdigest()


def open_checked(path: Path, sha256: str) -> BinaryIO | None:
    """``path`` open for reading (unbuffered, at its start) if it holds the bytes ``sha256`` names,
    None when it is missing or other bytes. Checked through the open file the caller then reads,
    so a file renamed over the path after the check is never read (checking the path, then opening
    it again, would read whatever is there by then)."""
    try:
        handle = Path(path).open("rb", buffering=0)
    except (FileNotFoundError, IsADirectoryError):
        return None
    try:
        if _sha256_of(handle) != sha256:
            handle.close()
            return None
        handle.seek(0)
    except BaseException:
        handle.close()
        raise
    return handle


def checked_bytes(path: Path, sha256: str) -> bytes | None:
    """The bytes of ``path`` if they are the ones ``sha256`` names, None when it is missing or other
    bytes. Read once, so what was checked is what the caller parses (hashing the path, then reading
    it again, would parse whatever is there by then)."""
    try:
        content = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    return content if sha256_bytes(content) == sha256 else None


def sha256_file(path: Path) -> str:
    with Path(path).open("rb") as handle:
        return _sha256_of(handle)
