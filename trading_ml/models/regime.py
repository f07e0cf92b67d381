"""Regime (bull / bear / sideways / high_vol): a random forest on the plan's regime features.

Evaluated as a nowcast (the label at t) and as a forecast (the label ``horizon`` bars ahead), each
against persistence. Saved with skops, which refuses to load types it does not trust.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from trading_ml.config import ModelSettings
from trading_ml.errors import DataError
from trading_ml.io import atomic_write_bytes
from trading_ml.models.base import artifact_path, feature_matrix, load_config, save_config
from trading_ml.models.splits import Split

NOWCAST, FORECAST = "target_regime", "target_regime_ahead"
REGIME_FEATURES = [  # the plan's: 50/200 crossover, VIX, trend strength, breadth; plus the rule's returns
    "sma_50_to_sma_200", "adx_14", "plus_di_14", "minus_di_14", "return_20", "volatility_20",
    "vix_level", "vix_change_5", "breadth_above_sma_50", "advance_decline_10", "benchmark_return_20",
]
TRUSTED_PREFIXES = ("sklearn.", "numpy.", "builtins.")


@contextmanager
def quiet_skops():
    """skops looks up some numpy ufuncs' modules by scanning every loaded module; in an Airflow worker
    that touches Airflow's deprecated module aliases and logs hundreds of warnings that say nothing
    about this code. Those warnings (attributed to skops' scan) are dropped; nothing else is."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"skops\.io\._utils")
        import skops.io

        yield skops.io


class RegimeForest:
    name = "regime_rf"

    def __init__(self, feature_names: list[str], forests: dict[str, RandomForestClassifier]):
        self.feature_names, self.forests = feature_names, forests

    @classmethod
    def fit(cls, table: pd.DataFrame, split: Split, feature_names: list[str], settings: ModelSettings) -> RegimeForest:
        names = [n for n in REGIME_FEATURES if n in feature_names]
        features = feature_matrix(table, names, cls.name)
        forests = {}
        for target in (NOWCAST, FORECAST):
            rows = split.mask("train") & table[target].notna().to_numpy()
            draws = settings.forest_max_samples if rows.sum() > settings.forest_max_samples else None
            forest = RandomForestClassifier(
                n_estimators=settings.forest_trees, min_samples_leaf=5, max_samples=draws, random_state=settings.seed, n_jobs=2
            )
            forests[target] = forest.fit(features[rows], table[target].to_numpy()[rows].astype(str))
        return cls(names, forests)

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        features = feature_matrix(table, self.feature_names, self.name)
        return pd.DataFrame({
            "regime_now": self.forests[NOWCAST].predict(features),
            "regime_ahead": self.forests[FORECAST].predict(features),
        }, index=table.index)

    def save(self, stem: Path) -> list[Path]:
        with quiet_skops() as sio:
            payload = sio.dumps(self.forests)
        path = atomic_write_bytes(artifact_path(stem, ".skops"), payload)
        return [path, save_config(stem, {"feature_names": self.feature_names, "targets": [NOWCAST, FORECAST]})]

    @classmethod
    def load(cls, stem: Path) -> RegimeForest:
        payload = artifact_path(stem, ".skops").read_bytes()
        with quiet_skops() as sio:
            untrusted = sio.get_untrusted_types(data=payload)
            unexpected = [t for t in untrusted if not t.startswith(TRUSTED_PREFIXES)]
            if unexpected:
                raise DataError(f"{stem}: the skops file holds unexpected types {unexpected}; refusing to load it")
            forests = sio.loads(payload, trusted=untrusted)
        return cls(load_config(stem)["feature_names"], forests)


def persistence(table: pd.DataFrame) -> pd.DataFrame:
    """Baselines: the nowcast is yesterday's label, the forecast is today's label."""
    previous = table[NOWCAST].groupby(level="symbol").shift(1)
    return pd.DataFrame({"regime_now": previous, "regime_ahead": table[NOWCAST]}, index=table.index)
