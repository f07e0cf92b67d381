"""`trading-ml sync`: copy what landed in the TinyDB fallback into MongoDB, losing and overwriting nothing.

- ``market_data``, ``validation_reports``, ``pipeline_runs``: by natural key; where MongoDB holds a
  newer copy of a document (``updated_at``), it is kept.
- ``ml_models``: a record is identified by its model and run. A run's record MongoDB already has keeps
  its MongoDB version (the newer copy of its fields wins). A new one keeps its version when that is
  free in MongoDB (or was claimed there by the same run before it fell back); otherwise it gets the
  next free version, and the renumbering is logged and returned. The direction ensemble's member
  versions follow. Model files go into GridFS under their path.
- ``model_production``: for each model the newer as-of wins, as deploy decides (an older run never
  replaces a newer model); on equal as-of, the later promotion. The other becomes archived: the
  pointer's history keeps every promotion of both stores.

A second sync copies nothing. TinyDB keeps its documents (sync is a copy, not a move).
"""

from __future__ import annotations

import logging

from trading_ml.config import Settings
from trading_ml.errors import ConfigError, ConflictError
from trading_ml.io import sha256_bytes
from trading_ml.models.catalogue import members_of
from trading_ml.registry import COLLECTION, PRODUCTION, VERSIONS, ModelRegistry, major_version
from trading_ml.storage import MongoStore, Store, TinyStore

log = logging.getLogger(__name__)

DATA_COLLECTIONS = ("market_data", "validation_reports", "pipeline_runs")


def sync_to_mongo(settings: Settings, mongo_uri: str | None = None) -> dict:
    """Copy the TinyDB fallback into MongoDB; what was copied, kept and renumbered."""
    uri = mongo_uri or settings.storage.mongo_uri
    if not uri:
        raise ConfigError(
            "sync needs a MongoDB URI: pass --mongo-uri, or set TRADING_ML_MONGO_URI or storage.mongo_uri"
        )
    tiny = TinyStore(settings.storage.fallback_dir)
    mongo = MongoStore.connect(uri, settings.storage.database, settings.storage.ping_timeout_ms)
    try:
        summary = {collection: copy_newer(tiny, mongo, collection) for collection in DATA_COLLECTIONS}
        summary.update(
            merge_registries(ModelRegistry(tiny, settings.data_dir), ModelRegistry(mongo, settings.data_dir))
        )
    finally:
        mongo.close()
    return summary


def copy_newer(source: Store, target: Store, collection: str) -> dict[str, int]:
    documents = source.find(collection)
    copied = target.upsert_newer(collection, documents)
    return {"copied": copied, "kept": len(documents) - copied, f"in_{target.kind}": target.count(collection)}


def merge_registries(source: ModelRegistry, target: ModelRegistry) -> dict:
    """Every record and production pointer of ``source`` into ``target`` (see the module's rules)."""
    versions: dict[tuple, str] = {}
    renumbered, copied = [], 0
    incoming = sorted(
        source.store.find(COLLECTION),
        key=lambda r: (bool(members_of(r["model_name"])), r["model_name"], major_version(r["version"])),
    )
    for record in incoming:  # a combination after its members, whose versions it names
        record = {k: v for k, v in record.items() if k != "status"}
        if members_of(record["model_name"]):
            record["components"] = {
                m: versions.get((m, record["run_id"]), v) for m, v in record.get("components", {}).items()
            }
        known = bool(target.store.find(COLLECTION, {"model_name": record["model_name"], "run_id": record["run_id"]}))
        version, written = _merge_record(target, record)
        copied += written
        versions[(record["model_name"], record["run_id"])] = version
        if version != record["version"] and not known:  # renumbered by this sync (an earlier one's mapping stands)
            renumbered.append(
                {
                    "model_name": record["model_name"],
                    "run_id": record["run_id"],
                    "from": record["version"],
                    "to": version,
                }
            )
            log.warning(
                "sync: %s %s of run %s is %s in MongoDB (%s belongs to another run there)",
                record["model_name"],
                record["version"],
                record["run_id"],
                version,
                record["version"],
            )
        _copy_files(target, record)
    production = {p["model_name"]: _merge_pointer(target, p) for p in source.store.find(PRODUCTION)}
    return {
        COLLECTION: {
            "copied": copied,
            "kept": len(incoming) - copied,
            f"in_{target.store.kind}": target.store.count(COLLECTION),
        },
        "renumbered": renumbered,
        "production": production,
    }


