"""The model registry: records, versions, metadata, sha256 of every file, and production.

Records live in the store's ``ml_models`` (MongoDB, or the TinyDB fallback). A record belongs to one
run: it is identified by (model, version, run id), and a run has one record per model. A version is
a string "N.0", claimed atomically in ``model_versions`` for one run, so a retried task of that run
gets the same version again and no other run ever gets it. Under MongoDB the files are copied into
GridFS too, named by their path under the models root.

Which version is in production is one document per model in ``model_production`` (the pointer),
changed only by compare-and-set on its revision: at most one production version per model, whatever
runs at the same time. A record's status is read from it: production (the pointer names its run),
archived (it was production before), candidate (never promoted).

Loading a model from its record, reading only verified bytes, is :mod:`trading_ml.loading`.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import re
from pathlib import Path

from trading_ml.errors import ConfigError, ConflictError, DataError
from trading_ml.io import sha256_file
from trading_ml.models.catalogue import entry
from trading_ml.run import check_run_id, runs_root
from trading_ml.storage import Store

log = logging.getLogger(__name__)

COLLECTION = "ml_models"
VERSIONS = "model_versions"
PRODUCTION = "model_production"
PROMOTE_ATTEMPTS = 50  # compare-and-set retries under contention before giving up


class ModelNotFound(DataError):
    """No such model, version or production version."""


class ModelRegistry:
    def __init__(self, store: Store, data_dir: Path):
        self.store = store
        self.models_root = runs_root(data_dir)

    # -- reading ---------------------------------------------------------------------------------

    def records(self, name: str | None = None) -> list[dict]:
        """Records (of one model, or all) with their status read from the production pointers."""
        match = {"model_name": name} if name else None
        pointers = {p["model_name"]: p for p in self._find(PRODUCTION, match)}
        found = [with_status(r, pointers.get(r["model_name"])) for r in self._find(COLLECTION, match)]
        return sorted(found, key=lambda r: (r["model_name"], major_version(r["version"])))

    def record(self, name: str, version: str | None = None) -> dict:
        """The record of a version, or of the production version when none is given."""
        check_name(name)
        if version is None:
            pointer = self.production(name)
            if pointer is None:
                listed = ", ".join(f"{r['version']} ({r['status']})" for r in self.records(name)) or "none"
                raise ModelNotFound(
                    f"no production version of {name}; versions: {listed}. Deploy one, or pass version="
                )
            return self.record_for_run(name, pointer["run_id"])
        records = self.records(name)
        wanted = [r for r in records if r["version"] == _normalize(version)]
        if not wanted:
            raise ModelNotFound(
                f"{name} has no version {version}; versions: {', '.join(r['version'] for r in records) or 'none'}"
            )
        return wanted[0]

    def record_for_run(self, name: str, run_id: str) -> dict:
        """The record a run registered for a model, whatever version it has now (sync may renumber)."""
        check_name(name)
        found = self._find(COLLECTION, {"model_name": name, "run_id": run_id})
        if not found:
            what = f"{name} of run {run_id}"
            missing = getattr(self.store, "missing", lambda _: None)(what)
            if missing:
                raise missing
            raise ModelNotFound(
                f"{what} is not registered in this store ({self.store.kind}); train it first, or if this run "
                "fell back to TinyDB earlier, run `trading-ml sync` and re-run this stage"
            )
        return with_status(found[0], self.production(name))

    def production(self, name: str) -> dict | None:
        """The production pointer of a model: run_id, as_of, reason, revision, history; or None."""
        found = self._find(PRODUCTION, {"model_name": name})
        return found[0] if found else None

    def _find(self, collection: str, match: dict | None) -> list[dict]:
        """The collection's documents that pass its schema; each other one is skipped, logged once in one line."""
        usable = []
        for document in self.store.find(collection, match):
            problem = SCHEMAS[collection](document)
            if problem is None:
                usable.append(document)
            else:
                _skipped(collection, document, problem)
        return usable

    def production_versions(self) -> dict[str, str]:
        return {r["model_name"]: r["version"] for r in self.records() if r["status"] == "production"}

    # -- writing ---------------------------------------------------------------------------------

    def version_for_run(self, name: str, run_id: str) -> str:
        """This run's version of the model: the one it already has, or the next free one, claimed
        atomically (``model_versions``) so two runs at the same time never get the same version."""
        while True:
            taken = self._find(COLLECTION, {"model_name": name}) + self._find(VERSIONS, {"model_name": name})
            same_run = [r for r in taken if r["run_id"] == run_id]
            if same_run:
                return same_run[0]["version"]
            # a malformed record still holds its version: the next one is past it too
            written = [
                d.get("version") for d in self.store.find(COLLECTION, {"model_name": name}) if isinstance(d, dict)
            ]
            numbers = [major_version(r["version"]) for r in taken] + [
                major_version(str(v)) for v in written if _version_problem(v) is None
            ]
            version = f"{max(numbers, default=0) + 1}.0"
            if self.store.insert_new(VERSIONS, {"model_name": name, "version": version, "run_id": run_id}):
                return version

    def publish(self, record: dict) -> dict:
        """Claim this run's version and register the record under it. If the store falls back to
        TinyDB on the way, both happen again there, so the record never carries a version that
        store did not give it."""
        while True:
            kind = self.store.kind
            version = self.version_for_run(record["model_name"], record["run_id"])
            registered = self.register({**record, "version": version})
            if self.store.kind == kind:
                return registered

    def register(self, record: dict) -> dict:
        """Insert or replace this run's record; copy its files to GridFS. A record of another run
        under the same version is never replaced (ConflictError)."""
        record = {k: v for k, v in record.items() if k != "status"}
        check_run_id(record["run_id"])
        for artifact in record.get("artifacts", []):
            payload = (self.models_root / artifact["path"]).read_bytes()
            self.store.put_file(
                artifact["path"],
                payload,
                {"model_name": record["model_name"], "run_id": record["run_id"], "sha256": artifact["sha256"]},
            )
        self.store.upsert_many(COLLECTION, [record])
        return with_status(record, self.production(record["model_name"]))

    def update(self, name: str, run_id: str, **fields) -> dict:
        """Set fields on this run's record of a model (not its identity, not its status)."""
        if {"model_name", "version", "run_id", "status"} & set(fields):
            raise ValueError("update sets metadata only; versions come from publish, status from promote")
        if not self.store.update_fields(COLLECTION, {"model_name": name, "run_id": run_id}, fields):
            self.record_for_run(name, run_id)  # raises with the reason
        return self.record_for_run(name, run_id)

    def promote(
        self, name: str, run_id: str, reason: str, expected: str | None | object = ..., approval: dict | None = None
    ) -> bool:
        """Make this run's version production by compare-and-set on the pointer; the previous one
        becomes archived. With ``expected`` (the production run id the decision was made against,
        None for none) it promotes only if production is still that, and returns False otherwise.
        ``approval`` (who approved it, when and why) goes into the history entry."""
        record = self.record_for_run(name, run_id)
        for _ in range(PROMOTE_ATTEMPTS):
            current = self.production(name)
            if current and current["run_id"] == run_id:  # already production: the reason kept, no second history entry
                self.update(name, run_id, deploy_decision=reason)
                return True
            if expected is not ... and (current["run_id"] if current else None) != expected:
                return False
            entry = {
                "run_id": run_id,
                "as_of": record["as_of"],
                "promoted_at": _now(),
                "reason": reason,
                **({"approval": approval} if approval else {}),
            }
            pointer = {
                "model_name": name,
                **entry,
                "revision": current["revision"] + 1 if current else 1,
                "history": [*(current["history"] if current else []), entry],
            }
            if self.store.replace_if(PRODUCTION, pointer, current["revision"] if current else None):
                self.update(name, run_id, deploy_decision=reason)
                return True
        raise ConflictError(
            f"promoting {name} of run {run_id}: the production pointer kept changing ({PROMOTE_ATTEMPTS} attempts); "
            "try again"
        )

    def artifacts(self, paths: list[Path]) -> list[dict]:
        """Registry entries of files under the models root: path relative to it, and sha256."""
        return [{"path": str(Path(path).relative_to(self.models_root)), "sha256": sha256_file(path)} for path in paths]


