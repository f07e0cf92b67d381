"""Work spread over worker processes: the same results and files as in the stage's process, errors
raised in the stage, and workers that die with the stage's process."""

import dataclasses
import json
import logging
import os
import subprocess
import sys
import textwrap
import time

import pandas as pd
import psutil
import pytest

from tests.conftest import AS_OF, make_settings
from tests.stages import context, run_both
from trading_ml.models.dataset import TrainingData
from trading_ml.pipeline import evaluate as evaluate_stage
from trading_ml.pipeline import features as features_stage
from trading_ml.pipeline import train as train_stage
from trading_ml.pipeline import workers as workers_module
from trading_ml.pipeline.evaluate import evaluate, evaluate_task, evaluate_task_in_worker
from trading_ml.pipeline.features import build_features, symbol_groups
from trading_ml.pipeline.ingest import ingest
from trading_ml.pipeline.resources import StageResources
from trading_ml.pipeline.train import train, train_models
from trading_ml.pipeline.validate import validate
from trading_ml.pipeline.workers import Workers
from trading_ml.run import RunContext

SYMBOLS = ["^GSPC", "^VIX", "AAPL", "XOM", "JPM", "MSFT"]


def test_small_work_stays_here_larger_work_runs_in_workers_in_order_and_errors_come_back():
    # builtins as the calls: a worker imports nothing but trading_ml.pipeline.workers
    with Workers(cores=2) as workers:
        assert set(workers.map(os.getpid, [()] * 3, min_calls=4)) == {os.getpid()}
        assert os.getpid() not in set(workers.map(os.getpid, [()] * 40, min_calls=4))
        assert list(workers.map(abs, [(-i,) for i in range(40)], min_calls=4)) == list(range(40))
        with pytest.raises(ValueError, match="invalid literal for int"):  # raised here, with its message
            list(workers.map(int, [("1",), ("x",), ("3",)], min_calls=1))
    with Workers(cores=1) as one_core:  # one core: no workers, unless a call must leave this process
        assert set(one_core.map(os.getpid, [()] * 40, min_calls=4)) == {os.getpid()}
        assert os.getpid() not in set(one_core.map(os.getpid, [()], min_calls=1))


def test_closed_workers_are_gone_and_a_later_map_starts_new_ones():
    with Workers(cores=2) as workers:
        first = set(workers.map(os.getpid, [()] * 4, min_calls=1))
        workers.close()  # as the features stage does before it makes the largest table
        assert not any(psutil.pid_exists(pid) and psutil.Process(pid).status() != "zombie" for pid in first)
        assert set(workers.map(os.getpid, [()] * 4, min_calls=1)).isdisjoint(first | {os.getpid()})


def test_trainings_that_load_torch_share_one_worker_call_the_rest_go_alone_longest_first():
    every = [
        "direction_xgboost",
        "direction_lstm",
        "volatility_garch",
        "volatility_har",
        "volatility_lstm",
        "regime_rf",
    ]
    assert train_stage.worker_calls(every) == [
        ("direction_xgboost",),
        ("direction_lstm", "volatility_lstm"),  # one process holds torch, not both
        ("regime_rf",),
        ("volatility_garch",),
        ("volatility_har",),
    ]
    assert train_stage.worker_calls(["volatility_lstm", "volatility_har"]) == [
        ("volatility_lstm",),
        ("volatility_har",),
    ]


def test_workers_die_with_a_stage_killed_by_kill_9(tmp_path):
    script = textwrap.dedent(
        f"""
        import os, time
        from pathlib import Path
        from trading_ml.pipeline.workers import Workers

        def mark_then_sleep():
            (Path({str(tmp_path)!r}) / str(os.getpid())).touch()
            time.sleep(60)

        with Workers(cores=2) as workers:
            list(workers.map(mark_then_sleep, [()] * 4, min_calls=1))
        """
    )
    stage = subprocess.Popen([sys.executable, "-c", script], cwd=os.getcwd())
    try:
        for _ in range(300):  # both workers are inside a call
            working = [int(path.name) for path in tmp_path.iterdir()]
            if len(working) == 2:
                break
            time.sleep(0.1)
        assert len(working) == 2, working
        workers = [psutil.Process(pid) for pid in working]
        stage.kill()
        stage.wait()
        _, alive = psutil.wait_procs(workers, timeout=10)
        assert alive == [], f"workers outlived their stage, killed with kill -9: {alive}"
    finally:
        stage.kill()
        stage.wait()


def test_symbol_groups_split_evenly_over_the_workers():
    symbols = [f"S{i}" for i in range(500)]
    groups = symbol_groups(symbols, 2)
    assert len(groups) == 8 and sum(map(len, groups)) == 500 and max(map(len, groups)) <= 64
    assert [s for group in groups for s in group] == symbols
    assert symbol_groups(symbols[:26], 2) == [symbols[:26]]  # one group: built in the stage's process
    assert len(symbol_groups(symbols[:100], 2)) == 2


@pytest.fixture
def two_cores(tmp_path):
    settings = make_settings(tmp_path / "data")
    return dataclasses.replace(settings, models=dataclasses.replace(settings.models, cores=2))


