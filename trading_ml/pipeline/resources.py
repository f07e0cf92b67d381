"""What the stages of one process share: the store, and a market-data source for the stages that fetch."""

from __future__ import annotations

from collections.abc import Callable
from typing import cast

from trading_ml.registry import ModelRegistry
from trading_ml.run import RunContext
from trading_ml.sources import MarketDataSource, make_source
from trading_ml.storage import FallbackStore, StoreChoice, open_stage_store


class StageResources:
    """The store (MongoDB, falling back to TinyDB for the rest of the process if it stops
    answering) and, for the stages that fetch, the data source: it is made on first use, so the
    other stages never build one (the synthetic simulator included). Close it, or use it in a
    ``with`` block."""

    def __init__(
        self, source: MarketDataSource | None, store: FallbackStore, make: Callable[[], MarketDataSource] | None = None
    ):
        self._source, self._make, self.store = source, make, store

    @classmethod
    def open(cls, ctx: RunContext, source_retries: int | None = None) -> StageResources:
        """``source_retries=0`` when an orchestrator owns the retries (Airflow's task retries), so
        there is one retry layer: the source then makes one attempt per call."""
        return cls(None, open_stage_store(ctx.settings), lambda: make_source(ctx.source, ctx.settings, source_retries))

    @property
    def source(self) -> MarketDataSource:
        if self._source is None:
            if self._make is None:
                raise ValueError("these stage resources were opened without a data source")
            self._source = self._make()
        return self._source

    @source.setter
    def source(self, source: MarketDataSource) -> None:
        self._source = source

    @property
    def store_choice(self) -> StoreChoice:
        return self.store.choice

    def registry(self, ctx: RunContext) -> ModelRegistry:
        return ModelRegistry(self.store, ctx.settings.data_dir)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> StageResources:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


# A stage's default ``resources``: a stage called without them opens its own for the call and closes
# them after it (trading_ml.pipeline.run_manifest.stage), so inside a stage they are never None.
OWN_RESOURCES = cast(StageResources, None)