# the schemas records are read through --------------------------------------------------------------


def record_problem(record) -> str | None:
    """Why a stored ``ml_models`` record cannot be used, in a few words; None when it can."""
    if not isinstance(record, dict):
        return f"it is a {type(record).__name__}, not a document"
    problem = _identity_problem(record) or _version_problem(record.get("version"))
    if problem:
        return problem
    try:
        dt.date.fromisoformat(str(record.get("as_of")))
    except ValueError:
        return f"as_of {_shown(record.get('as_of'))} is not a date"
    artifacts = record.get("artifacts")
    if not isinstance(artifacts, list) or not all(
        isinstance(a, dict)
        and isinstance(a.get("path"), str)
        and isinstance(a.get("sha256"), str)
        and SHA256.fullmatch(a["sha256"])
        for a in artifacts
    ):
        return "artifacts is not a list of {path, sha256} with 64 hex digits each"
    for field in ("symbols", "feature_names"):
        if field in record and not (isinstance(record[field], list) and all(isinstance(s, str) for s in record[field])):
            return f"{field} is not a list of names"
    for field in ("timeframe", "trained_until", "deploy_decision"):
        if record.get(field) is not None and not isinstance(record[field], str):
            return f"{field} is not text"
    return None


def pointer_problem(pointer) -> str | None:
    """Why a ``model_production`` pointer cannot be used; None when it can."""
    if not isinstance(pointer, dict):
        return f"it is a {type(pointer).__name__}, not a document"
    problem = _identity_problem(pointer)
    if problem:
        return problem
    revision, history = pointer.get("revision"), pointer.get("history", [])
    if not isinstance(revision, int) or isinstance(revision, bool) or revision < 1:
        return f"revision {_shown(revision)} is not a positive integer"
    if not isinstance(history, list) or not all(
        isinstance(h, dict) and isinstance(h.get("run_id"), str) for h in history
    ):
        return "history is not a list of {run_id, ...}"
    return None


