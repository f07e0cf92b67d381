"""The model stages: train each model walk-forward, evaluate it beside its baselines with intervals,
deploy only measured skill, and report.

This module imports torch, xgboost and arch; :mod:`trading_ml.pipeline` loads it on first use, so
the data stages (an Airflow ingestion task) start without them. The registry is addressed by
(model, run id): a stage finds this run's records wherever their versions stand.
"""

from __future__ import annotations

import datetime as dt
import logging

import numpy as np
import pandas as pd

from trading_ml.errors import ConflictError, DataError, StageFailed
from trading_ml.io import atomic_write_bytes, read_json, write_json, write_parquet
from trading_ml.loading import ModelLoader
from trading_ml.models import evaluation
from trading_ml.models.catalogue import (
    ENSEMBLE,
    ENSEMBLE_MEMBERS,
    entry,
    model_class,
    task_of,
)
from trading_ml.models.dataset import TrainingData
from trading_ml.models.direction import PROBABILITY_COLUMNS, average_probabilities
from trading_ml.models.splits import out_of_sample_fold
from trading_ml.pipeline.data_stages import MODELS, StageResources, record_stage
from trading_ml.registry import ModelRegistry, config_hash
from trading_ml.report import write_report
from trading_ml.run import RunContext

log = logging.getLogger(__name__)

DEPLOY_ATTEMPTS = 5  # decisions re-made when another deploy changed production in between


def registry_of(ctx: RunContext, resources: StageResources) -> ModelRegistry:
    return ModelRegistry(resources.store, ctx.settings.data_dir)


def train(ctx: RunContext, model_name: str, dataset: dict, resources: StageResources | None = None) -> dict:
    """Fit one model on every walk-forward fold, save the last fold's model under models/ with the
    pooled out-of-sample predictions of all folds, and register it as a candidate.

    ``dataset`` is the features stage's manifest. Returns the artifact paths, sha256, version and
    what training found, never the model itself. A retried task of the same run rewrites the same
    files and keeps its version.
    """
    if model_name not in MODELS:
        raise DataError(f"unknown model {model_name!r}; train one of {', '.join(MODELS)}")
    resources = resources or StageResources.open(ctx)
    data = TrainingData.load(ctx, dataset)
    model, out_of_sample = fit_walk_forward(model_class(model_name), data, ctx)
    files = [atomic_write_bytes(ctx.layout.model_file(model_name, suffix), payload) for suffix, payload in model.save().items()]
    predictions = write_parquet(ctx.layout.predictions(model_name), out_of_sample)
    registry = registry_of(ctx, resources)
    record = registry.publish(_metadata(ctx, registry, model_name, files, data, model.feature_names))
    manifest = {
        "stage": "train",
        "run_id": ctx.run_id,
        "model_name": model_name,
        "version": record["version"],
        "artifacts": record["artifacts"],
        "predictions": ctx.layout.relative(predictions),
        "training_samples": record["training_samples"],
        "folds": len(data.folds),
        "dataset": ctx.layout.relative(ctx.layout.features_manifest),
        "store": resources.store_choice.to_dict(),
    }
    write_json(ctx.layout.trained_manifest(model_name), manifest)
    return manifest


def fit_walk_forward(cls, data: TrainingData, ctx: RunContext) -> tuple[object, pd.DataFrame]:
    """The model of the last fold, and every fold's predictions of its own test segment (NaN on
    rows no fold tested), with a ``fold`` column."""
    pooled = None
    for split in data.folds:
        log.info("%s: fold %d of %d, test from %s", cls.name, split.fold + 1, len(data.folds), split.test_start.date())
        model = cls.fit(data.for_fold(split), ctx.settings)
        predictions = model.predict(data.table)
        if pooled is None:
            pooled = pd.DataFrame(float("nan"), index=predictions.index, columns=predictions.columns).astype(predictions.dtypes)
            pooled["fold"] = -1
        tested = split.mask("test")
        pooled.loc[tested, predictions.columns] = predictions[tested]
        pooled.loc[tested, "fold"] = split.fold
    return model, pooled


