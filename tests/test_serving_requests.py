"""A request's own data problem belongs to that request: it never changes which models are served.
Registry records are read through a schema: a malformed one is skipped in one line, never a 500."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient

from tests.test_model_files import copy_of  # noqa: F401 (a fixture)
from trading_ml.cli import main
from trading_ml.serving import create_app
from trading_ml.storage.tiny import TinyStore


def drop_bars_before(settings, symbol: str, day: str) -> int:
    """Remove a symbol's stored 1d bars before a day (a market input missing at older as-of dates)."""
    store = TinyStore(settings.storage.fallback_dir)
    kept = [
        d
        for d in store.find("market_data", {"symbol": symbol, "timeframe": "1d"})
        if d["timestamp"].date().isoformat() >= day
    ]
    path = next((settings.storage.fallback_dir / "market_data").glob(f"{symbol}_1d.json"))
    dropped = store.count("market_data", {"symbol": symbol, "timeframe": "1d"}) - len(kept)
    path.unlink()
    store.upsert_many("market_data", kept)
    return dropped


def test_an_as_of_without_a_market_input_is_answered_for_that_request_and_refuses_no_model(copy_of):
    settings, registry, _ = copy_of
    assert drop_bars_before(settings, "^VIX", "2025-06-01") > 100
    with TestClient(create_app(settings)) as client:
        old = client.post("/signals/generate", json={"symbols": ["AAPL"], "as_of": "2025-03-03"})
        health = client.get("/health").json()
        newest = client.post("/signals/generate", json={"symbols": ["AAPL"]})
    assert old.status_code == 422, old.text  # its rows lack the VIX features: what is missing, in one line
    assert (
        "with every market input" in old.json()["detail"]
        and old.json()["detail"].split("use an as_of from ")[1] > "2025-06-01"
    )
    assert health["refused"] == {} and "refused" not in health["status"], health
    assert newest.status_code == 200 and newest.json()["models"]["direction"]["source"] == "model"
    assert newest.json()["models"]["direction"]["version"] == registry.record("direction")["version"]


def insert_raw(settings, collection: str, document) -> None:
    """Write a document straight into the fallback file (as someone editing it by hand would)."""
    path = settings.storage.fallback_dir / f"{collection}.json"
    data = json.loads(path.read_text())
    table = data.setdefault(collection, {})
    table[str(max(map(int, table), default=0) + 1)] = document
    path.write_text(json.dumps(data))


BAD_RECORDS = {
    "version x": lambda good: {**good, "version": "x", "run_id": "manual__bad-version"},
    "artifacts [x]": lambda good: {**good, "version": "77.0", "run_id": "manual__bad-artifacts", "artifacts": ["x"]},
    "model_name a list": lambda good: {**good, "model_name": ["regime_rf"], "run_id": "manual__bad-name"},
    "a number": lambda good: 5,
}


@pytest.mark.parametrize("case", BAD_RECORDS)
def test_a_malformed_registry_record_is_skipped_in_one_line_by_the_api_and_the_cli(copy_of, case, capsys, caplog):
    settings, registry, run_id = copy_of
    good = {k: v for k, v in registry.record_for_run("regime_rf", run_id).items() if k != "status"}
    insert_raw(settings, "ml_models", BAD_RECORDS[case](good))
    with TestClient(create_app(settings)) as client:
        answers = [
            client.get("/health"),
            client.post("/signals/generate", json={"symbols": ["AAPL"]}),
            client.get("/models"),
        ]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text[:200] for a in answers]
    assert answers[1].json()["models"]["regime"]["source"] == "model"
    assert len(answers[2].json()) == len(registry.records())
    skipped = [
        r.getMessage()
        for r in caplog.records
        if "skipping the ml_models document" in r.getMessage() or "not a document; skipped" in r.getMessage()
    ]
    assert skipped and all("\n" not in line for line in skipped)
    capsys.readouterr()
    assert main(["promote", "regime_rf", good["version"], "--data-dir", str(settings.data_dir)]) == 0
    assert "Traceback" not in capsys.readouterr().err


def test_a_fallback_file_that_is_not_tinydb_answers_503_in_one_line_and_promote_exits_3(copy_of, capsys):
    settings, registry, run_id = copy_of
    (settings.storage.fallback_dir / "ml_models.json").write_text(json.dumps([1, 2, 3]))
    with TestClient(create_app(settings)) as client:
        answers = [
            client.get("/health"),
            client.post("/signals/generate", json={"symbols": ["AAPL"]}),
            client.get("/models"),
        ]
    assert all(a.status_code == 503 for a in answers), [a.text[:200] for a in answers]
    assert all("is not a TinyDB file" in json.dumps(a.json()) for a in answers)
    assert main(["promote", "regime_rf", "1.0", "--data-dir", str(settings.data_dir)]) == 3
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "ml_models.json is not a TinyDB file" in error[0]


BAD_VALUES = [None, 5, -1.5, True, "x", "", "../../etc/passwd", [], ["x"], [1, 2], {}, {"a": 1}, "9" * 10_000]


def test_registry_fuzz_every_field_of_records_and_pointers_with_bad_values_never_breaks_reading_or_serving(
    copy_of, caplog
):
    """Each field of a good record and of a production pointer replaced by each bad value (and whole
    documents that are not objects), all written into the fallback files at once: the registry skips
    every malformed one, keeps every good one, and the API answers all three endpoints."""
    from trading_ml.registry import pointer_problem, record_problem

    settings, registry, run_id = copy_of
    good_records = registry.records()
    good = {k: v for k, v in registry.record_for_run("regime_rf", run_id).items() if k != "status"}
    pointer = registry.production("regime_rf")
    cases = 0
    for number, (field, value) in enumerate((f, v) for f in good for v in BAD_VALUES):
        record = {**good, field: value, **({} if field == "run_id" else {"run_id": f"manual__fuzz-{number}"})}
        if record_problem(record) is None:  # e.g. a metric's value: not what identifies or loads a model
            continue
        insert_raw(settings, "ml_models", record)
        cases += 1
    for field, value in ((f, v) for f in pointer for v in BAD_VALUES):
        document = {**pointer, field: value}
        if pointer_problem(document) is None:
            continue
        insert_raw(settings, "model_production", document)
        cases += 1
    for document in (1, "x", [1, 2], None):
        insert_raw(settings, "ml_models", document)
        cases += 1
    assert [r["run_id"] for r in registry.records()] == [
        r["run_id"] for r in good_records
    ]  # the good ones, nothing else
    assert registry.production("regime_rf")["run_id"] == pointer["run_id"]
    with TestClient(create_app(settings)) as client:
        answers = [
            client.get("/health"),
            client.post("/signals/generate", json={"symbols": ["AAPL"]}),
            client.get("/models"),
        ]
    assert [a.status_code for a in answers] == [200, 200, 200], [a.text[:200] for a in answers]
    print(
        f"registry fuzz: {cases} malformed documents skipped, {len(good_records)} good records kept, the API answered"
    )
    assert cases >= 80


def test_a_new_version_is_claimed_past_a_malformed_records_version(copy_of):
    """A skipped record still holds its version: the next run never claims it (no collision on register)."""
    settings, registry, run_id = copy_of
    good = {k: v for k, v in registry.record_for_run("regime_rf", run_id).items() if k != "status"}
    insert_raw(settings, "ml_models", {**good, "version": "5.0", "run_id": "manual__bad-five", "artifacts": ["x"]})
    assert registry.version_for_run("regime_rf", "manual__next") == "6.0"
