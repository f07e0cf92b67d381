"""The plan's API object: ``TradingSystemAPI(ConfigLoader("config.yaml")).model_manager.load_model(...)``.

``logical_pipe`` (the module name the plan imports) re-exports these names.
"""

from __future__ import annotations

from trading_ml.config import Settings
from trading_ml.drivers import load_settings
from trading_ml.registry import ModelRegistry
from trading_ml.storage import open_store
from trading_ml.verify import Verifier


class ConfigLoader:
    """config.yaml (plus the environment overrides) as Settings."""

    def __init__(self, path: str | None = None):
        self.settings: Settings = load_settings(path)


class ModelManager:
    """Loads registered models from MongoDB, or the TinyDB fallback when no MongoDB answers."""

    def __init__(self, settings: Settings):
        self.store, self.store_choice = open_store(settings)
        self.registry = ModelRegistry(self.store, settings.data_dir)
        self.verifier = Verifier(self.registry, settings)

    def load_model(self, name: str, version: str | None = None):
        """A model by name ('direction' is the ensemble); the production version unless one is given,
        loaded after it passed verification in a child process."""
        return self.verifier.load(self.registry.record(name, version))

    def list_models(self) -> list[dict]:
        return self.registry.records()


class TradingSystemAPI:
    def __init__(self, config: ConfigLoader):
        self.config = config
        self.model_manager = ModelManager(config.settings)
