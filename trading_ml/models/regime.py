"""Regime (bull / bear / sideways / high_vol) ``horizon`` bars ahead: a random forest on the plan's
regime features, judged against persistence (the label stays what it is now).

The current regime needs no model: it is the plan's rules applied to today's features
(``target_regime``), which serving reports as is. Saved with skops; loading reads the file's schema
first and refuses every node whose type (or loader) is not on an exact list of what a fitted
random forest holds, so a crafted file cannot call anything.
"""

from __future__ import annotations

import io
import json
import logging
import time
import warnings
import zipfile
from collections.abc import Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trading_ml.config import STRICT, at_most, checked
from trading_ml.errors import DataError
from trading_ml.io import json_bytes
from trading_ml.models.base import CONFIG, Dataset, feature_matrix, read_config
from trading_ml.models.imports import shim_left_out

if TYPE_CHECKING:  # scikit-learn loads when the forest is fitted or loaded, not when the config is read
    from sklearn.ensemble import RandomForestClassifier

NOWCAST, FORECAST = "target_regime", "target_regime_ahead"  # the rule label now, and horizon bars ahead
REGIME_FEATURES = [  # the plan's: 50/200 crossover, VIX, trend strength, breadth; plus the rule's returns
    "sma_50_to_sma_200",
    "adx_14",
    "plus_di_14",
    "minus_di_14",
    "return_20",
    "volatility_20",
    "vix_level",
    "vix_change_5",
    "breadth_above_sma_50",
    "advance_decline_10",
    "benchmark_return_20",
]
log = logging.getLogger(__name__)
# Exactly what a fitted RandomForestClassifier (in a dict by target) is made of, as skops writes it.
FOREST_TYPES = frozenset(
    {
        "builtins.dict",
        "builtins.list",
        "builtins.str",
        "builtins.tuple",
        "numpy.int64",
        "numpy.ndarray",
        "sklearn.ensemble._forest.RandomForestClassifier",
        "sklearn.tree._classes.DecisionTreeClassifier",
        "sklearn.tree._tree.Tree",
    }
)
FOREST_LOADERS = frozenset(
    {"DictNode", "JsonNode", "ListNode", "NdArrayNode", "ObjectNode", "TreeNode", "TupleNode", "TypeNode"}
)


@contextmanager
def quiet_skops():
    """skops looks up some numpy ufuncs' modules by scanning every loaded module; in an Airflow worker
    that touches Airflow's deprecated module aliases and logs hundreds of warnings that say nothing
    about this code. Those warnings (attributed to skops' scan) are dropped; nothing else is. Its
    import does not load torch (:data:`TORCH_SHIM`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", module=r"skops\.io\._utils")
        with shim_left_out(TORCH_SHIM):
            import skops.io

        yield skops.io


# skops.io's import lists scikit-learn's estimators (sklearn.utils.all_estimators), which imports
# every scikit-learn package, this one too, and torch with it: 0.27 GB and 1.5 s in a process that
# only saves or loads a forest (a training worker, evaluate, the API). The shim is for torch arrays
# under scikit-learn's array API dispatch, which nothing here turns on.
TORCH_SHIM = "sklearn.externals.array_api_compat.torch"


class RegimeForest:
    name, task, target = "regime_rf", "regime", FORECAST
    FILES = (".skops", CONFIG)  # the forest (skops, in a dict by target), and its feature names
    context_bars = 1  # a prediction reads its own row only: a fold predicts just its test rows

    @checked(frozen=True, config=STRICT)
    class Params:
        """config.yaml `models.regime_rf`: the plan's regime random forest."""

        trees: at_most(10_000) = 100
        max_samples: at_most(100_000_000) = (
            25_000  # rows each tree draws; bounds fit time and model size on large universes
        )

    def __init__(self, feature_names: list[str], forests: dict[str, RandomForestClassifier]):
        self.feature_names, self.forests = feature_names, forests

    @classmethod
    def fit(cls, dataset: Dataset, params: Params, seed: int) -> RegimeForest:
        from sklearn.ensemble import RandomForestClassifier

        table = dataset.table
        names = [n for n in REGIME_FEATURES if n in dataset.feature_names]
        rows = np.flatnonzero(dataset.split.mask("train") & table[FORECAST].notna().to_numpy())
        draws = params.max_samples if len(rows) > params.max_samples else None
        forest = RandomForestClassifier(
            n_estimators=params.trees, min_samples_leaf=5, max_samples=draws, random_state=seed, n_jobs=dataset.threads
        )
        log.info(
            "%s: %d trees on %d training rows x %d features, %s rows per tree",
            cls.name,
            params.trees,
            len(rows),
            len(names),
            draws or len(rows),
        )
        started = time.perf_counter()
        forest.fit(feature_matrix(table, names, cls.name, rows), table[FORECAST].to_numpy()[rows].astype(str))
        log.info("%s: %d trees fitted in %.1f s", cls.name, params.trees, time.perf_counter() - started)
        return cls(names, {FORECAST: forest})

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        features = feature_matrix(table, self.feature_names, self.name)
        return pd.DataFrame({"regime_ahead": self.forests[FORECAST].predict(features)}, index=table.index)

    def save(self) -> dict[str, bytes]:
        with quiet_skops() as sio:
            payload = sio.dumps(self.forests)
        return {".skops": payload, CONFIG: json_bytes({"feature_names": self.feature_names, "targets": [FORECAST]})}

    @classmethod
    def load(cls, files: Mapping[str, bytes]) -> RegimeForest:
        from sklearn.ensemble import RandomForestClassifier

        payload = files[".skops"]
        with quiet_skops() as sio:
            refused = sorted((node_types(payload) | set(sio.get_untrusted_types(data=payload))) - FOREST_TYPES)
            if refused:
                raise DataError(
                    f"{cls.name}: the skops file holds {', '.join(refused)}, which a random forest does not; "
                    "refusing to load it"
                )
            forests = sio.loads(payload, trusted=sorted(FOREST_TYPES))
        if set(forests) != {FORECAST} or not isinstance(forests[FORECAST], RandomForestClassifier):
            raise DataError(f"{cls.name}: the skops file does not hold one forest for {FORECAST}; refusing it")
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