def _metadata(ctx: RunContext, registry: ModelRegistry, name: str, files, data: TrainingData, feature_names: list[str]) -> dict:
    """The plan's metadata (model_name ... timeframe) plus what makes the model traceable; the
    version comes from the registry when it is published."""
    target = entry(name).target
    return {
        "model_name": name,
        "task": entry(name).task,
        "target": target,
        "trained_date": dt.datetime.now(dt.UTC).date().isoformat(),
        "training_samples": int((data.split.mask("train") & data.table[target].notna().to_numpy()).sum()),
        "symbols": data.symbols,
        "feature_count": len(feature_names),
        "feature_names": list(feature_names),
        "timeframe": data.timeframe,
        "data_window": data.window(),
        "split": data.split.to_dict(),
        "walk_forward": [split.to_dict() for split in data.folds],
        "trained_until": data.split.test_start.isoformat(),  # the registered model saw no row from here on
        "run_id": ctx.run_id,
        "as_of": ctx.as_of.isoformat(),
        "config_hash": config_hash(ctx.settings),
        "artifacts": registry.artifacts(files),
    }


def evaluate(ctx: RunContext, trained: list[dict], resources: StageResources | None = None,
             not_trained: dict[str, str] | None = None) -> dict:
    """Every trained model (and the direction ensemble) on the pooled out-of-sample rows, beside its
    baselines, with block-bootstrap intervals and its skill over the best baseline. Models whose
    training failed (``not_trained``: name -> why) are named in the report; the rest go on.

    Writes models/evaluation.json (everything, equity curves included) and stores each model's
    summary in its registry record.
    """
    if not trained:
        raise StageFailed(f"evaluate: no model trained, nothing to evaluate ({'; '.join(f'{n}: {w}' for n, w in (not_trained or {}).items())})")
    resources = resources or StageResources.open(ctx)
    registry = registry_of(ctx, resources)
    data = TrainingData.load(ctx, read_json(ctx.layout.features_manifest))
    predictions = {m["model_name"]: pd.read_parquet(ctx.layout.resolve(m["predictions"])) for m in trained}
    if set(ENSEMBLE_MEMBERS) <= set(predictions):
        predictions[ENSEMBLE] = _register_ensemble(ctx, registry, data, predictions)
    report, models = {}, {}
    for name, values in predictions.items():
        version = registry.record_for_run(name, ctx.run_id)["version"]
        report[name] = {"version": version, **evaluation.evaluate(task_of(name), data.table, data.folds, values, ctx.settings)}
        models[name] = {"version": version, **evaluation.summary(report[name])}
        accuracy = report[name]["metrics"].get("accuracy", {}).get("value")
        registry.update(name, ctx.run_id, test_metrics=models[name], test_accuracy=accuracy)
    folds = [split.to_dict() for split in data.folds]
    missing = dict(not_trained or {})
    write_json(ctx.layout.evaluation_report, {"run_id": ctx.run_id, "folds": folds, "planted_signal": planted_signal(ctx),
                                              "models": report, "not_trained": missing})
    manifest = {"stage": "evaluate", "run_id": ctx.run_id, "report": ctx.layout.relative(ctx.layout.evaluation_report),
                "models": models, "not_trained": missing}
    write_json(ctx.layout.evaluate_manifest, manifest)
    record_stage(ctx, "evaluate", {name: m["primary"] for name, m in models.items()}, resources)
    return manifest


def planted_signal(ctx: RunContext) -> float | None:
    """The information coefficient the synthetic market planted (None for real data)."""
    if ctx.source != "synthetic":
        return None
    from trading_ml.data.synthetic import configured_strength

    return configured_strength(ctx.settings.source_options("synthetic"))


