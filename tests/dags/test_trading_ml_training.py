"""The Airflow DAG: it imports cleanly, reads like the plan, and runs end to end through Airflow."""

from __future__ import annotations

import datetime as dt
import json
import warnings
from urllib.parse import urlsplit

import pytest

from tests.conftest import QUICK_MODELS
from tests.dags.conftest import REPO, write_config
from trading_ml.drivers import load_settings
from trading_ml.errors import ConfigError
from trading_ml.loading import ModelLoader
from trading_ml.models import TRAINED_MODELS
from trading_ml.models.catalogue import LONGEST_FIRST
from trading_ml.models.threads import fit_threads
from trading_ml.pipeline.planning import as_of_for_run
from trading_ml.registry import ModelRegistry
from trading_ml.run import find_runs, folder_name, runs_root
from trading_ml.storage import MongoStore, TinyStore

DAG_ID = "trading_ml_training"
TRAIN_TASKS = [f"train_{name}" for name in TRAINED_MODELS]
SYMBOLS = ["^GSPC", "^VIX", "AAPL", "XOM", "JPM", "MSFT"]
XCOM_LIMIT = 32_000  # bytes of JSON: manifests are a few kB; a frame of bars would be megabytes


def load_dag(config_path, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("TRADING_ML_CONFIG", str(config_path))
    bag = DagBag(str(REPO / "dags"))
    assert bag.import_errors == {}
    return bag.get_dag(DAG_ID)


def run_dag(dag, **conf):
    """One whole run through Airflow (dag.test); the run and its task instances by (task_id, map_index)."""
    run = dag.test(run_conf={"symbols": SYMBOLS, "timeframes": ["1d"], "source": "synthetic", **conf})
    return run, {(ti.task_id, ti.map_index): ti for ti in run.get_task_instances()}


def xcoms(run) -> dict:
    from airflow.models.xcom import XComModel
    from airflow.utils.session import create_session

    with create_session() as session:
        rows = session.query(XComModel).filter(XComModel.dag_id == DAG_ID, XComModel.run_id == run.run_id)
        return {(x.task_id, x.map_index, x.key): x.value for x in rows}


@pytest.fixture
def default_dag(airflow_db, monkeypatch):
    return load_dag(REPO / "config.yaml", monkeypatch)


def test_the_dag_folder_imports_without_errors_or_deprecation_warnings(airflow_db, monkeypatch):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dag = load_dag(REPO / "config.yaml", monkeypatch)
    deprecations = [
        str(w.message)
        for w in caught
        if "deprecat" in type(w.message).__name__.lower() or "deprecat" in str(w.message).lower()
    ]
    assert dag is not None and deprecations == []


def test_the_graph_reads_like_the_plan(default_dag):
    from airflow.sdk.definitions.mappedoperator import MappedOperator
    from airflow.timetables.interval import CronDataIntervalTimetable

    settings = load_settings(REPO / "config.yaml")
    tasks = default_dag.task_dict
    assert set(tasks) == {
        "plan",
        "pairs",
        "ingest",
        "validate",
        "features",
        "choose_models",
        *TRAIN_TASKS,
        "combine",
        "evaluate",
        "deploy",
        "report",
    }
    ingest = tasks["ingest"]
    assert tasks["plan"].downstream_task_ids == {
        "pairs"
    }  # plan feeds only pairs; the others pull it: no edge to every task
    assert isinstance(ingest, MappedOperator) and ingest.upstream_task_ids == {"pairs"}
    assert ingest.pool == settings.airflow.source_pool and ingest.retries == settings.airflow.ingest_retries
    assert ingest.retry_exponential_backoff
    assert tasks["validate"].upstream_task_ids == {"ingest"}
    assert tasks["validate"].trigger_rule == "all_done_min_one_success"  # one failed symbol does not stop the run
    assert tasks["features"].upstream_task_ids == {"validate"}
    assert tasks["choose_models"].upstream_task_ids == {"features"}
    for name in TRAIN_TASKS:
        assert tasks[name].upstream_task_ids == {"choose_models"}
        assert tasks[name].downstream_task_ids == {"combine"}
        assert tasks[name].pool == settings.airflow.training_pool  # at most its slots train at once
    assert {tasks[name].weight_rule for name in TRAIN_TASKS} == {"absolute"}  # the weight as given, not summed
    by_priority = sorted(TRAIN_TASKS, key=lambda name: -tasks[name].priority_weight)
    assert by_priority == [f"train_{name}" for name in LONGEST_FIRST]  # the pool starts the longest first
    assert tasks["combine"].trigger_rule == "all_done"  # after every chosen training task, whatever its outcome
    assert tasks["evaluate"].upstream_task_ids == {"combine"} and tasks["evaluate"].trigger_rule == "all_done"
    assert [t.task_id for t in default_dag.leaves] == ["report"] and tasks["report"].upstream_task_ids == {"deploy"}
    assert tasks["deploy"].upstream_task_ids == {"evaluate"}
    assert tasks["report"].trigger_rule == "none_failed"  # a run with deploy off still gets its report
    assert all(t.doc_md for t in tasks.values())
    assert isinstance(default_dag.timetable, CronDataIntervalTimetable) and default_dag.catchup is False
    assert default_dag.timetable.summary == settings.airflow.schedule
    defaults = {name: param.value for name, param in default_dag.params.items()}
    assert defaults["symbols"] == settings.symbols and defaults["timeframes"] == ["1d", "1h"]
    assert defaults["models"] == list(TRAINED_MODELS) and defaults["deploy"] is True and defaults["other_symbols"] == []


def quarterly_runs(dag, start: dt.datetime, end: dt.datetime) -> list:
    """The runs the scheduler's timetable lays out between two dates, as a backfill does."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import TimeRestriction

    timetable, runs, last = coerce_to_core_timetable(dag.timetable), [], None
    restriction = TimeRestriction(earliest=start, latest=end, catchup=True)
    while info := timetable.next_dagrun_info(last_automated_data_interval=last, restriction=restriction):
        runs.append(info)
        last = info.data_interval
    return runs


def test_with_approve_promotions_deploy_waits_for_a_person_before_the_report(airflow_db, tmp_path, monkeypatch):
    """airflow.approve_promotions: deploy proposes, Airflow's human-in-the-loop task asks (only when
    something was proposed), apply_approval promotes the answer, then the report. Off (the default),
    deploy promotes itself and the report follows it (test above)."""
    from airflow.providers.standard.operators.hitl import HITLOperator

    dag = load_dag(write_config(tmp_path, airflow={"approve_promotions": True}), monkeypatch)
    tasks = dag.task_dict
    assert tasks["proposals"].upstream_task_ids == {"deploy"} and tasks["approve"].upstream_task_ids == {"proposals"}
    assert tasks["apply_approval"].upstream_task_ids == {"approve"} and tasks["report"].upstream_task_ids == {
        "apply_approval"
    }
    approve = tasks["approve"]
    assert isinstance(approve, HITLOperator) and approve.multiple and "direction_xgboost" in approve.options
    assert "xcom_pull(task_ids='deploy')['proposal']" in approve.body and "reason" in approve.params


def test_a_backfill_year_is_four_quarterly_runs_each_with_its_own_as_of(default_dag):
    start, end = dt.datetime(2025, 1, 1, tzinfo=dt.UTC), dt.datetime(2025, 12, 31, tzinfo=dt.UTC)
    runs = quarterly_runs(default_dag, start, end)
    as_ofs = [as_of_for_run(None, False, info.data_interval.end, info.run_after) for info in runs]
    assert [a.isoformat() for a in as_ofs] == ["2025-04-01", "2025-07-01", "2025-10-01", "2026-01-01"]
    triggered = dt.datetime(2026, 11, 24, 9, tzinfo=dt.UTC)
    assert as_of_for_run(None, True, dt.datetime(2026, 10, 1, 6, tzinfo=dt.UTC), triggered) == triggered.date()
    assert as_of_for_run("2026-08-20", True, None, triggered) == dt.date(2026, 8, 20)


@pytest.fixture(scope="module")
def two_airflow_runs(airflow_db, mongo_server, tmp_path_factory):
    """Two whole runs through Airflow, as-of a quarter apart, into the SecantusDB fixture through the
    `mongo_default` connection."""
    monkeypatch = pytest.MonkeyPatch()
    folder = tmp_path_factory.mktemp("dag-runs")
    address = urlsplit(mongo_server.uri)
    database = f"dag_{folder.name.replace('-', '_')}"
    monkeypatch.setenv("AIRFLOW_CONN_MONGO_DEFAULT", f"mongo://{address.hostname}:{address.port}/{database}")
    dag = load_dag(write_config(folder, models=QUICK_MODELS), monkeypatch)  # registration is under test, not skill
    runs = [run_dag(dag, as_of=as_of) for as_of in ("2026-08-20", "2026-11-20")]
    store = MongoStore.connect(mongo_server.uri, database)
    yield runs, store, folder / "data"
    store.close()
    monkeypatch.undo()


def test_a_whole_run_through_airflow_registers_the_five_models_in_mongodb(two_airflow_runs):
    (run, instances), _ = two_airflow_runs[0]
    store, data_dir = two_airflow_runs[1], two_airflow_runs[2]
    assert run.state == "success"
    assert {ti.state for ti in instances.values()} == {"success"}
    assert len([key for key in instances if key[0] == "ingest"]) == len(SYMBOLS)
    registry = ModelRegistry(store, data_dir)
    run_root = data_dir / "runs" / "2026-08-20" / folder_name(run.run_id)
    assert xcoms(run)[("plan", -1, "return_value")]["run_root"] == str(run_root)
    for name in TRAINED_MODELS:
        record = registry.record(name, "1.0")
        assert record["run_id"] == run.run_id  # Airflow's DAG run id
        assert all((runs_root(data_dir) / a["path"]).parent == run_root / "models" for a in record["artifacts"])
    deployed = xcoms(run)[("deploy", -1, "return_value")]
    assert deployed["store"]["kind"] == "mongodb" and set(deployed["decisions"]) == {*TRAINED_MODELS, "direction"}
    trained = xcoms(run)[("train_regime_rf", -1, "return_value")]
    assert trained["artifacts"] == registry.record("regime_rf", "1.0")["artifacts"]
    at_once = min(fit_threads(0, 1), len(TRAINED_MODELS))  # the training pool's slots: one per core
    assert trained["threads"] == fit_threads(0, at_once)  # the trainings share the cores
    stages = json.loads((run_root / "run_manifest.json").read_text())["stages"]
    assert set(stages) == {
        "ingest",
        "validate",
        "features",
        "train",
        "evaluate",
        "deploy",
        "report",
    }  # what a CLI run records
    assert stages["ingest"]["ok"] == stages["ingest"]["pairs"] == len(SYMBOLS)


def test_xcom_holds_small_manifests_not_data(two_airflow_runs):
    (run, _), _ = two_airflow_runs[0]
    values = xcoms(run)
    assert {key[0] for key in values} >= {"plan", "ingest", "validate", "features", *TRAIN_TASKS, "evaluate", "deploy"}
    for key, value in values.items():
        size = len(json.dumps(value))
        assert size < XCOM_LIMIT, (key, size)
    ingested = values[("ingest", 0, "return_value")]
    assert {"symbol", "timeframe", "path", "sha256", "rows"} <= set(ingested)


def test_runs_with_different_as_of_dates_have_their_own_roots_and_versions(two_airflow_runs):
    (first, _), (second, instances) = two_airflow_runs[0]
    store, data_dir = two_airflow_runs[1], two_airflow_runs[2]
    assert second.state == "success"
    plans = [xcoms(run)[("plan", -1, "return_value")] for run in (first, second)]
    assert [p["run_root"] for p in plans] == [
        str(data_dir / "runs" / d / folder_name(r.run_id)) for d, r in (("2026-08-20", first), ("2026-11-20", second))
    ]
    registry = ModelRegistry(store, data_dir)
    for name in TRAINED_MODELS:
        versions = {r["version"]: r["run_id"] for r in registry.records(name)}
        assert versions == {"1.0": first.run_id, "2.0": second.run_id}


def test_one_symbol_failing_to_ingest_is_quarantined_and_the_run_succeeds(airflow_db, tmp_path, monkeypatch):
    monkeypatch.delenv("AIRFLOW_CONN_MONGO_DEFAULT", raising=False)
    config = write_config(
        tmp_path,
        airflow={"ingest_retries": 1, "retry_delay_seconds": 1, "max_retry_delay_seconds": 1},
        sources={"synthetic": {"seed": 42, "epoch": "2000-01-03", "faults": {"JPM": ["outage"]}}},
    )
    dag = load_dag(config, monkeypatch)
    run, instances = run_dag(dag, as_of="2026-11-20", models=["volatility_garch"], deploy=False)
    assert run.state == "success"
    failed = [ti for (task, _), ti in instances.items() if task == "ingest" and ti.state == "failed"]
    assert len(failed) == 1 and failed[0].try_number == 2  # retried once, then given up
    validated = xcoms(run)[("validate", -1, "return_value")]
    assert [(q["symbol"], q["timeframe"]) for q in validated["quarantined"]] == [("JPM", "1d")]
    assert len(validated["passed"]) == len(SYMBOLS) - 1
    states = {task: ti.state for (task, _), ti in instances.items() if task != "ingest"}
    assert states["train_volatility_garch"] == "success" and states["evaluate"] == "success"
    assert states["train_direction_xgboost"] == "skipped" and states["deploy"] == "skipped"
    assert (
        states["report"] == "success"
        and (tmp_path / "data" / "runs" / "2026-11-20" / folder_name(run.run_id) / "report.html").is_file()
    )
    registry = ModelRegistry(TinyStore(tmp_path / "data" / "fallback"), tmp_path / "data")
    assert registry.record("volatility_garch", "1.0")["status"] == "candidate"
    assert "JPM" not in registry.record("volatility_garch", "1.0")["symbols"]


def test_the_mongo_uri_comes_from_the_airflow_connection_with_its_options(airflow_db, monkeypatch):
    import trading_ml_airflow  # plugins/, on sys.path once Airflow is configured

    monkeypatch.delenv("AIRFLOW_CONN_MONGO_DEFAULT", raising=False)
    assert trading_ml_airflow.mongo_uri() is None  # no connection: the library falls back to TinyDB
    monkeypatch.setenv(
        "AIRFLOW_CONN_MONGO_DEFAULT", "mongo://trader:p%40ss@db.internal:27017/trading_system?authSource=admin&ssl=true"
    )
    assert (
        trading_ml_airflow.mongo_uri()
        == "mongodb://trader:p%40ss@db.internal:27017/trading_system?authSource=admin&ssl=true"
    )


def test_two_dag_runs_on_one_day_keep_their_own_files_and_records_and_a_retried_train_keeps_its_version(
    airflow_db, tmp_path, monkeypatch
):
    """Two manual triggers on the same day with different symbols: two run folders, two versions,
    both intact. In the second, train_regime_rf fails once after registering (as when MongoDB stops
    answering): Airflow retries it and the retry reuses the run's version."""
    from trading_ml.errors import StoreError

    monkeypatch.delenv("AIRFLOW_CONN_MONGO_DEFAULT", raising=False)
    dag = load_dag(
        write_config(tmp_path, airflow={"stage_retries": 1, "retry_delay_seconds": 1, "max_retry_delay_seconds": 1}),
        monkeypatch,
    )
    models = ["volatility_garch", "regime_rf"]
    first, _ = run_dag(dag, as_of="2026-11-20", symbols=["^GSPC", "^VIX", "AAPL", "XOM"], models=models)
    files = {
        path: path.read_bytes() for path in find_runs(tmp_path / "data")[0].layout.root.rglob("*") if path.is_file()
    }

    publish, failed = ModelRegistry.publish, []

    def publish_then_fail_once(registry, record):
        published = publish(registry, record)
        if record["model_name"] == "regime_rf" and not failed:
            failed.append(published["version"])
            raise StoreError("MongoDB at mongodb://db/ did not answer (injected after the record was written)")
        return published

    monkeypatch.setattr(ModelRegistry, "publish", publish_then_fail_once)
    second, instances = run_dag(dag, as_of="2026-11-20", symbols=["^GSPC", "^VIX", "JPM", "MSFT"], models=models)
    assert first.state == second.state == "success" and first.run_id != second.run_id
    assert instances[("train_regime_rf", -1)].try_number == 2 and failed == ["2.0"]
    runs = find_runs(tmp_path / "data")
    assert [r.run_id for r in runs] == [first.run_id, second.run_id] and {r.as_of.isoformat() for r in runs} == {
        "2026-11-20"
    }
    assert {
        path: path.read_bytes() for path in runs[0].layout.root.rglob("*") if path.is_file()
    } == files  # the first run untouched
    registry = ModelRegistry(TinyStore(tmp_path / "data" / "fallback"), tmp_path / "data")
    for name in models:
        records = {r["run_id"]: r for r in registry.records(name)}
        assert {run_id: r["version"] for run_id, r in records.items()} == {
            first.run_id: "1.0",
            second.run_id: "2.0",
        }  # no third
        assert "AAPL" in records[first.run_id]["symbols"] and "JPM" in records[second.run_id]["symbols"]
        assert all(ModelLoader(registry).load_record(r) is not None for r in records.values())
    assert len(registry.store.find("model_versions", {"model_name": "regime_rf"})) == 2


