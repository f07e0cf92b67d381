"""
### trading_ml_training

Trains the direction, volatility and regime models on a diversified universe and registers them.

**plan** → **pairs** → **ingest** (one mapped task per symbol × timeframe) → **validate** (joins them; a failed
symbol is quarantined and the run goes on) → **features** → **choose_models** → the six training
tasks in parallel (each walk-forward over 4 folds) → **combine** (the direction ensemble of the models
that trained) → **evaluate** (out-of-sample metrics with 95%
block-bootstrap intervals beside baselines) → **deploy** (promote only significant skill that is not
worse than production, in the registry: MongoDB from the `mongo_default` connection, else TinyDB)
→ **report** (HTML with plots).

Each task calls one stage of `trading_ml.pipeline` (a module each: `trading_ml.pipeline.validate`, ...);
a stage finds its inputs in the run's folder, and XCom carries only the small manifests it returns
(paths, counts, sha256, metrics). The run's as-of date is the end of its data interval (scheduled
and backfill runs), the trigger day (manual runs), or the `as_of` Param when set; every window
derives from it. Every file and model version belongs to this DAG run: `data/runs/<as-of>/<run id>/`,
so two runs on the same day never touch each other's files, and a retried task keeps its version.
An error that retrying cannot cure (bad input, failed validation) fails its task at once; a store
or data provider that did not answer, or a lost worker, is retried. A training task that still
fails does not stop the others: evaluate, deploy and report go on with the models that trained, and
the report names the rest.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from contextlib import contextmanager

from airflow.sdk import Param, dag, get_current_context, task
from airflow.sdk.exceptions import AirflowFailException, AirflowSkipException
from trading_ml_airflow import ForwardOnlyCron, mongo_uri  # plugins/: shared with the plugin

from trading_ml.drivers import load_settings, run_settings, training_slots
from trading_ml.errors import SourceUnavailable, StoreError, TradingMLError
from trading_ml.models import TRAINED_MODELS
from trading_ml.models.catalogue import MODEL_NAMES, longest_first
from trading_ml.pipeline.trigger_form import form_fields
from trading_ml.run import RunContext

SETTINGS = load_settings()  # config.yaml (or TRADING_ML_CONFIG): schedule, pool, retries, universe
AIRFLOW = SETTINGS.airflow
TRAIN_TASK = "train_{}"
REJECT_ALL = "promote none"


def this_run() -> dict:
    """The plan task's XCom, pulled by each task that needs it: the graph then shows the pipeline's
    order instead of an edge from plan to every task."""
    run = get_current_context()["ti"].xcom_pull(task_ids="plan")
    if not run:  # evaluate runs whatever came before it (all_done): a failed plan must fail it, not retry it
        raise AirflowFailException("the run was never planned (the plan task failed); see the plan task's log")
    return run


def run_context(run: dict) -> RunContext:
    return RunContext.from_dict(run["context"], run_settings(run["context"], mongo_uri(AIRFLOW.mongo_conn_id)))


@contextmanager
def failing_fast():
    """A store or provider that did not answer raises as it is (Airflow retries the task); any other
    error of the library (bad input, failed validation) cannot be cured by retrying: fail now."""
    try:
        yield
    except (StoreError, SourceUnavailable):
        raise
    except TradingMLError as error:
        raise AirflowFailException(f"{type(error).__name__}: {error}") from error


def call(stage, *args, source_retries: int | None = None, run: dict | None = None, **options):
    """``stage(ctx, *args, resources=..., **options)`` for this task's run (``run``: the plan, when the task
    pulled it already), failing fast where retrying cannot help.
    Each task imports its stage's module when it runs, so a parse of this file (every 30 s) loads
    neither pandas-ta nor torch, and a data task never loads torch."""
    from trading_ml.pipeline.resources import StageResources

    with failing_fast():
        ctx = run_context(run or this_run())
        with StageResources.open(ctx, source_retries) as resources:
            return stage(ctx, *args, resources=resources, **options)


@task(
    doc_md="Resolve the run: as-of date, symbols, timeframes, source and models from config.yaml and the trigger form."
)
def plan():
    from trading_ml.pipeline.planning import as_of_for_run, plan_run
    from trading_ml.pipeline.trigger_form import form_request

    context = get_current_context()
    params, dag_run = context["params"], context["dag_run"]
    with failing_fast():
        request = form_request(SETTINGS, dict(params), dag_run.run_id)
        as_of = as_of_for_run(request.as_of, dag_run.run_type == "manual", dag_run.data_interval_end, dag_run.run_after)
        ctx = plan_run(SETTINGS, dataclasses.replace(request, as_of=as_of))
        return {"context": ctx.to_dict(), "run_root": str(ctx.run_root), "pairs": [list(pair) for pair in ctx.pairs]}


@task(doc_md="The (symbol, timeframe) pairs the run ingests, one mapped ingest task each.")
def pairs(run: dict) -> list[list[str]]:
    return run["pairs"]


@task(
    doc_md="Fetch one symbol and timeframe into raw/ and the store. A provider that does not answer is retried "
    "with exponential backoff; bad data gives a 'failed' manifest that validation quarantines.",
    pool=AIRFLOW.source_pool,
    retries=AIRFLOW.ingest_retries,
    retry_delay=dt.timedelta(seconds=AIRFLOW.retry_delay_seconds),
    retry_exponential_backoff=True,
    max_retry_delay=dt.timedelta(seconds=AIRFLOW.max_retry_delay_seconds),
    map_index_template="{{ task.op_kwargs['pair'] | join(' ') }}",
)
def ingest(pair: list[str]):
    from trading_ml.pipeline.ingest import ingest

    return call(ingest, [pair], source_retries=0)[0]  # one retry layer: Airflow's (the source tries once per call)


@task(
    doc_md="Join every ingestion (even failed ones) and run the six checks; quarantine what fails, with reasons.",
    trigger_rule="all_done_min_one_success",
)
def validate():
    from trading_ml.pipeline.validate import validate

    return call(validate)


@task(doc_md="Engineer the 126 features and the targets; write per-symbol CSVs and one training table per timeframe.")
def features():
    from trading_ml.pipeline.features import build_features

    return call(build_features)


@task.branch(doc_md="Pick the training tasks of the models the run's `models` Param names.")
def choose_models() -> list[str]:
    return [TRAIN_TASK.format(name) for name in this_run()["context"]["models"]]


@task(
    doc_md="Fit one model on the training segment, save its artifacts under models/ and register a candidate.",
    pool=AIRFLOW.training_pool,
    weight_rule="absolute",
)
def train(model_name: str):
    from trading_ml.pipeline.train import train

    run = this_run()
    return call(train, model_name, run=run, sharing=parallel_trainings(run["context"]["models"]))


def parallel_trainings(models: list[str]) -> int:
    """The trainings sharing a worker's cores: airflow.parallel_trainings, else as many as the
    training pool lets run at once, or every model the run trains when fewer."""
    return AIRFLOW.parallel_trainings or min(training_slots(SETTINGS), sum(name in TRAINED_MODELS for name in models))


def training_priority(name: str) -> int:
    """The pool starts the longest trainings first, so that they end together."""
    return len(TRAINED_MODELS) - longest_first(TRAINED_MODELS).index(name)


@task(
    doc_md="Build each combination of the models that trained (the direction ensemble): "
    "its files, predictions and candidate.",
    trigger_rule="all_done",  # after every chosen training task, whatever its outcome
)
def combine():
    from trading_ml.pipeline.train import combine

    return call(combine)


@task(
    doc_md="Score every model that trained (and the direction ensemble) out of sample beside its baselines; "
    "a model whose training task failed is named in the report and the others go on.",
    trigger_rule="all_done",  # after every chosen training task, whatever its outcome; none trained is an error
)
def evaluate():
    from trading_ml.pipeline.evaluate import evaluate

    return call(evaluate)


@task(
    doc_md="Promote each model that beats its baselines and the production version (with `airflow.approve_promotions`: "
    "propose it for a person's approval); record every decision."
)
def deploy():
    from trading_ml.pipeline.deploy import deploy
    from trading_ml.verify import start_helper

    run = this_run()
    if not run["context"]["deploy"]:
        raise AirflowSkipException("deploy is off for this run (Param 'deploy'); the models stay candidates")
    start_helper()  # forked now, before a MongoDB client's threads: with the worker's preloaded libraries, at once
    return call(deploy, run=run, propose_only=AIRFLOW.approve_promotions)


@task.short_circuit(
    ignore_downstream_trigger_rules=False,
    doc_md="Ask a person only when deploy proposed a promotion (else approve is skipped and the report follows).",
)
def proposals() -> bool:
    decisions = get_current_context()["ti"].xcom_pull(task_ids="deploy")["decisions"]
    return any(d["status"] == "proposed" for d in decisions.values())


def approve():
    """Airflow's human-in-the-loop: the proposals and their evidence, the models to promote, a reason."""
    from airflow.providers.standard.operators.hitl import HITLOperator

    return HITLOperator(
        task_id="approve",
        subject="trading-ml: approve the promotions run {{ run_id }} proposes",
        body="{{ ti.xcom_pull(task_ids='deploy')['proposal'] }}",
        options=[*MODEL_NAMES, REJECT_ALL],
        multiple=True,
        params={
            "reason": Param("", type="string", title="Why", description="Kept in the registry's production history.")
        },
        execution_timeout=None,
        doc_md="A person chooses the proposed models to promote (or none) in Required Actions; "
        "who, when and why are recorded.",
    )


