"""A person approves promotions (airflow.approve_promotions): deploy proposes what the gate would
promote and promotes nothing; the answer promotes exactly what was approved, with who, when and why
in the record and the production history; a rejection, or an approval of what was not proposed,
promotes nothing."""

from __future__ import annotations

import pytest

from tests.conftest import AS_OF, make_settings, quick
from tests.pipeline.test_deploy import with_strength
from tests.stages import run_through
from trading_ml.errors import ConfigError
from trading_ml.pipeline.deploy import apply_approval, deploy
from trading_ml.pipeline.resources import StageResources
from trading_ml.registry import ModelRegistry
from trading_ml.run import RunContext

MODEL = "direction_xgboost"
SYMBOLS = ["^GSPC", "^VIX", "AAPL", "MSFT", "JPM", "XOM", "JNJ", "WMT"]


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    return with_strength(quick(make_settings(tmp_path_factory.mktemp("approval") / "data")), 0.3)


def proposed_run(settings) -> tuple[RunContext, StageResources, dict]:
    ctx = RunContext.create(settings, AS_OF, SYMBOLS, ["1d"], "synthetic", models=[MODEL])
    resources = StageResources.open(ctx)
    run_through(ctx, resources, "evaluate")
    return ctx, resources, deploy(ctx, resources, propose_only=True)


def test_deploy_proposes_what_the_gate_would_promote_and_a_rejection_keeps_it_candidate(settings):
    ctx, resources, deployed = proposed_run(settings)
    registry = ModelRegistry(resources.store, settings.data_dir)
    decision = deployed["decisions"][MODEL]
    assert decision["status"] == "proposed" and decision["reason"].startswith("proposed: significant skill"), decision
    assert registry.production(MODEL) is None  # nothing promoted before a person answers
    assert f"**{MODEL} {decision['version']}**: proposed: significant skill" in deployed["proposal"]
    assert (
        deploy(ctx, resources, propose_only=True)["decisions"][MODEL] == decision
    )  # a re-run proposes the same, promotes nothing
    assert registry.production(MODEL) is None
    with pytest.raises(
        ConfigError, match="approved regime_rf, which this run did not propose; proposed: direction_xgboost"
    ):
        apply_approval(
            ctx, ["regime_rf"], {"by": "alice", "at": "2026-12-05T10:00:00+00:00", "why": "x"}, resources=resources
        )
    answer = apply_approval(
        ctx, [], {"by": "alice", "at": "2026-12-05T10:00:00+00:00", "why": "wait a quarter"}, resources=resources
    )
    assert answer["decisions"][MODEL]["status"] == "candidate" and registry.production(MODEL) is None
    record = registry.record_for_run(MODEL, ctx.run_id)
    assert record["deploy_decision"].startswith(
        "stays candidate: rejected by alice at 2026-12-05T10:00:00+00:00: wait a quarter; the gate: significant skill"
    )
    assert record["approval"] == {
        "by": "alice",
        "at": "2026-12-05T10:00:00+00:00",
        "why": "wait a quarter",
        "approved": False,
    }
    with pytest.raises(
        ConfigError, match="did not propose"
    ):  # a rejected proposal is not approved later by replaying the answer
        apply_approval(ctx, [MODEL], {"by": "mallory", "at": "later", "why": ""}, resources=resources)
    resources.close()


def test_an_approval_promotes_with_who_when_and_why_in_the_history(settings):
    ctx, resources, deployed = proposed_run(settings)
    registry = ModelRegistry(resources.store, settings.data_dir)
    approval = {"by": "bob", "at": "2026-12-05T11:00:00+00:00", "why": "the IC held for four quarters"}
    answer = apply_approval(ctx, [MODEL], approval, resources=resources)
    assert answer["decisions"][MODEL]["status"] == "production" and answer["approval"] == approval
    pointer = registry.production(MODEL)
    assert pointer["run_id"] == ctx.run_id and pointer["history"][-1]["approval"] == approval
    assert pointer["reason"].startswith(
        "promoted: approved by bob at 2026-12-05T11:00:00+00:00: the IC held for four quarters; the gate:"
    )
    assert registry.record_for_run(MODEL, ctx.run_id)["status"] == "production"
    again = apply_approval(ctx, [MODEL], approval, resources=resources)  # the same answer again changes nothing
    assert again["decisions"][MODEL]["status"] == "production" and len(registry.production(MODEL)["history"]) == len(
        pointer["history"]
    )
    resources.close()
