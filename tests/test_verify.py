"""Verification in a child process: whatever a model file holds (with its record's sha256 matching),
the process that asked gets a verdict in one line and goes on; the API keeps answering with the
task's baseline; promote refuses. The fuzz covers every file format the models save: random bytes,
truncation at several points, deep nesting, huge declared sizes, NaN, inf and huge numbers."""

from __future__ import annotations

import io
import json
import pickle
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from tests.test_model_files import copy_of, malform  # noqa: F401 (copy_of is a fixture)
from trading_ml.cli import main
from trading_ml.models.catalogue import task_of
from trading_ml.registry import ModelRegistry
from trading_ml.serving import create_app
from trading_ml.verify import Helper, Verifier, canary_panel, check_predictions

FILES = {  # model: its files' suffixes
    "direction_xgboost": (".json", ".config.json"),
    "direction_lstm": (".pt", ".config.json"),
    "volatility_lstm": (".pt", ".config.json"),
    "volatility_garch": (".json",),
    "regime_rf": (".skops", ".config.json"),
    "direction": (".json",),
}
DEEP = b'{"a":' * 50_000  # 250 KB: XGBoost's parser recursed into a segfault on this


def numbers_mapped(payload: bytes, floats, ints) -> bytes | None:
    """The JSON document with every float and integer replaced (None when it is not JSON or has none)."""
    try:
        document = json.loads(payload)
    except ValueError:
        return None

    def walk(value):
        if isinstance(value, bool):
            return value
        if isinstance(value, float):
            return floats
        if isinstance(value, int):
            return ints
        if isinstance(value, list):
            return [walk(v) for v in value]
        if isinstance(value, dict):
            return {k: walk(v) for k, v in value.items()}
        return value

    mapped = json.dumps(walk(document)).encode()
    return mapped if mapped != json.dumps(document).encode() else None


def huge_declared_sizes(payload: bytes) -> bytes | None:
    """A zip archive whose every entry declares 2 GiB (compressed and uncompressed) in both headers."""
    if not payload.startswith(b"PK"):
        return None
    data = bytearray(payload)
    for signature, offset in ((b"PK\x03\x04", 18), (b"PK\x01\x02", 20)):
        start = data.find(signature)
        while start >= 0:
            struct.pack_into("<II", data, start + offset, 2**31 - 1, 2**31 - 1)
            start = data.find(signature, start + 4)
    return bytes(data)


def nan_weights(payload: bytes) -> bytes | None:
    """A torch state_dict with every weight NaN (loads with weights_only, predicts NaN)."""
    try:
        state = torch.load(io.BytesIO(payload), weights_only=True)
    except (
        RuntimeError,
        ValueError,
        EOFError,
        pickle.UnpicklingError,
    ):  # not a torch state_dict (e.g. skops, also a zip archive)
        return None
    buffer = io.BytesIO()
    torch.save({k: torch.full_like(v, float("nan")) for k, v in state.items()}, buffer)
    return buffer.getvalue()


