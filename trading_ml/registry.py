"""The model registry: versions, metadata, sha256 of every file, status, and loading by name.

Records live in the store's ``ml_models`` (MongoDB, or the TinyDB fallback), keyed by
(model_name, version); under MongoDB the files are copied into GridFS too. A version is a string
"N.0" that grows by one with each training run that registers the model; re-running a stage of the
same run reuses its version. Statuses: candidate, production (at most one per model), archived.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
from pathlib import Path

from trading_ml.errors import DataError
from trading_ml.models.direction import DirectionEnsemble, LSTMDirection, XGBoostDirection
from trading_ml.models.regime import RegimeForest
from trading_ml.models.volatility import GarchVolatility, LSTMVolatility
from trading_ml.io import atomic_write_bytes, sha256_file
from trading_ml.storage import Store

log = logging.getLogger(__name__)

MODEL_CLASSES = {cls.name: cls for cls in (XGBoostDirection, LSTMDirection, GarchVolatility, LSTMVolatility, RegimeForest)}
ENSEMBLE = "direction"
MODEL_NAMES = (*MODEL_CLASSES, ENSEMBLE)
COLLECTION = "ml_models"
VERSIONS = "model_versions"


class ModelNotFound(DataError):
    """No such model, version or production version."""


class ModelRegistry:
    def __init__(self, store: Store):
        self.store = store

    def records(self, name: str | None = None) -> list[dict]:
        found = self.store.find(COLLECTION, {"model_name": name} if name else None)
        return sorted(found, key=lambda r: (r["model_name"], _major(r["version"])))

    def record(self, name: str, version: str | None = None) -> dict:
        """The record of a version, or of the production version when none is given."""
        _check_name(name)
        records = self.records(name)
        if version is None:
            production = [r for r in records if r["status"] == "production"]
            if not production:
                listed = ", ".join(f"{r['version']} ({r['status']})" for r in records) or "none"
                raise ModelNotFound(f"no production version of {name}; versions: {listed}. Deploy one, or pass version=")
            return production[-1]
        wanted = [r for r in records if r["version"] == _normalize(version)]
        if not wanted:
            raise ModelNotFound(f"{name} has no version {version}; versions: {', '.join(r['version'] for r in records) or 'none'}")
        return wanted[0]

    def version_for_run(self, name: str, run_id: str) -> str:
        """This run's version of the model: the one it already has, or the next free one, claimed
        atomically (``model_versions``) so two runs at the same time never get the same version."""
        while True:
            taken = self.records(name) + self.store.find(VERSIONS, {"model_name": name})
            same_run = [r for r in taken if r["run_id"] == run_id]
            if same_run:
                return same_run[0]["version"]
            version = f"{max((_major(r['version']) for r in taken), default=0) + 1}.0"
            if self.store.insert_new(VERSIONS, {"model_name": name, "version": version, "run_id": run_id}):
                return version

    def register(self, record: dict) -> dict:
        """Upsert a record (status candidate unless it says otherwise); copy its files to GridFS."""
        record = {"status": "candidate", **record, "updated_at": _now()}
        for artifact in record.get("artifacts", []):
            path = Path(artifact["path"])
            self.store.put_file(path.name, path.read_bytes(), {"model_name": record["model_name"], "version": record["version"], "sha256": artifact["sha256"]})
        self.store.upsert_many(COLLECTION, [record])
        return record

    def update(self, name: str, version: str, **fields) -> dict:
        record = {**self.record(name, version), **fields, "updated_at": _now()}
        self.store.upsert_many(COLLECTION, [record])
        return record

    def promote(self, name: str, version: str, reason: str) -> dict:
        """Make this version production; the previous production version becomes archived."""
        for record in self.records(name):
            if record["status"] == "production" and record["version"] != version:
                self.update(name, record["version"], status="archived", archived_reason=f"replaced by {version}")
        return self.update(name, version, status="production", deploy_decision=reason)

    def load_model(self, name: str, version: str | None = None):
        """The model object of a version (default: production), after checking every file's sha256.

        ``load_model("direction")`` returns the XGBoost + LSTM ensemble of the versions it names.
        """
        record = self.record(name, version)
        if name == ENSEMBLE:
            return DirectionEnsemble([self.load_model(member, v) for member, v in record["components"].items()])
        for artifact in record["artifacts"]:
            self._verified(Path(artifact["path"]), artifact["sha256"], record)
        return MODEL_CLASSES[name].load(Path(record["stem"]))

    def _verified(self, path: Path, expected: str, record: dict) -> None:
        """Check a file against its recorded sha256; restore a missing file from GridFS first."""
        if not path.exists():
            payload = self.store.get_file(path.name)
            if payload is None or hashlib.sha256(payload).hexdigest() != expected:
                raise ModelNotFound(f"{path} of {record['model_name']} {record['version']} is missing and no intact copy is in the store")
            atomic_write_bytes(path, payload)
            log.warning("restored %s from GridFS", path)
        actual = sha256_file(path)
        if actual != expected:
            raise DataError(
                f"{path} of {record['model_name']} {record['version']} does not match its registry sha256 "
                f"({actual[:12]}… != {expected[:12]}…): the file was altered; refusing to load it"
            )


def artifacts(paths: list[Path]) -> list[dict]:
    return [{"path": str(path), "sha256": sha256_file(path)} for path in paths]


def config_hash(settings) -> str:
    """A short hash of everything in config.yaml that shapes a model."""
    relevant = {"features": settings.features, "models": settings.models, "symbols": settings.symbols}
    return hashlib.sha256(json.dumps(relevant, default=repr, sort_keys=True).encode()).hexdigest()[:16]


def _check_name(name: str) -> None:
    if name not in MODEL_NAMES:
        raise ModelNotFound(f"unknown model {name!r}; models are {', '.join(MODEL_NAMES)}")


def _major(version: str) -> int:
    return int(str(version).split(".")[0])


def _normalize(version: str | int | float) -> str:
    text = str(version)
    if not text.replace(".", "", 1).isdigit():
        raise ModelNotFound(f"version {version!r} is not like '1.0'")
    return f"{_major(text)}.0"


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat()

