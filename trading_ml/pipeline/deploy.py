"""Stage 6, deploy: promote only measured skill: significant over the best baseline and not
significantly worse than the production version; every decision and its evidence is recorded."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from trading_ml.errors import ConfigError, ConflictError, DataError
from trading_ml.io import number, read_json, read_parquet, write_json
from trading_ml.loading import one_line
from trading_ml.models import evaluation
from trading_ml.models.catalogue import task_of
from trading_ml.models.dataset import TrainingData
from trading_ml.models.splits import out_of_sample_fold
from trading_ml.pipeline.resources import OWN_RESOURCES, StageResources
from trading_ml.pipeline.run_manifest import stage
from trading_ml.registry import ModelRegistry
from trading_ml.run import RunContext
from trading_ml.verify import Verifier

log = logging.getLogger(__name__)

DEPLOY_ATTEMPTS = 5  # decisions re-made when another deploy changed production in between
PROPOSED = "proposed"  # the gate would promote it; a person decides (airflow.approve_promotions)


@stage("deploy", summarize=lambda manifest: {name: d["status"] for name, d in manifest["decisions"].items()})
def deploy(ctx: RunContext, resources: StageResources = OWN_RESOURCES, *, propose_only: bool = False) -> dict:
    """Promote each candidate the evaluate stage scored whose out-of-sample skill over its best
    baseline is significant (the one-sided lower bound of the improvement above zero) and that is
    not significantly worse than the current production version on rows that version never saw, of
    the symbols both share (a quarantined or added symbol does not stop retraining). A production version that cannot be
    scored on this run's rows (no symbol in common, another timeframe, newer data) is never replaced
    automatically.
    Every decision, its interval and its reason is logged and stored in the model's record. A
    promotion is a compare-and-set against the production version the decision was made on: if
    another deploy changed it meanwhile, decide again.
    ``propose_only`` (Airflow's ``airflow.approve_promotions``): a version the gate would promote is
    ``proposed`` instead, and :func:`apply_approval` promotes what a person approved."""
    registry = resources.registry(ctx)
    evaluated = ctx.stage_manifest("evaluate")
    data = TrainingData.load(ctx, ctx.stage_manifest("features"))
    verifier = Verifier(registry, ctx.settings)
    _verify_all(verifier, registry, ctx, evaluated["models"])
    decisions = {}
    for name, summary in evaluated["models"].items():
        version = registry.record_for_run(name, ctx.run_id)["version"]
        status, reason, evidence = _deploy_one(ctx, registry, verifier, data, name, summary, propose_only)
        log.info("deploy %s %s: %s", name, version, reason)
        decisions[name] = {"version": version, "status": status, "reason": reason, "evidence": evidence}
    manifest = {
        "stage": "deploy",
        "run_id": ctx.run_id,
        "decisions": decisions,
        "store": resources.store_choice.to_dict(),
        **({"proposal": proposal_text(ctx, decisions)} if propose_only else {}),
    }
    write_json(ctx.layout.deploy_manifest, manifest)
    return manifest


def proposal_text(ctx: RunContext, decisions: dict) -> str:
    """What the person approving sees (Markdown): each proposed version with the gate's evidence, and
    the decisions that need no approval."""
    proposed = {name: d for name, d in decisions.items() if d["status"] == PROPOSED}
    lines = [
        f"Run `{ctx.run_id}` (as of {ctx.as_of}) proposes {len(proposed)} promotion(s). Choose the models to promote; "
        "every one not chosen stays candidate. Give the reason below: it is kept in the registry's history."
    ]
    for name, decision in proposed.items():
        versus = decision["evidence"].get("versus_production")
        lines.append(
            f"- **{name} {decision['version']}**: {decision['reason']}"
            + (f" (compared with production {versus['version']} on {versus['rows']:,} rows)" if versus else "")
        )
    others = [f"- {name} {d['version']}: {d['reason']}" for name, d in decisions.items() if d["status"] != PROPOSED]
    return "\n".join([*lines, *(["", "Decided without approval:", *others] if others else [])])


@stage("approve", summarize=lambda manifest: {name: d["status"] for name, d in manifest["decisions"].items()})
def apply_approval(
    ctx: RunContext, approved: list[str], approval: dict, resources: StageResources = OWN_RESOURCES
) -> dict:
    """A person's answer to the deploy's proposals: each proposed version in ``approved`` is promoted
    (if production is still what the gate compared it with), every other proposed one stays
    candidate; ``approval`` ({by, at, why}) is recorded on the record and in the production
    history. A model that was not proposed cannot be approved. Re-running with the same answer
    changes nothing."""
    registry = resources.registry(ctx)
    manifest = read_json(ctx.layout.deploy_manifest)
    decisions = manifest["decisions"]
    unknown = sorted(set(approved) - {name for name, d in decisions.items() if d["status"] in (PROPOSED, "production")})
    if unknown:
        raise ConfigError(
            f"approved {', '.join(unknown)}, which this run did not propose; proposed: "
            f"{', '.join(n for n, d in decisions.items() if d['status'] == PROPOSED) or 'none'}"
        )
    who = f"{approval.get('by') or 'unknown'} at {approval.get('at') or 'unknown time'}" + (
        f": {approval['why']}" if approval.get("why") else ""
    )
    for name, decision in decisions.items():
        if decision["status"] != PROPOSED:
            continue
        gate = decision["reason"].removeprefix(f"{PROPOSED}: ")
        if name in approved:
            reason = f"promoted: approved by {who}; the gate: {gate}"
            promoted = registry.promote(
                name, ctx.run_id, reason, expected=decision["evidence"].get("decided_against"), approval=approval
            )
            if not promoted:
                reason = f"stays candidate: approved by {who}, but production changed since the proposal; re-run deploy"
            status = "production" if promoted else "candidate"
        else:
            reason, status = f"stays candidate: rejected by {who}; the gate: {gate}", "candidate"
        registry.update(name, ctx.run_id, deploy_decision=reason, approval={**approval, "approved": name in approved})
        decisions[name] = {**decision, "status": status, "reason": reason}
    manifest = {**manifest, "decisions": decisions, "approval": approval}
    write_json(ctx.layout.deploy_manifest, manifest)
    return manifest


def _verify_all(verifier: Verifier, registry: ModelRegistry, ctx: RunContext, models: dict) -> None:
    """Every candidate and the production version it may be compared with, verified in one child."""
    records = [registry.record_for_run(name, ctx.run_id) for name in models]
    for name in models:
        incumbent = registry.production(name)
        if incumbent and incumbent["run_id"] != ctx.run_id:
            try:
                records.append(registry.record_for_run(name, incumbent["run_id"]))
            except DataError:  # production's record is gone or unreadable: decided without it below
                pass
    verifier.verify(records)


def _deploy_one(
    ctx: RunContext,
    registry: ModelRegistry,
    verifier: Verifier,
    data: TrainingData,
    name: str,
    summary: dict,
    propose_only: bool = False,
) -> tuple[str, str, dict]:
    """(status, reason, evidence): the decision this run already recorded on the same evaluation (a
    re-run reproduces it), else a new one, promoting if it says so (proposing, with ``propose_only``)."""
    for _ in range(DEPLOY_ATTEMPTS):
        record = registry.record_for_run(name, ctx.run_id)
        incumbent = registry.production(name)
        recorded = _recorded_decision(record, summary)
        if recorded:
            promote, reason, evidence = recorded
        else:
            promote, reason, evidence = _deploy_decision(ctx, registry, verifier, data, name, summary, incumbent)
            record = registry.update(name, ctx.run_id, deploy_decision=reason, deploy_evidence=evidence)
        if not promote or record["status"] == "production":
            return record["status"], reason, evidence
        if propose_only:
            reason = f"{PROPOSED}: {reason.removeprefix('promoted: ')}"
            registry.update(name, ctx.run_id, deploy_decision=reason)
            return PROPOSED, reason, evidence
        if registry.promote(name, ctx.run_id, reason, expected=evidence.get("decided_against")):
            return "production", reason, evidence
        registry.update(
            name, ctx.run_id, deploy_decision=None, deploy_evidence=None
        )  # production moved meanwhile: decide again
    raise ConflictError(f"deploy {name}: production changed {DEPLOY_ATTEMPTS} times while deciding; re-run deploy")


def _recorded_decision(record: dict, summary: dict) -> tuple[bool, str, dict] | None:
    """(promote, reason, evidence) this run recorded for the same skill, or None."""
    reason, evidence = record.get("deploy_decision"), record.get("deploy_evidence")
    if not isinstance(reason, str) or not isinstance(evidence, dict) or evidence.get("skill") != summary["skill"]:
        return None
    if reason.startswith(f"{PROPOSED}: "):  # proposed for approval: the gate's promotion, awaiting a person
        reason = f"promoted: {reason.removeprefix(f'{PROPOSED}: ')}"
    return reason.startswith("promoted"), reason, evidence


def _deploy_decision(
    ctx: RunContext,
    registry: ModelRegistry,
    verifier: Verifier,
    data: TrainingData,
    name: str,
    summary: dict,
    incumbent: dict | None,
) -> tuple[bool, str, dict]:
    skill = summary["skill"]
    evidence = {"skill": skill, "decided_against": incumbent["run_id"] if incumbent else None}
    level = f"{skill['confidence']:.0%}"
    gain = (
        f"{skill['metric']} {number(skill['value'], '+.4g')} over {skill['baseline']} "
        f"({level} interval {number(skill['low'], '+.4g')} to {number(skill['high'], '+.4g')}, "
        f"one-sided lower bound {number(skill['lower_bound'], '+.4g')})"
    )
    if not skill["better"]:
        return False, f"stays candidate: no significant skill: {gain}", evidence
    verdict = verifier.verify([registry.record_for_run(name, ctx.run_id)])[0]
    if not verdict.passed:
        return False, f"stays candidate: it failed verification: {verdict.why}", evidence
    if incumbent is None or incumbent["run_id"] == ctx.run_id:
        return True, f"promoted: significant skill: {gain}; no other production version", evidence
    record = registry.record_for_run(name, incumbent["run_id"])
    by_hand = f"`trading-ml promote {name} {summary['version']}` decides by hand"
    theirs_until, ours_until = pd.Timestamp(_trained_until(record)), data.split.test_start
    if theirs_until > ours_until:
        return (
            False,
            (
                f"stays candidate: production {record['version']} learned from data up to {theirs_until.date()}, "
                "newer than this "
                f"model's (up to {ours_until.date()}); an older run does not replace a newer model; {by_hand}"
            ),
            evidence,
        )
    rows, why_not = _unseen_rows(ctx, data, record)
    if why_not:
        return (
            False,
            f"stays candidate: production {record['version']} cannot be scored on this run's rows ({why_not}); "
            f"{by_hand}",
            evidence,
        )
    shared = rows & np.asarray(data.table.index.get_level_values("symbol").isin(record.get("symbols") or []))
    try:
        theirs = _predict_shared(verifier.load(record), data.table, record)
    except DataError as error:
        return (
            False,
            f"stays candidate: production {record['version']} cannot be scored on this run's rows ({error}); {by_hand}",
            evidence,
        )
    ours = read_parquet(ctx.layout.predictions(name))
    versus = evaluation.versus(task_of(name), data.table, data.folds, ours, theirs, shared, ctx.settings)
    evidence["versus_production"] = {
        "version": record["version"],
        "run_id": record["run_id"],
        **versus,
        "symbols": _universes(record, data),
    }
    if (
        versus["days"] < ctx.settings.models.min_compare_days
        or not np.isfinite([versus["value"], versus["low"], versus["high"]]).all()
    ):
        return (
            False,
            (
                f"stays candidate: production {record['version']} cannot be scored on this run's rows "
                f"({versus['metric']} "
                f"{number(versus['value'], '+.4g')} on {versus['days']} dates; models.min_compare_days is "
                f"{ctx.settings.models.min_compare_days}); {by_hand}"
            ),
            evidence,
        )
    against = (
        f"vs production {record['version']} on {versus['days']} dates it never saw{_universe_note(record, data)}: "
        f"{versus['metric']} {number(versus['value'], '+.4g')} "
        f"({level} interval {number(versus['low'], '+.4g')} to {number(versus['high'], '+.4g')})"
    )
    if versus["worse"]:
        return False, f"stays candidate: significantly worse than production: {against}", evidence
    return True, f"promoted: significant skill: {gain}; not significantly worse {against}", evidence


def _predict_shared(model, table: pd.DataFrame, record: dict) -> pd.DataFrame:
    """The production model's predictions on the symbols it was trained on (NaN on the others)."""
    ours = table.index.get_level_values("symbol").isin(record.get("symbols") or [])
    try:
        return model.predict(table[ours]).reindex(table.index)
    except DataError:
        raise
    except Exception as error:  # a file that loaded but cannot predict (e.g. parameters of the wrong shape)
        raise DataError(f"its model failed to predict ({type(error).__name__}: {one_line(error)})") from error


def _universes(record: dict, data: TrainingData) -> dict:
    theirs, ours = set(record.get("symbols") or []), set(data.symbols)
    return {
        "shared": sorted(theirs & ours),
        "only_production": sorted(theirs - ours),
        "only_this_run": sorted(ours - theirs),
    }


def _universe_note(record: dict, data: TrainingData) -> str:
    universes = _universes(record, data)
    if not universes["only_production"] and not universes["only_this_run"]:
        return ""
    return (
        f", on the {len(universes['shared'])} symbols both have (only in production: "
        f"{', '.join(universes['only_production']) or 'none'}; "
        f"only in this run: {', '.join(universes['only_this_run']) or 'none'})"
    )


def _trained_until(record: dict) -> str:
    """The first timestamp a registered model never saw (records before walk-forward: its test start)."""
    return record.get("trained_until") or record["split"]["test_start"]


def _unseen_rows(ctx: RunContext, data: TrainingData, record: dict) -> tuple[np.ndarray, str | None]:
    """This run's rows the production model never saw, or why it cannot be scored on them."""
    theirs, ours = set(record.get("symbols") or []), set(data.symbols)
    if not theirs & ours:
        return np.zeros(0, dtype=bool), (
            f"it serves another universe: no symbol in common (production: {', '.join(sorted(theirs)) or 'none'}; "
            f"this run: {', '.join(sorted(ours))})"
        )
    if record.get("timeframe") != data.timeframe:
        return np.zeros(
            0, dtype=bool
        ), f"it was trained on {record.get('timeframe')} bars, this run on {data.timeframe}"
    seen_until = pd.Timestamp(_trained_until(record))
    stamps = data.table.index.get_level_values("timestamp")
    shared = np.asarray(data.table.index.get_level_values("symbol").isin(sorted(theirs & ours)))
    rows = np.asarray(stamps >= seen_until)
    days = stamps[rows & shared & (out_of_sample_fold(data.folds) >= 0)].nunique()
    if days < ctx.settings.models.min_compare_days:
        return rows, (
            f"it was trained on data up to {seen_until.date()}; this run has {days} out-of-sample dates after that, "
            f"fewer than models.min_compare_days ({ctx.settings.models.min_compare_days})"
        )
    return rows, None
