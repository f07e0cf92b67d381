"""Files never half-written, and parquet and memory-mapped tables read back exactly as written."""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from trading_ml.errors import DataError
from trading_ml.io import (
    StoredMatrix,
    atomic_write,
    atomic_write_bytes,
    checked_bytes,
    open_checked,
    read_mapped_table,
    read_parquet,
    remove_stale_temporaries,
    sha256_file,
    temporary_target,
    write_mapped_matrix,
    write_mapped_table,
    write_parquet,
)


def training_like_table() -> pd.DataFrame:
    stamps = pd.date_range("2024-01-01", periods=50, freq="D", tz="UTC")
    index = pd.MultiIndex.from_product([stamps, ["AAPL", "MSFT"]], names=["timestamp", "symbol"])
    rng = np.random.default_rng(1)
    return pd.DataFrame(
        {
            "return_1": rng.normal(size=len(index)),
            "rsi_14": np.where(rng.random(len(index)) < 0.1, np.nan, rng.uniform(0, 100, len(index))),
            "target_regime": pd.Series(rng.choice(["bull", "bear", None], len(index)), dtype="str").to_numpy(),
            "target_direction": pd.array(rng.choice([-1, 0, 1, None], len(index)), dtype="Int8"),
        },
        index=index,
    )


def test_a_table_reads_back_as_written_index_dtypes_and_missing_values(tmp_path):
    table = training_like_table()
    read = read_parquet(write_parquet(tmp_path / "t.parquet", table))
    pd.testing.assert_frame_equal(read, table)
    assert read["target_direction"].isna().any() and read["rsi_14"].isna().any()


def mapped_ranges(path) -> list[tuple[int, int]]:
    """The address ranges where this process has ``path`` memory-mapped."""
    ranges = []
    for line in open("/proc/self/maps"):
        if line.rstrip().endswith(str(path)):
            start, end = (int(bound, 16) for bound in line.split()[0].split("-"))
            ranges.append((start, end))
    return ranges


def opened(path) -> bool:
    """This process has ``path`` open (a file descriptor, not a mapping)."""
    return any(os.path.realpath(f"/proc/self/fd/{fd}") == str(path) for fd in os.listdir("/proc/self/fd"))


def resident_kb(path) -> int:
    """How much of ``path`` this process's mappings hold in memory (kB, summed over its mappings)."""
    resident, inside = 0, False
    for line in open("/proc/self/smaps"):
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            inside = line.rstrip().endswith(str(path))
        elif inside and line.startswith("Rss:"):
            resident += int(line.split()[1])
    return resident


def test_a_mapped_table_reads_back_as_written_its_floats_in_the_files_pages(tmp_path):
    table = training_like_table().astype({"return_1": "float32"})
    path = write_mapped_table(tmp_path / "t.arrow", table)
    read = read_mapped_table(path)
    pd.testing.assert_frame_equal(read, table)
    assert read["rsi_14"].isna().sum() == table["rsi_14"].isna().sum() > 0  # NaN kept as values, read as NaN
    ranges = mapped_ranges(path)
    for column in ("return_1", "rsi_14"):  # no copy: the values are the file's pages, shared by every reader
        address = read[column].array._ndarray.ctypes.data
        assert any(start <= address < end for start, end in ranges), column
    assert not any(start <= read["target_direction"].array._data.ctypes.data < end for start, end in ranges)


@pytest.mark.parametrize("kind", ["arrow", "parquet"])
def test_a_table_is_read_from_the_file_open_checked_checked_not_one_renamed_over_it_later(tmp_path, kind):
    write, read = {"arrow": (write_mapped_table, read_mapped_table), "parquet": (write_parquet, read_parquet)}[kind]
    table = training_like_table().astype({"return_1": "float32"})
    path = write(tmp_path / f"t.{kind}", table)
    handle = open_checked(path, sha256_file(path))
    assert handle is not None
    write(tmp_path / f"t.{kind}", table.assign(return_1=table["return_1"] + 1))  # renamed over the path
    with handle:
        read_back = read(path, handle)
    pd.testing.assert_frame_equal(read_back, table)
    if kind == "arrow":  # still the checked file's own pages, mapped without a copy
        address = read_back["return_1"].array._ndarray.ctypes.data
        assert any(start <= address < end for start, end in mapped_ranges(f"{path} (deleted)"))


