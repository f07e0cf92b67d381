"""What every model shares: a name, the features it reads, predict over a table, and safe files.

A model saves to ``{stem}.config.json`` (feature names, settings, fitted scalers) plus one binary in
a format that cannot run code on load; :func:`load_config` and each model's ``load`` read them back.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from trading_ml.errors import DataError
from trading_ml.io import write_json


def artifact_path(stem: Path, extension: str) -> Path:
    """stem plus an extension; stems hold versions ('direction_xgboost_v1.0'), so no with_suffix."""
    return stem.with_name(stem.name + extension)


def config_path(stem: Path) -> Path:
    return artifact_path(stem, ".config.json")


def save_config(stem: Path, config: dict) -> Path:
    return write_json(config_path(stem), config)


def load_config(stem: Path) -> dict:
    return json.loads(config_path(stem).read_text())


def feature_matrix(table: pd.DataFrame, names: list[str], model: str) -> np.ndarray:
    """The named feature columns as float32, or a DataError naming what the table lacks."""
    missing = [n for n in names if n not in table.columns]
    if missing:
        raise DataError(f"{model} needs feature(s) {', '.join(missing[:5])} that this table lacks; rebuild features")
    return table[names].to_numpy(dtype=np.float32)


class Standardizer:
    """Column means and deviations fitted on the training segment only."""

    def __init__(self, mean: np.ndarray, scale: np.ndarray):
        self.mean, self.scale = np.asarray(mean, dtype=np.float32), np.asarray(scale, dtype=np.float32)

    @classmethod
    def fit(cls, values: np.ndarray) -> Standardizer:
        scale = values.std(axis=0)
        return cls(values.mean(axis=0), np.where(scale > 0, scale, 1.0))

    def transform(self, values: np.ndarray) -> np.ndarray:
        return ((values - self.mean) / self.scale).astype(np.float32)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_dict(cls, data: dict) -> Standardizer:
        return cls(np.array(data["mean"]), np.array(data["scale"]))