def _register_ensemble(ctx: RunContext, registry: ModelRegistry, data: TrainingData, predictions: dict) -> pd.DataFrame:
    """Register the 'direction' ensemble of this run's XGBoost and LSTM; its out-of-sample predictions."""
    members = {name: registry.record_for_run(name, ctx.run_id) for name in ENSEMBLE_MEMBERS}
    spec = {"members": list(ENSEMBLE_MEMBERS), "rule": "mean of member probabilities", "run_id": ctx.run_id}
    path = write_json(ctx.layout.model_file(ENSEMBLE, ".json"), spec)
    names = sorted({n for record in members.values() for n in record["feature_names"]})
    components = {name: record["version"] for name, record in members.items()}
    registry.publish({**_metadata(ctx, registry, ENSEMBLE, [path], data, names), "components": components})
    averaged = average_probabilities([predictions[name][PROBABILITY_COLUMNS] for name in ENSEMBLE_MEMBERS])
    write_parquet(ctx.layout.predictions(ENSEMBLE), averaged)
    return averaged


def deploy(ctx: RunContext, evaluated: dict, resources: StageResources | None = None) -> dict:
    """Promote each candidate whose out-of-sample skill over its best baseline is significant (the
    one-sided lower bound of the improvement above zero) and that is not significantly worse than
    the current production version on rows that version never saw. A production version that cannot
    be scored on this run's rows (another universe, newer data) is never replaced automatically.
    Every decision, its interval and its reason is logged and stored in the model's record. A
    promotion is a compare-and-set against the production version the decision was made on: if
    another deploy changed it meanwhile, decide again."""
    resources = resources or StageResources.open(ctx)
    registry = registry_of(ctx, resources)
    data = TrainingData.load(ctx, read_json(ctx.layout.features_manifest))
    decisions = {}
    for name, summary in evaluated["models"].items():
        version = registry.record_for_run(name, ctx.run_id)["version"]
        status, reason, evidence = _deploy_one(ctx, registry, data, name, summary)
        log.info("deploy %s %s: %s", name, version, reason)
        decisions[name] = {"version": version, "status": status, "reason": reason, "evidence": evidence}
    manifest = {"stage": "deploy", "run_id": ctx.run_id, "decisions": decisions, "store": resources.store_choice.to_dict()}
    write_json(ctx.layout.deploy_manifest, manifest)
    record_stage(ctx, "deploy", {n: d["status"] for n, d in decisions.items()}, resources)
    return manifest


def _deploy_one(ctx: RunContext, registry: ModelRegistry, data: TrainingData, name: str, summary: dict) -> tuple[str, str, dict]:
    """(status, reason, evidence) after deciding, and promoting if the decision says so."""
    for _ in range(DEPLOY_ATTEMPTS):
        incumbent = registry.production(name)
        promote, reason, evidence = _deploy_decision(ctx, registry, data, name, summary, incumbent)
        already = bool(incumbent) and incumbent["run_id"] == ctx.run_id  # a re-run of this deploy
        if not promote or already:
            return registry.update(name, ctx.run_id, deploy_decision=reason, deploy_evidence=evidence)["status"], reason, evidence
        if registry.promote(name, ctx.run_id, reason, expected=incumbent["run_id"] if incumbent else None):
            registry.update(name, ctx.run_id, deploy_evidence=evidence)
            return "production", reason, evidence
    raise ConflictError(f"deploy {name}: production changed {DEPLOY_ATTEMPTS} times while deciding; re-run deploy")


