"""The train stage: what a training task tells its log while it runs, and the inputs its models read."""

import dataclasses
import logging
import re

import pandas as pd

from tests.conftest import quick
from tests.stages import context, run_to_features
from tests.test_io import mapped_ranges, opened
from trading_ml.models import direction
from trading_ml.models.dataset import TrainingData
from trading_ml.models.direction import LSTMDirection, XGBoostDirection
from trading_ml.models.threads import machine_cores
from trading_ml.pipeline.train import train


def test_a_training_task_logs_its_table_every_fold_and_the_version_it_registered(settings, caplog):
    ctx = context(quick(settings), symbols=["^GSPC", "^VIX", "AAPL", "XOM"], timeframes=["1d"])
    _, features, _ = run_to_features(ctx)
    caplog.set_level(logging.INFO, logger="trading_ml")
    manifest = train(ctx, "regime_rf")
    messages = [record.getMessage() for record in caplog.records]
    rows = len(pd.read_parquet(ctx.run_root / features["timeframes"]["1d"]["training_table"]["path"]))
    assert f"regime_rf: 1d training table of {rows} rows, 3 symbols" in messages[0]
    assert messages[0].endswith(f"; {machine_cores()} thread(s)") and manifest["threads"] == machine_cores()
    folds = [
        m for m in messages if re.match(r"regime_rf: fold \d of \d: \d+ training, \d+ validation and \d+ test rows", m)
    ]
    assert len(folds) == manifest["folds"] >= 2
    assert (
        len([m for m in messages if re.match(r"regime_rf: 30 trees fitted", m)]) == manifest["folds"]
    )  # the forest, per fold
    assert re.match(rf"regime_rf: registered version {manifest['version']} as a candidate \([\d.]+ s\)$", messages[-1])


def test_direction_models_learn_the_same_from_the_stored_inputs_as_from_the_table(settings):
    ctx = context(quick(settings), symbols=["^GSPC", "^VIX", "AAPL", "XOM"], timeframes=["1d"])
    run_to_features(ctx)
    stored = TrainingData.of_run(ctx)
    from_table = dataclasses.replace(stored, inputs=None)
    models = ctx.settings.models
    for model_class in (XGBoostDirection, LSTMDirection):
        params = models.params.get(model_class.name)
        on_inputs = model_class.fit(stored, params, models.seed)
        assert opened(stored.inputs.path)  # the fit read the run's stored inputs file
        if model_class is XGBoostDirection:  # its batches are read, not gathered through a mapping
            assert not mapped_ranges(stored.inputs.path)
        else:  # the LSTM's windows are rows of the mapped file
            assert mapped_ranges(stored.inputs.path)
        on_table = model_class.fit(from_table, params, models.seed)
        pd.testing.assert_frame_equal(on_inputs.predict(stored.table), on_table.predict(stored.table))
        assert on_inputs.save() == on_table.save()  # the same model, byte for byte


def test_xgboost_learns_the_same_from_many_small_batches_as_from_one(settings, monkeypatch):
    ctx = context(quick(settings), symbols=["^GSPC", "^VIX", "AAPL", "XOM"], timeframes=["1d"])
    run_to_features(ctx)
    data, params = TrainingData.of_run(ctx), ctx.settings.models.params.get(XGBoostDirection.name)
    one_batch = XGBoostDirection.fit(data, params, ctx.settings.models.seed)
    monkeypatch.setattr(direction, "TRAINING_BATCH_ROWS", 97)  # dozens of batches, the last one short
    assert len(data.table) > 20 * direction.TRAINING_BATCH_ROWS
    assert XGBoostDirection.fit(data, params, ctx.settings.models.seed).save() == one_batch.save()
