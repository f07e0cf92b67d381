"""LSTM sequences: each window is its own symbol's last rows, never another symbol's."""

import numpy as np
import pandas as pd
import pytest

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
    sequences = Sequences(table, 20, lambda rows: values[rows])
    symbols = table.index.get_level_values("symbol").to_numpy()
    batch = sequences.batch(np.arange(len(sequences.row_of))).numpy()
    for window, row in zip(batch, sequences.row_of):
        own_rows = np.flatnonzero(symbols == symbols[row])
        expected = values[own_rows[own_rows <= row][-20:]]
        np.testing.assert_array_equal(window, expected)
    assert batch.shape == (len(sequences.row_of), 20, 3) and batch.dtype == np.float32


def test_rows_without_a_full_window_of_their_symbol_get_none():
    table, values = interleaved_table()
    sequences = Sequences(table, 20, lambda rows: values[rows])
    counts = pd.Series(table.index.get_level_values("symbol")[sequences.row_of]).value_counts().to_dict()
    assert counts == {"A": 60 - 19, "B": 60 - 19, "C": 59 - 19}  # D's 10 bars never make a window
    assert len(set(sequences.row_of)) == len(sequences.row_of)
    assert Sequences(table.iloc[:0], 20, lambda rows: values[:0][rows]).batch(np.arange(0)).shape == (0, 20, 3)


def test_standardized_sequences_give_batches_of_the_copying_transform_and_never_write_their_values():
    table, values = interleaved_table()
    values = values * 7 + 3
    train = np.arange(len(table)) < len(table) // 2
    mean, scale = values[train].mean(axis=0), values[train].std(axis=0)
    standardized = ((values - mean) / scale).astype(np.float32)
    every = np.arange(len(Sequences(table, 5, lambda rows: values[rows]).row_of))
    expected = Sequences(table, 5, lambda rows: standardized[rows]).batch(every)

    def read_only(rows):  # as the run's mapped model inputs are
        grouped = values[rows]
        grouped.flags.writeable = False
        return grouped

    scaler, sequences = standardized_sequences(table, read_only, train, 5)
    np.testing.assert_array_equal(sequences.batch(every), expected)  # the same numbers, bit for bit
    np.testing.assert_array_equal(sequences.grouped, values[sequences.order])  # the values as they were
    np.testing.assert_array_equal(scaler.mean, mean)  # fitted on the train rows, in table order
    np.testing.assert_array_equal(scaler.scale, scale)
    assert abs(float(sequences.batch(every)[:, :, 0].mean())) < 1.0  # standardized, not the raw values (mean 3)
    with pytest.raises(TypeError, match="float32"):
        scaler.transform_in_place(values.astype(np.float64))


def test_the_grouped_values_come_from_the_table_rows_in_grouped_order():
    table, values = interleaved_table()
    asked = []
    sequences = Sequences(table, 5, lambda rows: asked.append(rows) or values[rows])
    (rows,) = asked  # asked once, for every row
    assert sorted(rows) == list(range(len(table)))
    np.testing.assert_array_equal(sequences.grouped_positions(rows), np.arange(len(table)))
    symbols = table.index.get_level_values("symbol")[rows]
    assert list(dict.fromkeys(symbols)) == ["B", "A", "C", "D"] and symbols.is_monotonic_increasing is False