def mutations(payload: bytes) -> dict[str, bytes]:
    """Every malformed variant of one file's bytes (those that differ from it)."""
    rng = np.random.default_rng(len(payload))
    cases = {
        "empty": b"",
        "random bytes": rng.bytes(max(len(payload), 64)),
        **{f"truncated at {share}%": payload[: len(payload) * share // 100] for share in (1, 30, 70, 99)},
        "deep nesting": DEEP,
        "huge declared sizes": huge_declared_sizes(payload),
        "NaN numbers": numbers_mapped(payload, float("nan"), float("nan")),
        "inf numbers": numbers_mapped(payload, float("inf"), 10**300),
        "huge integers": numbers_mapped(payload, 1e300, 10**12),
        "NaN weights": nan_weights(payload),
    }
    return {case: value for case, value in cases.items() if value is not None and value != payload}


HARMLESS = {  # (model, suffix, case): the mutation touches nothing the model predicts with
    ("direction_xgboost", ".config.json", "NaN numbers"),
    ("direction_xgboost", ".config.json", "inf numbers"),
    ("direction_xgboost", ".config.json", "huge integers"),
}


def test_every_malformed_model_file_is_refused_in_one_line_and_the_asking_process_survives(copy_of, capsys):
    settings, registry, run_id = copy_of
    verifier = Verifier(registry, settings, seconds=60)
    good = {name: verifier.verify([registry.record_for_run(name, run_id)])[0] for name in FILES}
    assert all(verdict.passed for verdict in good.values()), good  # the intact versions pass (power)
    counts, crashed = {"cases": 0, "refused": 0, "crashed the loader": 0}, []
    for name, suffixes in FILES.items():
        for suffix in suffixes:
            record = registry.record_for_run(name, run_id)
            artifact = next(a for a in record["artifacts"] if a["path"].endswith(f"{name}{suffix}"))
            path = registry.models_root / artifact["path"]
            original = path.read_bytes()
            try:
                for case, payload in mutations(original).items():
                    malform(registry, run_id, name, suffix, payload)
                    verdict = verifier.verify([registry.record_for_run(name, run_id)])[0]
                    counts["cases"] += 1
                    if (name, suffix, case) in HARMLESS:
                        continue
                    assert not verdict.passed, (name, suffix, case)
                    assert (
                        "\n" not in verdict.why and verdict.why.startswith(f"{name} ") and "refusing it" in verdict.why
                    ), verdict.why
                    counts["refused"] += 1
                    if "crash the loader" in verdict.why:
                        counts["crashed the loader"] += 1
                        crashed.append(f"{name}{suffix} {case}: {verdict.why.split('(')[-1].split(')')[0]}")
            finally:
                malform(registry, run_id, name, suffix, original)
    print(f"model-file fuzz: {counts}; crashed in the child: {crashed}")
    assert counts["refused"] >= 70 and counts["crashed the loader"] >= 1  # the native aborts happened, in the child


CRAFTED = {  # model, suffix, what the file holds
    "empty XGBoost JSON (abort)": ("direction_xgboost", ".json", b""),
    "XGBoost JSON nested 50,000 deep (segfault)": ("direction_xgboost", ".json", DEEP),
    "GARCH omega NaN": ("volatility_garch", ".json", "omega nan"),
    "GARCH explosive": ("volatility_garch", ".json", "explosive"),
    "GARCH horizon 10**12": ("volatility_garch", ".json", "horizon"),
    "volatility LSTM NaN weights": ("volatility_lstm", ".pt", "nan weights"),
    "volatility LSTM sequence_length 10**9": ("volatility_lstm", ".config.json", "sequence"),
    "direction LSTM NaN weights (the ensemble's member)": ("direction_lstm", ".pt", "nan weights"),
}


def crafted_bytes(path, how) -> bytes:
    if isinstance(how, bytes):
        return how
    if how == "nan weights":
        return nan_weights(path.read_bytes())
    document = json.loads(path.read_text())
    if how == "sequence":
        return json.dumps({**document, "sequence_length": 10**9}).encode()
    if how == "horizon":
        return json.dumps({**document, "horizon": 10**12}).encode()
    change = {"omega nan": {"omega": float("nan")}, "explosive": {"alpha[1]": 5.0, "beta[1]": 5.0}}[how]
    return json.dumps(
        {**document, "parameters": {s: {**p, **change} for s, p in document["parameters"].items()}}
    ).encode()


@pytest.mark.parametrize("case", CRAFTED)
def test_the_api_keeps_answering_whatever_a_production_model_file_holds(copy_of, case):
    settings, registry, run_id = copy_of
    name, suffix, how = CRAFTED[case]
    record = registry.record_for_run(name, run_id)
    if record["status"] != "production":
        registry.promote(name, run_id, "to serve (test set-up)")
    artifact = next(a for a in record["artifacts"] if a["path"].endswith(f"{name}{suffix}"))
    malform(registry, run_id, name, suffix, crafted_bytes(registry.models_root / artifact["path"], how))
    refused = {name, "direction"} if name.startswith("direction") else {name}
    with TestClient(create_app(settings)) as client:
        answer = client.post("/signals/generate", json={"symbols": ["AAPL", "MSFT"]})
        health = client.get("/health")
        again = client.post("/signals/generate", json={"symbols": ["AAPL"], "as_of": "2026-06-01"})
    assert answer.status_code == 200 and again.status_code == 200, answer.text
    assert set(health.json()["refused"]) == refused, health.json()
    served = answer.json()["models"][task_of(name)]
    assert served["model"] not in refused and served["source"] in {"model", "baseline"}
    for signal in answer.json()["signals"]:
        assert np.isfinite(signal["volatility"]["forecast"]) and 0 < signal["volatility"]["forecast"] < 1
        assert abs(sum(signal["direction"]["probabilities"].values()) - 1) < 1e-6


def test_promote_refuses_a_file_that_crashes_the_loader_and_exits_2(copy_of, capsys):
    settings, registry, run_id = copy_of
    version = registry.record_for_run("direction_xgboost", run_id)["version"]
    malform(registry, run_id, "direction_xgboost", ".json", b"")
    assert main(["promote", "direction_xgboost", version, "--data-dir", str(settings.data_dir)]) == 2
    error = capsys.readouterr().err.strip().splitlines()
    assert len(error) == 1 and "crash the loader" in error[0] and "SIGABRT" in error[0], error


def test_a_version_that_passed_is_not_verified_again_for_the_same_hashes_but_is_for_new_ones(copy_of):
    settings, registry, run_id = copy_of
    verifier = Verifier(registry, settings)
    record = registry.record_for_run("volatility_garch", run_id)
    first = verifier.verify([record])[0]
    assert first.passed and verifier.verify([record])[0] is first
    malform(
        registry,
        run_id,
        "volatility_garch",
        ".json",
        crafted_bytes(registry.models_root / record["artifacts"][0]["path"], "omega nan"),
    )
    changed = verifier.verify([registry.record_for_run("volatility_garch", run_id)])[0]
    assert not changed.passed and changed.hashes != first.hashes and "finite" in changed.why, changed.why


def test_the_range_checks_say_no_to_nonsense_and_yes_to_a_trained_model(trained_run):
    ctx, resources, _ = trained_run
    canary = canary_panel(ctx.settings)
    model = Verifier(ModelRegistry(resources.store, ctx.settings.data_dir), ctx.settings).load(
        ModelRegistry(resources.store, ctx.settings.data_dir).record_for_run("volatility_garch", ctx.run_id)
    )
    check_predictions(model, canary)  # a trained GARCH passes
    model.parameters = {s: {**p, "alpha[1]": 5.0, "beta[1]": 5.0} for s, p in model.parameters.items()}
    with pytest.raises(Exception, match="outside"):
        check_predictions(model, canary)


def test_the_record_hash_is_checked_before_any_child_is_started(copy_of):
    settings, registry, run_id = copy_of
    record = registry.record_for_run("regime_rf", run_id)
    (registry.models_root / record["artifacts"][0]["path"]).write_bytes(b"altered after registration")
    verdict = Verifier(registry, settings).verify([record])[0]
    assert not verdict.passed and "does not match its registry sha256" in verdict.why


def test_deploy_never_promotes_over_a_production_model_that_predicts_nan_it_cannot_be_scored(copy_of):
    """Before: 'not significantly worse vs production 1.0 on 0 dates ...: rmse +nan' promoted."""
    from tests.conftest import AS_OF
    from tests.stages import deploy_as_if_evaluated, run_through
    from trading_ml.pipeline.resources import StageResources
    from trading_ml.run import RunContext

    settings, registry, run_id = copy_of
    record = registry.record_for_run("volatility_garch", run_id)
    malform(
        registry,
        run_id,
        "volatility_garch",
        ".json",
        crafted_bytes(registry.models_root / record["artifacts"][0]["path"], "omega nan"),
    )
    ctx = RunContext.create(
        settings, AS_OF, ["^VIX", *record["symbols"]], ["1d"], "synthetic", models=["volatility_garch"]
    )
    with StageResources.open(ctx) as resources:
        evaluated = run_through(ctx, resources, "evaluate")["evaluate"]["models"]
        skilled = {
            "volatility_garch": {
                **evaluated["volatility_garch"],
                "skill": {**evaluated["volatility_garch"]["skill"], "better": True},
            }
        }
        decision = deploy_as_if_evaluated(ctx, resources, skilled)["decisions"]["volatility_garch"]
    assert (
        decision["status"] == "candidate"
        and "cannot be scored" in decision["reason"]
        and "finite" in decision["reason"]
    ), decision["reason"]
    assert registry.production("volatility_garch")["run_id"] == run_id


HELPER_PROBE = """
import json, os, pickle, select, sys
from trading_ml.drivers import preload_for_tasks
from trading_ml.registry import ModelRegistry
from trading_ml.storage.tiny import TinyStore
from trading_ml import verify

settings, run_id, names = pickle.loads(bytes.fromhex(sys.argv[1]))
preload_for_tasks()  # as an Airflow worker does before it forks a task
task = os.fork()  # the task: one thread, whatever threads its worker has (OpenBLAS's)
if task:
    sys.exit(os.waitstatus_to_exitcode(os.waitpid(task, 0)[1]))
held_read, held_write = os.pipe()  # stands for the task's own pipes and sockets
verify.start_helper()
helper = verify.HELPER._process
os.close(held_write)
# EOF once the helper closed its copy of the write end (it does so as it starts): within 30 s
held_closed = bool(select.select([held_read], [], [], 30)[0]) and os.read(held_read, 1) == b""
with open(f"/proc/{helper.pid}/cmdline", "rb") as cmdline:
    forked = cmdline.read() == open("/proc/self/cmdline", "rb").read()
registry = ModelRegistry(TinyStore(settings.storage.fallback_dir), settings.data_dir)
verdicts = verify.Verifier(registry, settings, seconds=60).verify([registry.record_for_run(n, run_id) for n in names])
print("PROBE", json.dumps({"pid": helper.pid, "forked": forked, "held_closed": held_closed,
                           "verdicts": [[v.passed, v.why] for v in verdicts]}))
"""


def test_an_airflow_task_forks_its_helper_and_it_still_survives_a_file_that_aborts_the_loader(copy_of):
    """A task forked from a worker that preloaded the libraries has one thread: it forks its helper
    instead of importing them again. The helper refuses a file that aborts XGBoost's loader, passes
    the intact versions, keeps none of the task's files open, and ends with the task."""
    settings, registry, run_id = copy_of
    malform(registry, run_id, "direction_xgboost", ".json", b"")
    names = ["volatility_garch", "direction_xgboost", "regime_rf"]
    probe = subprocess.run(
        [sys.executable, "-c", HELPER_PROBE, pickle.dumps((settings, run_id, names)).hex()],
        capture_output=True,
        text=True,
        timeout=120,  # a helper that kept its own request pipe open would never end, nor free the probe's stderr
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert probe.returncode == 0, probe.stderr[-3000:]
    result = json.loads(next(line for line in probe.stdout.splitlines() if line.startswith("PROBE "))[6:])
    assert result["forked"] and result["held_closed"], result
    [garch, xgboost, forest] = result["verdicts"]
    assert garch[0] and forest[0], result
    assert not xgboost[0] and "crash the loader" in xgboost[1] and "SIGABRT" in xgboost[1], xgboost
    assert ended(result["pid"]), "the helper outlived the task that started it"


def test_a_process_with_threads_starts_its_helper_in_a_fresh_interpreter():
    """Forking copies one thread: a lock another thread held would stay held in the helper."""
    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    helper = Helper()
    try:
        helper.start()
        assert isinstance(helper._process, subprocess.Popen)
        assert helper._process.args[1:] == ["-m", "trading_ml.verify"]
    finally:
        stop.set()
        helper._process.kill()
        helper._process.wait()


def ended(pid: int, seconds: float = 30) -> bool:
    """Whether the process is gone, or a zombie waiting for its reaper, within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return True
        except OSError:
            return True
        time.sleep(0.2)
    return False
