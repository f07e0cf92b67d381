"""The features stage: per-symbol files, one training table per timeframe, re-runs and changed inputs."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

from tests.conftest import make_settings
from tests.stages import context, run_both, run_to_features, with_faults
from trading_ml.data.bar_files import read_bars_csv, write_bars_csv
from trading_ml.errors import DataError, StageFailed
from trading_ml.features.intraday import INTRADAY_VARIANCE
from trading_ml.io import read_mapped_table, read_parquet, sha256_file, write_mapped_matrix
from trading_ml.models.base import feature_matrix, symbol_grouped_order
from trading_ml.models.dataset import TrainingData
from trading_ml.pipeline import features as features_module
from trading_ml.pipeline.features import build_features
from trading_ml.serving import SignalService, served_panel


def test_features_stage_writes_the_plans_csvs_and_one_training_table_per_timeframe(small_context):
    validated, manifest, resources = run_to_features(small_context)
    root = small_context.run_root
    frame = pd.read_csv(root / "features" / "AAPL_1d_features.csv")  # the plan's verification
    assert {"rsi_14", "macd_pct", "bb_upper_20", "vix_level", "target_direction"} <= set(frame.columns)
    daily = manifest["timeframes"]["1d"]
    assert daily["excluded_from_training"] == {"^VIX": "market input only (no volume)"}
    table = pd.read_parquet(root / daily["training_table"]["path"])
    assert table.index.names == ["timestamp", "symbol"]
    assert sorted(table.index.get_level_values("symbol").unique()) == ["AAPL", "XOM", "^GSPC", "^NSEI"]
    mapped = daily["training_table"]["mapped"]  # the copy the train and evaluate stages map, checked
    assert "mapped" not in manifest["timeframes"]["1h"]["training_table"]  # models.timeframe is 1d
    assert not (root / "features" / "training_1h.arrow").exists()
    assert sha256_file(root / mapped["path"]) == mapped["sha256"]
    pd.testing.assert_frame_equal(
        read_mapped_table(root / mapped["path"]), read_parquet(root / daily["training_table"]["path"])
    )
    data = TrainingData.of_run(small_context)
    pd.testing.assert_frame_equal(data.table, read_parquet(root / daily["training_table"]["path"]))
    assert data.path == daily["training_table"]["path"]  # the records name the parquet table
    inputs = daily["training_table"]["inputs"]  # the model features, grouped by symbol, that the models map
    assert "inputs" not in manifest["timeframes"]["1h"]["training_table"]
    assert not (root / "features" / "inputs_1h.npy").exists()
    assert sha256_file(root / inputs["path"]) == inputs["sha256"]
    some_rows = np.random.default_rng(0).permutation(len(data.table))[:300]
    for rows in (some_rows, symbol_grouped_order(data.table)):
        from_table = feature_matrix(data.table, data.feature_names, "test", rows)
        np.testing.assert_array_equal(data.inputs.rows(rows), from_table)
    assert not data.inputs.rows(rows).flags.writeable  # in its own order: the mapped file itself
    del data
    stored = (root / inputs["path"]).read_bytes()
    (root / inputs["path"]).write_bytes(
        stored[:-4] + bytes(~b & 0xFF for b in stored[-4:])
    )  # same size: the hash tells
    with pytest.raises(DataError, match=r"inputs_1d\.npy is missing or changed since the features stage wrote it"):
        TrainingData.of_run(small_context).inputs.rows(some_rows)
    short = data_rows = len(read_parquet(root / daily["training_table"]["path"])) - 1
    names = TrainingData.of_run(small_context).feature_names
    resized = write_mapped_matrix(
        root / inputs["path"], (short, len(names)), [np.zeros((short, len(names)), np.float32)]
    )
    altered = json.loads(small_context.layout.features_manifest.read_text())
    altered["timeframes"]["1d"]["training_table"]["inputs"]["sha256"] = resized  # hash-valid, the wrong shape
    small_context.layout.features_manifest.write_text(json.dumps(altered))
    with pytest.raises(
        DataError, match=rf"inputs_1d\.npy holds a \({data_rows}, {len(names)}\) matrix, not {data_rows + 1} rows"
    ):
        TrainingData.of_run(small_context).inputs.rows(some_rows)
    tampered = bytearray((root / mapped["path"]).read_bytes())
    tampered[len(tampered) // 2] ^= 0xFF
    (root / mapped["path"]).write_bytes(bytes(tampered))  # the same size: only its hash tells
    with pytest.raises(DataError, match=r"training_1d\.arrow is missing or changed since the features stage wrote it"):
        TrainingData.of_run(small_context)
    altered = json.loads(small_context.layout.features_manifest.read_text())
    altered["timeframes"]["1d"]["training_table"]["mapped"] = "training_1d.arrow"  # a hand edit: no hash
    small_context.layout.features_manifest.write_text(json.dumps(altered))
    with pytest.raises(DataError, match=r"records a training table without a path and a sha256 \(it was altered\)"):
        TrainingData.of_run(small_context)
    assert (
        len(table)
        == daily["training_table"]["rows"]
        == sum(s["rows"] for sym, s in daily["symbols"].items() if sym != "^VIX")
    )
    for symbol, entry in daily["symbols"].items():
        assert entry["bars"] == entry["warmup_rows"] + entry["incomplete_rows"] + entry["rows"]
        assert entry["warmup_rows"] >= 199
    assert len(frame) == daily["symbols"]["AAPL"]["rows"]
    assert list(table.columns[: len(daily["feature_names"])]) == daily["feature_names"]
    assert len(daily["feature_names"]) >= 70 and daily["categories"]["market"] == 13
    assert set(manifest["timeframes"]) == {"1d", "1h"}
    assert len(json.dumps(manifest)) < 20_000  # small enough for XCom: names and paths, no data
    assert json.loads((root / "features" / "manifest.json").read_text())["catalog"][0]["category"] == "trend"
    run = json.loads((root / "run_manifest.json").read_text())
    assert run["stages"]["features"]["1d"]["training_rows"] == len(table)


def test_daily_rows_carry_their_hourly_sessions_variance_in_training_and_in_serving(small_context):
    """HAR's daily variance comes from the run's validated hourly bars where a session is complete; the
    service, reading the stored hourly bars, gives a bar the same value as the training table."""
    _, manifest, _ = run_to_features(small_context)
    daily = manifest["timeframes"]["1d"]
    table = pd.read_parquet(small_context.run_root / daily["training_table"]["path"])
    hourly = pd.read_parquet(small_context.run_root / manifest["timeframes"]["1h"]["training_table"]["path"])
    assert hourly[INTRADAY_VARIANCE].isna().all()  # hourly rows have no sessions inside them
    known = table[INTRADAY_VARIANCE].dropna()
    per_symbol = known.groupby(level="symbol").size()
    assert (per_symbol >= 100).all() and len(per_symbol) == 4, per_symbol  # about six months of sessions each
    service = SignalService(small_context.settings)
    bars, _, stored_hourly = service.bars.snapshot()
    served, _ = served_panel(small_context.settings, bars, stored_hourly)
    shared = known.index.intersection(served.index)
    assert len(shared) == len(known)
    np.testing.assert_allclose(served.loc[shared, INTRADAY_VARIANCE], known.loc[shared], rtol=1e-12)


def test_features_rerun_rewrites_the_same_bytes_and_drops_files_of_quarantined_symbols(tmp_path):
    settings = make_settings(tmp_path, min_pass_share=0.5)
    ctx = context(settings, symbols=["^GSPC", "^VIX", "AAPL", "XOM"], timeframes=["1d"])
    _, first, resources = run_to_features(ctx)
    _, second, _ = run_to_features(ctx)
    assert second["timeframes"] == first["timeframes"]
    assert resources.store.count("pipeline_runs") == 1
    assert (ctx.run_root / "features" / "XOM_1d_features.csv").is_file()

    broken = context(
        with_faults(settings, {"XOM": ["split"]}), symbols=ctx.symbols, timeframes=["1d"], run_id=ctx.run_id
    )  # the same run again
    _, third, _ = run_to_features(broken)
    assert "XOM" not in third["timeframes"]["1d"]["symbols"]
    assert not (ctx.run_root / "features" / "XOM_1d_features.csv").exists()


def test_features_refuse_a_validated_file_changed_since_validation(small_context):
    _, validated, resources = run_both(small_context)
    path = small_context.run_root / validated["passed"][0]["path"]
    path.write_text(path.read_text() + "\n")
    with pytest.raises(DataError, match="changed since validation; re-run validate"):
        build_features(small_context, resources)


def test_features_parse_the_validated_bytes_they_checked_not_a_file_renamed_over_them_after(tmp_path, monkeypatch):
    ctx = context(make_settings(tmp_path), symbols=["^GSPC", "AAPL"], timeframes=["1d"])
    _, first, resources = run_to_features(ctx)
    path = ctx.layout.validated_bars("AAPL", "1d")
    bars = read_bars_csv(path, "1d")
    other = bars.assign(close=bars["close"] * 1.01, high=bars["high"] * 1.01)  # valid bars of other values
    checked = features_module.checked_bytes

    def renamed_over_after_the_check(resolved, sha256):
        content = checked(resolved, sha256)
        if resolved == path:
            write_bars_csv(path, other)
        return content

    monkeypatch.setattr(features_module, "checked_bytes", renamed_over_after_the_check)
    assert build_features(ctx, resources)["timeframes"] == first["timeframes"]  # the same bytes, from the checked file
    monkeypatch.undo()
    with pytest.raises(DataError, match=r"AAPL_1d\.csv is missing or changed since validation; re-run validate"):
        build_features(ctx, resources)


def test_a_short_window_gets_its_warm_up_from_the_margin_and_fails_only_without_one(tmp_path):
    settings = make_settings(tmp_path)
    short = dataclasses.replace(
        settings, timeframes={"1d": dataclasses.replace(settings.timeframes["1d"], lookback="6mo")}
    )
    ctx = context(short, symbols=["^GSPC", "AAPL"], timeframes=["1d"])
    validated, resources = run_both(ctx)[1:]
    built = build_features(ctx, resources)["timeframes"]["1d"]
    assert built["training_table"]["rows"] > 2 * 100  # six months of both symbols, none lost to the warm-up
    early = context(
        short, symbols=["^GSPC", "AAPL"], timeframes=["1d"], as_of="2000-08-01"
    )  # no margin before the epoch
    validated, resources = run_both(early)[1:]
    ctx = early
    with pytest.raises(StageFailed, match=r"no training rows .* features.warmup_bars \(500\) bars before its rows"):
        build_features(ctx, resources)
    manifest = json.loads((ctx.run_root / "run_manifest.json").read_text())
    assert "features" not in manifest["stages"]