def test_an_error_retrying_cannot_cure_fails_its_task_at_once(airflow_db, tmp_path, monkeypatch):
    """Validation below its bar is not a store outage: no retry although stage_retries allows two."""
    monkeypatch.delenv("AIRFLOW_CONN_MONGO_DEFAULT", raising=False)
    config = write_config(
        tmp_path,
        airflow={"stage_retries": 2, "retry_delay_seconds": 1, "max_retry_delay_seconds": 1},
        validation={"min_pass_share": 1.0},
        sources={"synthetic": {"seed": 42, "epoch": "2000-01-03", "faults": {"AAPL": ["split"]}}},
    )
    run, instances = run_dag(
        load_dag(config, monkeypatch), as_of="2026-11-20", models=["volatility_garch"], deploy=False
    )
    assert run.state == "failed"
    validate = instances[("validate", -1)]
    assert validate.state == "failed" and validate.try_number == 1


@pytest.mark.parametrize(
    "conf, words",
    [
        ({"symbols": [], "other_symbols": []}, "Symbols: choose at least one symbol"),
        (
            {"other_symbols": ["aapl"]},
            "Other symbols: 'aapl' is not a ticker: use upper-case letters, digits and . - = ^ (for example AAPL, "
            "^GSPC, BRK-B) (did you mean AAPL?)",
        ),
        ({"other_symbols": ["NOT A TICKER"]}, "Other symbols: 'NOT A TICKER' is not a ticker"),
        ({"timeframes": []}, "Timeframes: choose at least one of 1d, 1h"),
        ({"timeframes": ["1m"]}, "Timeframes: '1m' is not one of this deployment's (1d, 1h; config.yaml `timeframes`)"),
        ({"models": ["direction_random"]}, "Models: 'direction_random' is not one of this deployment's"),
        (
            {"source": "nonsense"},
            "Data source: 'nonsense' is not a source; choose one of yahoo, synthetic, sample, csv",
        ),
        ({"source": "csv"}, "CSV folder: the csv source reads files from a folder; fill in CSV folder"),
        ({"as_of": "2026-13-01"}, "As-of date: as-of date '2026-13-01' is not YYYY-MM-DD"),
        ({"symbol": ["AAPL"]}, "'symbol' is not a field of this form"),
    ],
    ids=[
        "no symbols",
        "lower case",
        "not a ticker",
        "no timeframes",
        "unknown timeframe",
        "unknown model",
        "unknown source",
        "csv without folder",
        "impossible date",
        "misspelt field",
    ],
)
def test_the_trigger_form_refuses_what_cannot_run_in_words(default_dag, conf, words):
    """Before: Airflow's schema answered with the raw pattern ('aapl' does not match '^[\\^A-Z0-9]...');
    now every problem is a sentence naming the field, and the plan task refuses the same form."""
    from trading_ml.pipeline.trigger_form import form_problems, form_request, form_values

    settings = load_settings(REPO / "config.yaml")
    problems = form_problems(settings, form_values(settings, conf))
    assert any(problem.startswith(words) for problem in problems), problems
    assert not any("does not match" in problem or "^[" in problem for problem in problems)
    with pytest.raises(ConfigError, match="the trigger form cannot run"):
        form_request(settings, form_values(settings, conf))