def test_open_checked_is_none_for_a_missing_file_a_folder_or_other_bytes(tmp_path):
    path = tmp_path / "t.bin"
    path.write_bytes(b"recorded")
    recorded = sha256_file(path)
    assert open_checked(tmp_path / "missing.bin", recorded) is None
    assert open_checked(tmp_path, recorded) is None
    path.write_bytes(b"recordeD")
    assert open_checked(path, recorded) is None
    assert not opened(path)  # none left open
    path.write_bytes(b"recorded")
    with open_checked(path, recorded) as handle:
        assert handle.read() == b"recorded"  # from the start


def test_checked_bytes_are_the_files_bytes_only_when_they_are_the_recorded_ones(tmp_path):
    path = tmp_path / "AAPL_1d.csv"
    path.write_bytes(b"timestamp,close\n")
    recorded = sha256_file(path)
    assert checked_bytes(path, recorded) == b"timestamp,close\n"
    assert checked_bytes(tmp_path / "missing.csv", recorded) is None
    assert checked_bytes(tmp_path, recorded) is None
    path.write_bytes(b"timestamp,close\r\n")
    assert checked_bytes(path, recorded) is None


def test_a_truncated_mapped_table_is_one_data_error_naming_it(tmp_path):
    path = write_mapped_table(tmp_path / "t.arrow", training_like_table())
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"t\.arrow cannot be read as an Arrow file.*re-run the stage"):
        read_mapped_table(path)


def stored_matrix(path, matrix: np.ndarray) -> StoredMatrix:
    stored = StoredMatrix.open(path, write_mapped_matrix(path, matrix.shape, [matrix]))
    assert stored is not None
    return stored


def test_a_matrix_written_in_blocks_maps_back_whole_read_only_from_the_files_pages(tmp_path):
    matrix = np.random.default_rng(2).normal(size=(1000, 7)).astype(np.float32)
    matrix[3, 4] = np.nan
    blocks = (matrix[start : start + 300] for start in range(0, 1000, 300))  # the last block is short
    sha256 = write_mapped_matrix(tmp_path / "m.npy", matrix.shape, blocks)
    assert sha256 == sha256_file(tmp_path / "m.npy")  # hashed as written, not by reading it back
    read = StoredMatrix.open(tmp_path / "m.npy", sha256).mapped()
    np.testing.assert_array_equal(read, matrix)  # NaN where it was
    assert type(read) is np.ndarray and not read.flags.writeable
    assert any(start <= read.ctypes.data < end for start, end in mapped_ranges(tmp_path / "m.npy"))


@pytest.mark.parametrize(
    "positions",
    [
        np.arange(100, 3000),  # one run
        np.r_[5:40, 900:960, 4000:4096],  # ascending runs
        np.r_[2000:2100, 10:20, 3:7],  # runs out of order
        np.random.default_rng(4).permutation(4096)[:3000],  # single rows in any order
        np.array([7, 7, 3, 7, 4095, 0]),  # repeats and both ends
        np.array([], dtype=int),
    ],
    ids=["one run", "ascending runs", "runs out of order", "shuffled", "repeats", "none"],
)
def test_rows_read_back_as_the_matrix_holds_them_in_the_order_asked_mapping_none_of_the_file(
    tmp_path, positions, monkeypatch
):
    monkeypatch.setattr("trading_ml.io.READ_CHUNK_ROWS", 1000)  # several chunks
    matrix = np.random.default_rng(5).normal(size=(4096, 33)).astype(np.float32)
    stored = stored_matrix(tmp_path / "m.npy", matrix)
    read = stored.rows(positions)
    np.testing.assert_array_equal(read, matrix[positions])
    assert read.shape == (len(positions), 33) and read.flags.writeable and read.flags.c_contiguous
    assert opened(tmp_path / "m.npy") and not mapped_ranges(tmp_path / "m.npy")
    with pytest.raises(IndexError, match=r"m\.npy: rows outside 0\.\.4095"):
        stored.rows(np.array([3, 4096]))


