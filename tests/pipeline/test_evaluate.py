"""The evaluate stage reads models and writes metrics only; the direction ensemble is built by the
train stage's fan-in (combine), which a re-run repeats without a new version."""

import dataclasses
import json
import shutil

import pytest

from trading_ml.io import sha256_file
from trading_ml.pipeline.evaluate import evaluate
from trading_ml.pipeline.resources import StageResources
from trading_ml.pipeline.train import combine
from trading_ml.registry import ModelRegistry
from trading_ml.run import RunContext


@pytest.fixture
def copied_run(trained_run, tmp_path):
    """The trained run (direction ensemble included), in a data folder of this test's own."""
    ctx = trained_run[0]
    shutil.copytree(ctx.settings.data_dir, tmp_path / "data")
    storage = dataclasses.replace(ctx.settings.storage, fallback_dir=tmp_path / "data" / "fallback")
    settings = dataclasses.replace(ctx.settings, data_dir=tmp_path / "data", storage=storage)
    copy = RunContext.from_dict(ctx.to_dict(), settings)
    with StageResources.open(copy) as resources:
        yield copy, resources


def model_files(ctx: RunContext) -> dict[str, str]:
    """Every file under the run's models/ but evaluate's own outputs, with its sha256."""
    own = {ctx.layout.evaluation_report, ctx.layout.evaluate_manifest}
    return {path.name: sha256_file(path) for path in (ctx.layout.root / "models").iterdir() if path not in own}


def versions(resources: StageResources, ctx: RunContext) -> list[tuple[str, int]]:
    return sorted(
        (r["model_name"], r["version"]) for r in ModelRegistry(resources.store, ctx.settings.data_dir).records()
    )


def test_evaluate_writes_no_model_file_and_no_version(copied_run):
    ctx, resources = copied_run
    files, before = model_files(ctx), versions(resources, ctx)
    (ctx.layout.root / "models" / "evaluation.json").unlink()
    manifest = evaluate(ctx, resources)
    assert "direction" in manifest["models"] and manifest["not_trained"] == {}
    assert model_files(ctx) == files and versions(resources, ctx) == before


def test_re_running_combine_rewrites_the_same_ensemble_under_its_version(copied_run):
    ctx, resources = copied_run
    registry, before = ModelRegistry(resources.store, ctx.settings.data_dir), versions(resources, ctx)
    record = {
        name: registry.record_for_run(name, ctx.run_id) for name in ("direction", "direction_xgboost", "direction_lstm")
    }
    combined = combine(ctx, resources)["combined"]
    assert list(combined) == ["direction"] and combined["direction"]["version"] == record["direction"]["version"]
    assert combined["direction"]["components"] == {
        m: record[m]["version"] for m in ("direction_xgboost", "direction_lstm")
    }
    assert versions(resources, ctx) == before


def test_an_ensemble_whose_combine_did_not_run_is_named_not_evaluated(copied_run):
    ctx, resources = copied_run
    ctx.layout.trained_manifest("direction").unlink()
    manifest = evaluate(ctx, resources)
    assert "direction" not in manifest["models"] and "direction_xgboost" in manifest["models"]
    assert "task combine failed or did not run" in manifest["not_trained"]["direction"]


def test_the_ensembles_record_says_of_its_table_what_reading_the_table_says(copied_run):
    """combine takes the table's facts from the members' records instead of reading the table again."""
    from trading_ml.models.dataset import TrainingData
    from trading_ml.pipeline.train import TABLE_FIELDS, table_metadata

    ctx, resources = copied_run
    record = ModelRegistry(resources.store, ctx.settings.data_dir).record_for_run("direction", ctx.run_id)
    expected = table_metadata("direction", TrainingData.load(ctx, ctx.stage_manifest("features")))
    assert {key: record[key] for key in TABLE_FIELDS} == json.loads(json.dumps(expected))


def test_a_member_record_without_its_table_facts_is_refused_naming_it(copied_run):
    from trading_ml.errors import DataError

    ctx, resources = copied_run
    registry = ModelRegistry(resources.store, ctx.settings.data_dir)
    member = registry.record_for_run("direction_xgboost", ctx.run_id)
    resources.store.upsert_many("ml_models", [{k: v for k, v in member.items() if k not in ("status", "walk_forward")}])
    with pytest.raises(DataError, match="direction: the record of its member direction_xgboost lacks walk_forward"):
        combine(ctx, resources)