def test_the_trigger_form_has_widgets_descriptions_and_airflow_accepts_its_defaults(default_dag):
    """Multi-selects (arrays with examples) for symbols, timeframes and models, a dropdown (enum) for the
    source, a text field for the CSV folder, and a description on every field."""
    schemas = {name: param.schema for name, param in default_dag.params.items()}
    settings = load_settings(REPO / "config.yaml")
    assert (
        schemas["symbols"]["examples"] == settings.symbols
        and schemas["symbols"]["values_display"]["AAPL"] == "AAPL (Technology)"
    )
    assert schemas["timeframes"]["examples"] == ["1d", "1h"] and schemas["models"]["examples"] == list(TRAINED_MODELS)
    assert schemas["source"]["enum"] == ["yahoo", "synthetic", "sample", "csv"] and "enum" not in schemas["csv_folder"]
    assert all(param.description and schemas[name].get("title") for name, param in default_dag.params.items())
    default_dag.params.validate()  # the form as it opens is a valid run
    from trading_ml.pipeline.trigger_form import form_problems, form_values

    assert form_problems(settings, form_values(settings, {})) == []


def test_unpausing_starts_no_run_nobody_asked_for(default_dag):
    """Before: the cron's data intervals with catchup=False made the scheduler run the last finished
    quarter at once when the DAG was unpaused (the trigger form unpauses by default): a full-universe
    run beside the small one that was asked for. Now the next automatic run is the quarter that ends
    after now, both for a DAG that never ran and one paused over missed quarters; backfills still
    cover past quarters (the test above)."""
    from airflow.serialization.encoders import coerce_to_core_timetable
    from airflow.timetables.base import DataInterval, TimeRestriction

    timetable, now = coerce_to_core_timetable(default_dag.timetable), dt.datetime.now(dt.UTC)
    restriction = TimeRestriction(earliest=default_dag.start_date, latest=None, catchup=False)
    first = timetable.next_dagrun_info(last_automated_data_interval=None, restriction=restriction)
    assert first.run_after > now and first.data_interval.start <= now
    year_ago = DataInterval(dt.datetime(2025, 7, 1, 6, tzinfo=dt.UTC), dt.datetime(2025, 10, 1, 6, tzinfo=dt.UTC))
    after_pause = timetable.next_dagrun_info(last_automated_data_interval=year_ago, restriction=restriction)
    assert after_pause.run_after > now and after_pause.run_after - now < dt.timedelta(days=93)


