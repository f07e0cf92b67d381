"""The training data a model reads: the run's training table, read from the file its hash was checked on."""

import os

import pandas as pd
import pytest

from tests.conftest import quick
from tests.stages import context, run_to_features
from trading_ml.errors import DataError
from trading_ml.io import read_parquet, write_mapped_table, write_parquet
from trading_ml.models import dataset
from trading_ml.models.dataset import TrainingData


@pytest.mark.parametrize("mapped", [True, False], ids=["mapped", "parquet"])
def test_the_table_read_is_the_file_checked_not_one_renamed_over_it_after_the_check(settings, monkeypatch, mapped):
    ctx = context(quick(settings), symbols=["^GSPC", "^VIX", "AAPL"], timeframes=["1d"])
    _, features, _ = run_to_features(ctx)
    recorded = features["timeframes"]["1d"]["training_table"]
    path = ctx.run_root / (recorded["mapped"]["path"] if mapped else recorded["path"])
    written = read_parquet(ctx.run_root / recorded["path"])
    other = written.assign(return_1=written["return_1"] + 1.0)  # a valid table of other values
    checked = dataset.open_checked

    def renamed_over_after_the_check(resolved, sha256):
        handle = checked(resolved, sha256)
        replacement = path.with_name("replacement" + path.suffix)
        (write_mapped_table if mapped else write_parquet)(replacement, other)
        os.replace(replacement, path)
        return handle

    monkeypatch.setattr(dataset, "open_checked", renamed_over_after_the_check)
    read = TrainingData.load(ctx, features, mapped=mapped).table
    pd.testing.assert_frame_equal(read, written)  # the checked file's values, not the replacement's
    monkeypatch.undo()
    with pytest.raises(DataError, match=rf"{path.name} is missing or changed since the features stage wrote it"):
        TrainingData.load(ctx, features, mapped=mapped)  # the replacement itself is refused
