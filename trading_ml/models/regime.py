"""Regime (bull / bear / sideways / high_vol): a random forest on the plan's regime features.

Evaluated as a nowcast (the label at t) and as a forecast (the label ``horizon`` bars ahead), each
against persistence. Saved with skops; loading reads the file's schema first and refuses every node
whose type (or loader) is not on an exact list of what a fitted random forest holds, so a crafted
file cannot call anything.
"""

from __future__ import annotations

import io
import json
import warnings
import zipfile
from collections.abc import Mapping
from contextlib import contextmanager

import pandas as pd
from sklearn.ensemble import RandomForestClassifier

from trading_ml.config import ModelSettings
from trading_ml.io import json_bytes
from trading_ml.errors import DataError
from trading_ml.models.base import CONFIG, feature_matrix, read_config
from trading_ml.models.splits import Split

NOWCAST, FORECAST = "target_regime", "target_regime_ahead"
REGIME_FEATURES = [  # the plan's: 50/200 crossover, VIX, trend strength, breadth; plus the rule's returns
    "sma_50_to_sma_200", "adx_14", "plus_di_14", "minus_di_14", "return_20", "volatility_20",
    "vix_level", "vix_change_5", "breadth_above_sma_50", "advance_decline_10", "benchmark_return_20",
]
# Exactly what a fitted RandomForestClassifier (in a dict by target) is made of, as skops writes it.
FOREST_TYPES = frozenset({
    "builtins.dict", "builtins.list", "builtins.str", "builtins.tuple", "numpy.int64", "numpy.ndarray",
    "sklearn.ensemble._forest.RandomForestClassifier", "sklearn.tree._classes.DecisionTreeClassifier", "sklearn.tree._tree.Tree",
})
FOREST_LOADERS = frozenset({"DictNode", "JsonNode", "ListNode", "NdArrayNode", "ObjectNode", "TreeNode", "TupleNode", "TypeNode"})


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
    FILES = (".skops", CONFIG)  # the two forests (skops), and their feature names

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

    def to_files(self) -> dict[str, bytes]:
        with quiet_skops() as sio:
            payload = sio.dumps(self.forests)
        return {".skops": payload, CONFIG: json_bytes({"feature_names": self.feature_names, "targets": [NOWCAST, FORECAST]})}

    @classmethod
    def from_files(cls, files: Mapping[str, bytes]) -> RegimeForest:
        payload = files[".skops"]
        with quiet_skops() as sio:
            refused = sorted((node_types(payload) | set(sio.get_untrusted_types(data=payload))) - FOREST_TYPES)
            if refused:
                raise DataError(f"{cls.name}: the skops file holds {', '.join(refused)}, which a random forest does not; refusing to load it")
            forests = sio.loads(payload, trusted=sorted(FOREST_TYPES))
        if set(forests) != {NOWCAST, FORECAST} or not all(isinstance(f, RandomForestClassifier) for f in forests.values()):
            raise DataError(f"{cls.name}: the skops file does not hold the two forests ({NOWCAST}, {FORECAST}); refusing it")
        return cls(read_config(files)["feature_names"], forests)


def node_types(payload: bytes) -> set[str]:
    """Every type a skops file names (module.class), with a node loader outside FOREST_LOADERS
    reported as 'loader <name>'; a file that is not a skops archive is a DataError."""
    try:
        schema = json.loads(zipfile.ZipFile(io.BytesIO(payload)).read("schema.json"))
    except (zipfile.BadZipFile, KeyError, ValueError) as error:
        raise DataError(f"regime_rf: the model file is not a skops archive ({error}); refusing to load it") from error
    found, pending = set(), [schema]
    while pending:
        node = pending.pop()
        if isinstance(node, dict):
            if "__loader__" in node:
                found.add(f"{node.get('__module__')}.{node.get('__class__')}")
                if node["__loader__"] not in FOREST_LOADERS:
                    found.add(f"loader {node['__loader__']}")
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)
    return found


def persistence(table: pd.DataFrame) -> pd.DataFrame:
    """Baselines: the nowcast is yesterday's label, the forecast is today's label."""
    previous = table[NOWCAST].groupby(level="symbol").shift(1)
    return pd.DataFrame({"regime_now": previous, "regime_ahead": table[NOWCAST]}, index=table.index)