def claim_problem(claim) -> str | None:
    """Why a ``model_versions`` claim cannot be used; None when it can."""
    if not isinstance(claim, dict):
        return f"it is a {type(claim).__name__}, not a document"
    return _identity_problem(claim) or _version_problem(claim.get("version"))


def _identity_problem(document: dict) -> str | None:
    try:
        check_name(str(document.get("model_name")))
        check_run_id(document.get("run_id"))
    except ConfigError as error:
        return str(error).split(";")[0]
    return None


def _version_problem(version) -> str | None:
    return (
        None
        if isinstance(version, str) and VERSION.fullmatch(version)
        else f"version {_shown(version)} is not like '3.0'"
    )


def _shown(value) -> str:
    return repr(value)[:40]


_logged: set[tuple[str, str]] = set()


def _skipped(collection: str, document, problem: str) -> None:
    """Log a skipped document once per process, in one line that names it."""
    what = label(document) if isinstance(document, dict) else _shown(document)
    if (collection, what + problem) not in _logged:
        _logged.add((collection, what + problem))
        log.warning("registry: skipping the %s document %s: %s; fix or remove it", collection, what, problem)


SHA256 = re.compile(r"[0-9a-f]{64}")
VERSION = re.compile(r"[1-9][0-9]{0,8}\.0")
SCHEMAS = {COLLECTION: record_problem, PRODUCTION: pointer_problem, VERSIONS: claim_problem}


def with_status(record: dict, pointer: dict | None) -> dict:
    """The record with its status: production, archived (production before) or candidate."""
    if pointer and pointer["run_id"] == record["run_id"]:
        status = "production"
    elif pointer and record["run_id"] in {entry["run_id"] for entry in pointer.get("history", [])}:
        status = "archived"
    else:
        status = "candidate"
    return {**{k: v for k, v in record.items() if k != "status"}, "status": status}


def config_hash(settings) -> str:
    """A short hash of everything in config.yaml that shapes a model."""
    relevant = {"features": settings.features, "models": settings.models, "symbols": settings.symbols}
    return hashlib.sha256(json.dumps(relevant, default=repr, sort_keys=True).encode()).hexdigest()[:16]


def label(record: dict) -> str:
    name, version, run_id = (_shown(record.get(key))[1:-1] for key in ("model_name", "version", "run_id"))
    return f"{name} {version} (run {run_id})"


def check_name(name: str) -> None:
    entry(name)  # UnknownModel, as everywhere a model is named


def major_version(version: str) -> int:
    """1 of '1.0'."""
    return int(str(version).split(".")[0])


def _normalize(version: str | int | float) -> str:
    text = str(version)
    if not text.replace(".", "", 1).isdigit():
        raise ModelNotFound(f"version {version!r} is not like '1.0'")
    return f"{major_version(text)}.0"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds")
