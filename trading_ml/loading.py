"""Model objects built from registry records, reading only verified bytes.

The files a model consists of are derived from its record (model name, run id, as-of): its exact
file names inside its run's ``models/`` folder under the models root (``<data_dir>/runs``), never
paths the record gives. The record's artifact list must name exactly those; each file's bytes must
match its sha256, and those same bytes (never a path) are what the model class (from the catalogue)
is built from. A missing file is restored from GridFS only if the copy there matches.

Whatever goes wrong while loading (an unreadable file, a symlink loop, bytes that match their hash
but are not a model of that kind, a config whose fields have the wrong types) is one DataError that
names the version: the caller refuses the version and serves, or decides, without it.
"""

from __future__ import annotations

import datetime as dt
import logging

from trading_ml.errors import ConfigError, DataError, one_line
from trading_ml.io import atomic_write_bytes, sha256_bytes
from trading_ml.models.catalogue import members_of, model_class
from trading_ml.registry import ModelNotFound, ModelRegistry, check_name, label
from trading_ml.run import RunLayout

log = logging.getLogger(__name__)


class ModelLoader:
    """Loads the models of one registry."""

    def __init__(self, registry: ModelRegistry):
        self.registry, self.store, self.models_root = registry, registry.store, registry.models_root

    def load_model(self, name: str, version: str | None = None):
        """The model object of a version (default: production), after checking every file's sha256.

        ``load_model("direction")`` returns the XGBoost + LSTM ensemble of the run it belongs to: a
        model built from others (the catalogue names its members) gets its run's members, loaded and
        verified the same way.
        """
        return self.load_record(self.registry.record(name, version))

    def load_record(self, record: dict):
        name = record["model_name"]
        check_name(name)
        cls = model_class(name)
        files = self._verified_files(record, cls.FILES)
        members = {m: self.load_record(self.registry.record_for_run(m, record["run_id"])) for m in members_of(name)}
        try:
            model = cls.load(files, members) if members else cls.load(files)
        except DataError as error:
            raise DataError(f"{label(record)}: {error}") from error
        except Exception as error:  # the bytes are the recorded ones, but not a model of this kind
            raise DataError(
                f"{label(record)}: its files do not load as a {name} model ({type(error).__name__}: "
                f"{one_line(error)}); refusing it"
            ) from error
        check_feature_names(model, record)
        return model

    def verified_hashes(self, record: dict) -> tuple[str, ...]:
        """The sha256 of each of a record's files, in suffix order, after checking the bytes on disk
        (or restored from GridFS) match them; nothing is parsed."""
        name = str(record.get("model_name")) if isinstance(record, dict) else ""
        check_name(name)
        files = self._verified_files(record, model_class(name).FILES)
        return tuple(sha256_bytes(files[suffix]) for suffix in sorted(files))

    def expected_files(self, record: dict, suffixes: tuple[str, ...]) -> dict[str, str]:
        """{path under the models root: suffix} of the files a record's model consists of, derived
        from its model name, run id and as-of, never from paths the record gives."""
        try:
            layout = RunLayout.of(
                self.models_root.parent, dt.date.fromisoformat(str(record["as_of"])), record["run_id"]
            )
        except (KeyError, ValueError, ConfigError) as error:
            raise DataError(
                f"{label(record)}: the record's run id or as-of is not valid ({error}); refusing to load it"
            ) from error
        return {str(layout.model_file(record["model_name"], s).relative_to(self.models_root)): s for s in suffixes}

    def _verified_files(self, record: dict, suffixes: tuple[str, ...]) -> dict[str, bytes]:
        """{suffix: bytes} of exactly the model's files, each matching the record's sha256."""
        expected = self.expected_files(record, suffixes)
        artifacts = record.get("artifacts") or []
        listed = {a.get("path"): a.get("sha256") for a in artifacts}
        if sorted(map(str, listed)) != sorted(expected) or len(artifacts) != len(expected):
            raise DataError(
                f"{label(record)}: the record lists {[a.get('path') for a in artifacts] or 'no files'}, but it "
                "consists of exactly "
                f"{sorted(expected)} under {self.models_root}; refusing to load it"
            )
        return {
            suffix: self._verified_bytes(relative, listed[relative], record) for relative, suffix in expected.items()
        }

    def _verified_bytes(self, relative: str, expected: str, record: dict) -> bytes:
        """A file's bytes if they match the recorded sha256 (a missing file is restored from GridFS)."""
        path = self.models_root / relative
        try:
            inside = path.resolve(strict=False).is_relative_to(self.models_root.resolve())
            payload = path.read_bytes() if path.is_file() else None
        except (OSError, RuntimeError) as error:  # a symlink loop, a folder in its place, no permission
            raise DataError(
                f"{label(record)}: {path} cannot be read ({type(error).__name__}: {one_line(error)}); refusing to "
                "load it"
            ) from error
        if not inside:
            raise DataError(
                f"{label(record)}: {path} leads outside the models root {self.models_root}; refusing to load it"
            )
        if payload is None:
            payload = self.store.get_file(relative)
            if payload is None or sha256_bytes(payload) != expected:
                raise ModelNotFound(f"{path} of {label(record)} is missing and no intact copy is in the store")
            atomic_write_bytes(path, payload)
            log.warning("restored %s from GridFS", path)
        actual = sha256_bytes(payload)
        if actual != expected:
            raise DataError(
                f"{path} of {label(record)} does not match its registry sha256 "
                f"({actual[:12]}… != {str(expected)[:12]}…): the file was altered; refusing to load it"
            )
        return payload


def check_feature_names(model, record: dict) -> None:
    """A loaded model's feature names (where it has them) are a list of strings."""
    names = getattr(model, "feature_names", [])
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise DataError(
            f"{label(record)}: its config's feature_names is {type(names).__name__}, not a list of names; refusing it"
        )
