"""LSTM sequences: each window is its own symbol's last rows, never another symbol's."""

import numpy as np
import pandas as pd
import pytest

from trading_ml.models.base import Standardizer
from trading_ml.models.lstm import Sequences, standardized_sequences


def interleaved_table() -> tuple[pd.DataFrame, np.ndarray]:
    """Four symbols interleaved by timestamp: C misses a bar, D has only 10 bars."""
    stamps = pd.date_range("2020-01-01", periods=60, tz="UTC")
    index = pd.MultiIndex.from_product([stamps, ["B", "A", "C", "D"]], names=["timestamp", "symbol"])
    table = pd.DataFrame(index=index).drop(index=[(stamps[5], "C")] + [(s, "D") for s in stamps[10:]])
    values = np.random.default_rng(0).normal(size=(len(table), 3)).astype(np.float32)
    return table, values


def test_every_window_is_the_last_rows_of_its_own_symbol():
    table, values = interleaved_table()
    sequences = Sequences(table, values, length=20)
    symbols = table.index.get_level_values("symbol").to_numpy()
    batch = sequences.batch(np.arange(len(sequences.row_of))).numpy()
    for window, row in zip(batch, sequences.row_of):
        own_rows = np.flatnonzero(symbols == symbols[row])
        expected = values[own_rows[own_rows <= row][-20:]]
        np.testing.assert_array_equal(window, expected)
    assert batch.shape == (len(sequences.row_of), 20, 3) and batch.dtype == np.float32


def test_rows_without_a_full_window_of_their_symbol_get_none():
    table, values = interleaved_table()
    sequences = Sequences(table, values, length=20)
    counts = pd.Series(table.index.get_level_values("symbol")[sequences.row_of]).value_counts().to_dict()
    assert counts == {"A": 60 - 19, "B": 60 - 19, "C": 59 - 19}  # D's 10 bars never make a window
    assert len(set(sequences.row_of)) == len(sequences.row_of)
    assert Sequences(table.iloc[:0], values[:0], 20).batch(np.arange(0)).shape == (0, 20, 3)


def test_standardized_sequences_hold_what_the_copying_transform_gives_and_leave_no_float64_path():
    table, values = interleaved_table()
    values = values * 7 + 3
    train = np.arange(len(table)) < len(table) // 2
    expected_scaler = Standardizer.fit(values[train])
    standardized = ((values - expected_scaler.mean) / expected_scaler.scale).astype(np.float32)
    expected = Sequences(table, standardized, length=5).grouped
    scaler, sequences = standardized_sequences(table, values.copy(), train, 5)
    np.testing.assert_array_equal(sequences.grouped, expected)  # the same numbers, bit for bit
    np.testing.assert_array_equal(scaler.mean, expected_scaler.mean)
    assert abs(float(sequences.grouped[:, 0].mean())) < 1.0  # standardized, not the raw values (mean 3)
    with pytest.raises(TypeError, match="float32"):
        scaler.transform_in_place(values.astype(np.float64))