def test_a_source_that_cannot_work_fails_the_run_at_once_with_its_line_in_the_log(
    airflow_db, tmp_path, monkeypatch, capfd
):
    """A CSV folder that does not exist passes the form; the plan task fails on its first try, nothing is ingested."""
    monkeypatch.delenv("AIRFLOW_CONN_MONGO_DEFAULT", raising=False)
    dag = load_dag(
        write_config(tmp_path, airflow={"stage_retries": 3, "ingest_retries": 4, "retry_delay_seconds": 5}), monkeypatch
    )
    run, instances = run_dag(dag, as_of="2026-11-20", source="csv", csv_folder=str(tmp_path / "nonexistent"))
    assert run.state == "failed" and (run.end_date - run.start_date).total_seconds() < 30
    plan = instances[("plan", -1)]
    assert plan.state == "failed" and plan.try_number == 1
    ran = {
        task: (ti.state, ti.try_number)
        for (task, _), ti in instances.items()
        if ti.state not in ("upstream_failed", None)
    }
    assert ran == {
        "plan": ("failed", 1),
        "combine": ("failed", 1),
        "evaluate": ("failed", 1),
    }  # (all_done) stop at once: nothing was planned
    out, err = capfd.readouterr()
    assert f"ConfigError: csv source folder {tmp_path / 'nonexistent'} does not exist" in out + err