def stage_files(ctx, folder: str) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted((ctx.run_root / folder).glob("*")) if path.is_file()}


def test_ingest_validate_and_features_write_the_same_in_workers_as_in_the_stage(two_cores, monkeypatch, caplog):
    ctx = context(two_cores, symbols=SYMBOLS, timeframes=["1d", "1h"])
    ingested_here, validated_here, resources = run_both(ctx)
    built_here = build_features(ctx, resources)
    folders = ("raw", "validated", "features")
    files = {folder: stage_files(ctx, folder) for folder in folders}
    stored = resources.store.count("market_data")

    monkeypatch.setattr(workers_module, "MIN_CALLS", 2)  # every pair a worker's
    monkeypatch.setattr(features_stage, "GROUP_SIZE", 2)  # three groups of two symbols per timeframe
    with caplog.at_level(logging.INFO, logger="trading_ml.pipeline.workers"):
        ingested_there = ingest(ctx, resources=resources)
        validated_there = validate(ctx, resources)
        built_there = build_features(ctx, resources)
    assert caplog.text.count("starting 2 worker processes") == 3
    assert ingested_there == ingested_here and validated_there == validated_here and built_there == built_here
    assert {folder: stage_files(ctx, folder) for folder in folders} == files
    assert resources.store.count("market_data") == stored  # the workers' upserts added no duplicates


def test_trainings_and_evaluation_at_scale_run_in_workers_and_give_the_same(two_cores, monkeypatch, caplog):
    models = ["volatility_garch", "volatility_har"]
    ctx = RunContext.create(two_cores, AS_OF, SYMBOLS[:4], ["1d"], "synthetic", models=models)
    resources = StageResources.open(ctx)
    run_both(ctx)
    build_features(ctx, resources)
    here = {name: train(ctx, name, resources, sharing=2) for name in ctx.models}
    predictions = {name: pd.read_parquet(ctx.run_root / m["predictions"]) for name, m in here.items()}

    monkeypatch.setattr(train_stage, "SPREAD_FROM_SYMBOLS", 1)
    reported = []
    there = train_models(ctx, resources, on_trained=lambda m, seconds: reported.append((m["model_name"], seconds > 0)))
    assert [m["model_name"] for m in there] == ["volatility_garch", "volatility_har"]  # training order
    assert sorted(reported) == [(name, True) for name in sorted(ctx.models)]
    assert [m["threads"] for m in there] == [1, 1]  # models.cores 2 over two trainings at once
    assert [m["version"] for m in there] == [here[name]["version"] for name in ctx.models]  # a re-run keeps it
    for name, manifest in zip(ctx.models, there):
        pd.testing.assert_frame_equal(pd.read_parquet(ctx.run_root / manifest["predictions"]), predictions[name])

    evaluated_here = evaluate(ctx, resources)
    report_here = json.loads((ctx.run_root / evaluated_here["report"]).read_text())
    monkeypatch.setattr(evaluate_stage, "SPREAD_FROM_SYMBOLS", 1)
    with caplog.at_level(logging.INFO, logger="trading_ml.pipeline.workers"):
        evaluated_there = evaluate(ctx, resources)  # one task (volatility) in a worker, its baselines made once
    assert "starting 2 worker processes" in caplog.text
    assert evaluated_there == evaluated_here
    assert json.loads((ctx.run_root / evaluated_there["report"]).read_text()) == report_here
    caplog.clear()
    one_core = dataclasses.replace(two_cores, models=dataclasses.replace(two_cores.models, cores=1))
    with caplog.at_level(logging.INFO, logger="trading_ml.pipeline.workers"):  # one core: no worker to share with
        assert evaluate(dataclasses.replace(ctx, settings=one_core), resources) == evaluated_here
    assert "starting" not in caplog.text

    # a worker judging a second task reads the training table it kept: once, and unchanged by the first
    judged_alone = {name: evaluate_task(ctx, "volatility", {name: m["predictions"]}) for name, m in here.items()}
    loads, load = [], TrainingData.load
    monkeypatch.setattr(
        TrainingData, "load", classmethod(lambda cls, *args, **kw: loads.append(args) or load(*args, **kw))
    )
    monkeypatch.setattr(workers_module, "_KEPT", {})
    for name, manifest in here.items():
        assert evaluate_task_in_worker(ctx, "volatility", {name: manifest["predictions"]}) == judged_alone[name]
    assert len(loads) == 1


def test_a_worker_keeps_one_value_per_kind_for_the_run_it_works_on():
    made = []

    def make(value):
        return lambda: made.append(value) or value

    assert workers_module.kept_for_run("table", "run-a", make("a1")) == "a1"
    assert workers_module.kept_for_run("table", "run-a", make("a2")) == "a1"  # made once for the run
    assert workers_module.kept_for_run("store", "run-a", make("s1")) == "s1"  # another kind, its own
    assert workers_module.kept_for_run("table", "run-b", make("b1")) == "b1"  # a new run replaces the old
    assert workers_module.kept_for_run("table", "run-a", make("a3")) == "a3"
    assert made == ["a1", "s1", "b1", "a3"]
    workers_module._KEPT.clear()