def test_a_matrix_reads_from_the_file_it_checked_not_one_renamed_over_it_later(tmp_path):
    path = tmp_path / "m.npy"
    original = np.arange(40, dtype=np.float32).reshape(10, 4)
    stored = stored_matrix(path, original)
    write_mapped_matrix(path, original.shape, [original + 1000])  # written beside it, renamed over it
    np.testing.assert_array_equal(stored.rows(np.arange(10)), original)
    np.testing.assert_array_equal(stored.mapped(), original)


def test_released_pages_of_a_mapped_matrix_stop_counting_and_read_back_the_same(tmp_path):
    matrix = np.random.default_rng(3).normal(size=(4096, 256)).astype(np.float32)  # 4 MB
    stored = stored_matrix(tmp_path / "m.npy", matrix)
    stored.release()  # nothing mapped yet: nothing to do
    read = stored.mapped()
    np.testing.assert_array_equal(read, matrix)
    assert resident_kb(tmp_path / "m.npy") >= 4096
    stored.release()
    assert resident_kb(tmp_path / "m.npy") == 0
    np.testing.assert_array_equal(read, matrix)  # read again from the page cache


def test_a_missing_or_changed_matrix_opens_as_none_and_one_of_other_bytes_is_one_data_error(tmp_path):
    path = tmp_path / "m.npy"
    with pytest.raises(ValueError, match="999 rows written of a matrix of 1000"):
        write_mapped_matrix(path, (1000, 2), [np.zeros((999, 2), np.float32)])
    assert list(tmp_path.iterdir()) == []  # nothing half-written
    assert StoredMatrix.open(path, "0" * 64) is None  # missing
    sha256 = write_mapped_matrix(path, (10, 2), [np.zeros((10, 2), np.float32)])
    assert StoredMatrix.open(path, "0" * 64) is None  # not the bytes the manifest recorded
    assert StoredMatrix.open(tmp_path, sha256) is None  # a folder
    np.save(path, np.zeros((10, 2)))  # float64: not what the features stage writes
    with pytest.raises(DataError, match=r"m\.npy cannot be read as a float32 matrix.*float64.*re-run the stage"):
        StoredMatrix.open(path, sha256_file(path))
    write_mapped_matrix(path, (10, 2), [np.zeros((10, 2), np.float32)])
    path.write_bytes(path.read_bytes()[:-8])  # cut short
    with pytest.raises(DataError, match=r"m\.npy cannot be read as a float32 matrix.*not the \(10, 2\) matrix"):
        StoredMatrix.open(path, sha256_file(path))
    assert not opened(path)  # none left open


def test_a_write_that_fails_midway_leaves_the_old_file_and_no_temporary(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", training_like_table())
    before = path.read_bytes()

    def fails_after_some_bytes(handle):
        handle.write(b"PAR1 half a table")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        atomic_write(path, fails_after_some_bytes)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["t.parquet"]


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    child = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(child.stdout)


def test_a_write_removes_its_files_temporaries_left_by_dead_writers_and_keeps_a_live_ones(tmp_path):
    dead, live = dead_pid(), os.getpid()
    left = {
        name: tmp_path / name
        for name in (f".a.csv.{dead}.7.tmp", f".a.csv.{live}.8.tmp", f".b.csv.{dead}.9.tmp", f".a.csv.{dead}.x.tmp")
    }
    for temporary in left.values():
        temporary.write_bytes(b"half")
    atomic_write_bytes(tmp_path / "a.csv", b"whole")
    assert (tmp_path / "a.csv").read_bytes() == b"whole"
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.endswith(".tmp")) == sorted(
        [f".a.csv.{live}.8.tmp", f".b.csv.{dead}.9.tmp", f".a.csv.{dead}.x.tmp"]
    )  # only a.csv's, only the dead writer's, only a writer's name
    assert remove_stale_temporaries(tmp_path / "b.csv") == [left[f".b.csv.{dead}.9.tmp"]]