def _deploy_decision(ctx: RunContext, registry: ModelRegistry, data: TrainingData, name: str, summary: dict,
                     incumbent: dict | None) -> tuple[bool, str, dict]:
    skill = summary["skill"]
    evidence = {"skill": skill}
    level = f"{skill['confidence']:.0%}"
    gain = (f"{skill['metric']} {skill['value']:+.4g} over {skill['baseline']} "
            f"({level} interval {skill['low']:+.4g} to {skill['high']:+.4g}, one-sided lower bound {skill['lower_bound']:+.4g})")
    if not skill["better"]:
        return False, f"stays candidate: no significant skill: {gain}", evidence
    if incumbent is None or incumbent["run_id"] == ctx.run_id:
        return True, f"promoted: significant skill: {gain}; no other production version", evidence
    record = registry.record_for_run(name, incumbent["run_id"])
    by_hand = f"`trading-ml promote {name} {summary['version']}` decides by hand"
    theirs_until, ours_until = pd.Timestamp(_trained_until(record)), data.split.test_start
    if theirs_until > ours_until:
        return False, (f"stays candidate: production {record['version']} learned from data up to {theirs_until.date()}, newer than this "
                       f"model's (up to {ours_until.date()}); an older run does not replace a newer model; {by_hand}"), evidence
    rows, why_not = _unseen_rows(ctx, data, record)
    if why_not:
        return False, f"stays candidate: production {record['version']} cannot be scored on this run's rows ({why_not}); {by_hand}", evidence
    try:
        theirs = ModelLoader(registry).load_record(record).predict(data.table)
    except DataError as error:
        return False, f"stays candidate: production {record['version']} cannot be scored on this run's rows ({error}); {by_hand}", evidence
    ours = pd.read_parquet(ctx.layout.predictions(name))
    versus = evaluation.versus(task_of(name), data.table, data.folds, ours, theirs, rows, ctx.settings)
    evidence["versus_production"] = {"version": record["version"], "run_id": record["run_id"], **versus}
    against = (f"vs production {record['version']} on {versus['days']} dates it never saw: {versus['metric']} {versus['value']:+.4g} "
               f"({level} interval {versus['low']:+.4g} to {versus['high']:+.4g})")
    if versus["worse"]:
        return False, f"stays candidate: significantly worse than production: {against}", evidence
    return True, f"promoted: significant skill: {gain}; not significantly worse {against}", evidence


def _trained_until(record: dict) -> str:
    """The first timestamp a registered model never saw (records before walk-forward: its test start)."""
    return record.get("trained_until") or record["split"]["test_start"]


def _unseen_rows(ctx: RunContext, data: TrainingData, record: dict) -> tuple[np.ndarray, str | None]:
    """This run's rows the production model never saw, or why it cannot be scored on them."""
    theirs, ours = sorted(record.get("symbols") or []), data.symbols
    if theirs != ours:
        only_theirs, only_ours = sorted(set(theirs) - set(ours)), sorted(set(ours) - set(theirs))
        return np.zeros(0, dtype=bool), (f"it serves another universe: only in production {', '.join(only_theirs) or 'none'}; "
                                         f"only in this run {', '.join(only_ours) or 'none'}")
    if record.get("timeframe") != data.timeframe:
        return np.zeros(0, dtype=bool), f"it was trained on {record.get('timeframe')} bars, this run on {data.timeframe}"
    seen_until = pd.Timestamp(_trained_until(record))
    stamps = data.table.index.get_level_values("timestamp")
    rows = np.asarray(stamps >= seen_until)
    days = stamps[rows & (out_of_sample_fold(data.folds) >= 0)].nunique()
    if days < ctx.settings.models.min_compare_days:
        return rows, (f"it was trained on data up to {seen_until.date()}; this run has {days} out-of-sample dates after that, "
                      f"fewer than models.min_compare_days ({ctx.settings.models.min_compare_days})")
    return rows, None


def report(ctx: RunContext, resources: StageResources | None = None) -> dict:
    """The run's performance report: report.html (plots inline) and report.json in the run folder,
    with each model's numbers and status as the registry holds them."""
    resources = resources or StageResources.open(ctx)
    written = write_report(ctx, registry_of(ctx, resources))
    manifest = {"stage": "report", "run_id": ctx.run_id, **written}
    record_stage(ctx, "report", {"html": written["html"], "figures": len(written["figures"])}, resources)
    return manifest