def test_a_lost_worker_is_retried_and_a_model_that_never_trains_leaves_the_others_registered(
    airflow_db, tmp_path, monkeypatch
):
    """train_volatility_garch dies once (as when its worker is lost) and is retried; train_regime_rf
    fails on every try. evaluate, deploy and report go on with what trained, the report names
    regime_rf, and the run succeeds."""
    from trading_ml.pipeline import train as train_stage

    monkeypatch.delenv("AIRFLOW_CONN_MONGO_DEFAULT", raising=False)
    dag = load_dag(
        write_config(tmp_path, airflow={"stage_retries": 1, "retry_delay_seconds": 1, "max_retry_delay_seconds": 1}),
        monkeypatch,
    )
    train, lost = train_stage.train, []

    def flaky_train(ctx, name, **rest):
        if name == "regime_rf":
            raise RuntimeError("worker lost: regime_rf's process was killed")
        if name == "volatility_garch" and not lost:
            lost.append(name)
            raise RuntimeError("worker lost: the task's process was killed")
        return train(ctx, name, **rest)

    monkeypatch.setattr(train_stage, "train", flaky_train)
    run, instances = run_dag(
        dag, as_of="2026-11-20", symbols=["^GSPC", "^VIX", "AAPL", "XOM"], models=["volatility_garch", "regime_rf"]
    )
    assert run.state == "success"
    assert (
        instances[("train_volatility_garch", -1)].state == "success"
        and instances[("train_volatility_garch", -1)].try_number == 2
    )
    assert instances[("train_regime_rf", -1)].state == "failed" and instances[("train_regime_rf", -1)].try_number == 2
    assert {task: instances[(task, -1)].state for task in ("combine", "evaluate", "deploy", "report")} == dict.fromkeys(
        ("combine", "evaluate", "deploy", "report"), "success"
    )
    evaluated = xcoms(run)[("evaluate", -1, "return_value")]
    assert (
        list(evaluated["models"]) == ["volatility_garch"]
        and "train_regime_rf failed" in evaluated["not_trained"]["regime_rf"]
    )
    report = (find_runs(tmp_path / "data")[0].layout.root / "report.html").read_text()
    assert "Not trained" in report and "regime_rf: its task train_regime_rf failed" in report