@task(doc_md="Promote what the person approved; every other proposal stays candidate, with who, when and why.")
def apply_approval():
    from trading_ml.pipeline.deploy import apply_approval

    answer = get_current_context()["ti"].xcom_pull(task_ids="approve")
    by = answer.get("responded_by_user") or {}
    approval = {
        "by": by.get("name") or by.get("id"),
        "at": str(answer.get("responded_at")),
        "why": (answer.get("params_input") or {}).get("reason") or "",
    }
    return call(apply_approval, [name for name in answer["chosen_options"] if name != REJECT_ALL], approval)


@task(
    doc_md="Write the run's HTML performance report (plots inline) and its JSON twin under the run root.",
    trigger_rule="none_failed",  # also when deploy is off (skipped)
)
def report():
    from trading_ml.pipeline.report import report

    return call(report)


@dag(
    dag_id="trading_ml_training",
    schedule=ForwardOnlyCron(AIRFLOW.schedule, timezone="UTC"),  # unpausing starts no run
    start_date=dt.datetime(2010, 1, 1, tzinfo=dt.UTC),
    catchup=False,
    max_active_runs=2,
    doc_md=__doc__,
    tags=["trading-ml", "training"],
    default_args={
        "owner": "trading-ml",
        "retries": AIRFLOW.stage_retries,
        "retry_delay": dt.timedelta(seconds=AIRFLOW.retry_delay_seconds),
        "retry_exponential_backoff": True,
        "max_retry_delay": dt.timedelta(seconds=AIRFLOW.max_retry_delay_seconds),
    },
    params={name: Param(**field) for name, field in form_fields(SETTINGS).items()},  # the trigger form (its widgets)
)
def trading_ml_training():
    """plan feeds pairs, the one task that needs its values as an argument; every other task pulls
    the plan itself, so the graph's edges are the pipeline's order."""
    ingested = ingest.expand(pair=pairs(plan()))
    trained = [
        train.override(task_id=TRAIN_TASK.format(name), priority_weight=training_priority(name))(model_name=name)
        for name in TRAINED_MODELS
    ]
    ingested >> validate() >> features() >> choose_models() >> trained
    deployed, reported = deploy(), report()
    trained >> combine() >> evaluate() >> deployed
    if AIRFLOW.approve_promotions:  # deploy proposes; a person approves in the UI; then the report
        deployed >> proposals() >> approve() >> apply_approval() >> reported
    else:
        deployed >> reported


trading_ml_training()