@pytest.mark.parametrize(
    ("name", "target"),
    [
        (".AAPL_1d.csv.123.456.tmp", "AAPL_1d.csv"),
        ("..hidden.1.2.tmp", ".hidden"),
        ("AAPL_1d.csv.123.456.tmp", None),
        (".AAPL_1d.csv.123.tmp", None),
        (".AAPL_1d.csv.12a.456.tmp", None),
        (".AAPL_1d.csv.123.456.temp", None),
        (".1.2.tmp", None),
        ("AAPL_1d.csv", None),
    ],
)
def test_only_a_writers_temporary_names_their_target(name, target):
    assert temporary_target(name) == target


def test_a_process_lists_a_folder_once_however_many_files_it_writes_there(tmp_path, monkeypatch):
    import trading_ml.io as io_module

    listed = []
    scandir = os.scandir
    monkeypatch.setattr(io_module.os, "scandir", lambda folder: listed.append(folder) or scandir(folder))
    for number in range(50):
        atomic_write_bytes(tmp_path / "raw" / f"S{number}_1d.csv", b"bars")
        atomic_write_bytes(tmp_path / "features" / f"S{number}_1d.csv", b"features")
    assert sorted(Path(folder).name for folder in listed) == ["features", "raw"]


def test_a_forked_writer_lists_the_folder_again_and_removes_what_a_writer_killed_since_left(tmp_path):
    stale = tmp_path / f".a.csv.{dead_pid()}.1.tmp"
    script = f"""
import os
from pathlib import Path
from trading_ml.io import atomic_write_bytes
folder, stale = Path({str(tmp_path)!r}), Path({str(stale)!r})
atomic_write_bytes(folder / "a.csv", b"first")  # this process lists the folder
stale.write_bytes(b"half")  # a writer killed since
atomic_write_bytes(folder / "a.csv", b"second")
print("kept by the same process:", stale.exists())
child = os.fork()  # as Airflow's preloaded executor starts a task
if child == 0:
    atomic_write_bytes(folder / "a.csv", b"third")
    os._exit(0)
print("child exit:", os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]), "removed by the child:", not stale.exists())
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.stdout.split("\n")[:2] == [
        "kept by the same process: True",
        "child exit: 0 removed by the child: True",
    ], done.stdout + done.stderr[-2000:]
    assert (tmp_path / "a.csv").read_bytes() == b"third"


def test_a_truncated_parquet_file_is_one_data_error_naming_it(tmp_path):
    path = write_parquet(tmp_path / "t.parquet", training_like_table())
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match=r"t\.parquet cannot be read as parquet.*re-run the stage"):
        read_parquet(path)


def test_csv_timestamps_are_iso_utc_to_the_second_as_strftime_writes_them():
    import pandas as pd

    from trading_ml.io import iso_utc_seconds

    hourly = pd.date_range("2021-03-13 20:00", periods=60, freq="h", tz="UTC")
    assert iso_utc_seconds(hourly).tolist() == hourly.strftime("%Y-%m-%dT%H:%M:%SZ").tolist()
    new_york = hourly.tz_convert("America/New_York")  # the same instants across a DST change: still UTC
    assert iso_utc_seconds(new_york).tolist() == iso_utc_seconds(hourly).tolist()
    assert iso_utc_seconds(pd.DatetimeIndex(["2024-08-01 13:30:00.7"])).tolist() == ["2024-08-01T13:30:00Z"]


def arrow_allocator_after(imports: str, chosen: str | None = None) -> str:
    """The allocator Arrow's own code uses in a fresh process that runs ``imports`` first."""
    environment = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    environment.update({"ARROW_DEFAULT_MEMORY_POOL": chosen} if chosen else {})
    script = f"{imports}\nimport pyarrow as pa\nprint(pa.default_memory_pool().backend_name)"
    done = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True, check=True)
    return done.stdout.strip()


def test_arrow_allocates_from_glibc_wherever_trading_ml_loads_first_unless_the_user_chose():
    if "mimalloc" not in pa.supported_memory_backends():
        pytest.skip("this pyarrow has no mimalloc: its default is already the system allocator")
    assert arrow_allocator_after("import pandas") == "mimalloc"  # Arrow's default, chosen when it loads
    assert arrow_allocator_after("import trading_ml\nimport pandas") == "system"
    assert arrow_allocator_after("import trading_ml", chosen="jemalloc") == "jemalloc"