def _merge_record(target: ModelRegistry, record: dict) -> tuple[str, int]:
    """(the record's version in target, 1 if written): same run -> same version; else a free one."""
    name, run_id = record["model_name"], record["run_id"]
    existing = target.store.find(COLLECTION, {"model_name": name, "run_id": run_id})
    version = existing[0]["version"] if existing else _claim(target, name, run_id, record["version"])
    written = target.store.upsert_newer(COLLECTION, [{**record, "version": version}])
    if not target.store.find(COLLECTION, {"model_name": name, "version": version, "run_id": run_id}):
        raise ConflictError(
            f"sync: {name} {version} in MongoDB belongs to another run than {run_id}; nothing of it was replaced"
        )
    return version, written


def _claim(target: ModelRegistry, name: str, run_id: str, wanted: str) -> str:
    """The record's own version if it is free in target (or this run claimed it there), else the next."""
    taken = target.store.find(COLLECTION, {"model_name": name}) + target.store.find(VERSIONS, {"model_name": name})
    same_run = [t["version"] for t in taken if t["run_id"] == run_id]
    if same_run:
        return same_run[0]
    if wanted not in {t["version"] for t in taken} and target.store.insert_new(
        VERSIONS, {"model_name": name, "version": wanted, "run_id": run_id}
    ):
        return wanted
    return target.version_for_run(name, run_id)


def _copy_files(target: ModelRegistry, record: dict) -> None:
    """Each model file into GridFS unless an identical copy is there; a file missing on disk is logged."""
    for artifact in record.get("artifacts", []):
        stored = target.store.get_file(artifact["path"])
        if stored is not None and sha256_bytes(stored) == artifact["sha256"]:
            continue
        path = target.models_root / artifact["path"]
        if not path.is_file() or sha256_bytes(path.read_bytes()) != artifact["sha256"]:
            log.warning(
                "sync: %s of %s %s is missing or altered on disk; its record is copied without it",
                path,
                record["model_name"],
                record["version"],
            )
            continue
        target.store.put_file(
            artifact["path"],
            path.read_bytes(),
            {"model_name": record["model_name"], "run_id": record["run_id"], "sha256": artifact["sha256"]},
        )


def _merge_pointer(target: ModelRegistry, theirs: dict) -> dict:
    """One production pointer into target by compare-and-set: the newer as-of (then the later
    promotion) wins; the history keeps every promotion of both."""
    name = theirs["model_name"]
    while True:
        mine = target.production(name)
        if mine is None:
            merged = {**{k: v for k, v in theirs.items() if k != "updated_at"}, "revision": 1}
        else:
            winner = max((mine, theirs), key=lambda p: (p["as_of"], p["promoted_at"]))
            history = {
                (e["run_id"], e["promoted_at"]): e for e in [*mine.get("history", []), *theirs.get("history", [])]
            }
            merged = {
                **{k: v for k, v in winner.items() if k != "updated_at"},
                "revision": mine["revision"] + 1,
                "history": sorted(history.values(), key=lambda e: e["promoted_at"]),
            }
            if merged["run_id"] == mine["run_id"] and merged["history"] == mine.get("history", []):
                return {"run_id": mine["run_id"], "changed": False}
        if target.store.replace_if(PRODUCTION, merged, mine["revision"] if mine else None):
            return {"run_id": merged["run_id"], "changed": True}
