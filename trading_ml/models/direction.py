"""Direction of the next bar (Down -1, Neutral 0, Up 1): XGBoost, an LSTM, and their average.

Both are trained across all symbols on the scale-free features; ``predict`` returns P(down),
P(neutral), P(up) for every row it can (the LSTM needs ``sequence_length`` bars of history).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from trading_ml.config import STRICT, Rate, at_most, checked
from trading_ml.errors import DataError
from trading_ml.io import json_bytes
from trading_ml.models.base import (
    CONFIG,
    Dataset,
    LSTMParams,
    Standardizer,
    feature_matrix,
    model_inputs,
    progress_due,
    read_config,
    release_inputs,
)
from trading_ml.models.tasks import PROBABILITIES

if TYPE_CHECKING:  # torch and xgboost load when a model is fitted or loaded, not when the config is read
    import xgboost as xgb

    from trading_ml.models import lstm

TARGET = "target_direction"
log = logging.getLogger(__name__)


def class_index(labels: pd.Series) -> np.ndarray:
    """-1, 0, 1 -> 0, 1, 2."""
    return labels.to_numpy(dtype=np.int64) + 1


def direction_labels(table: pd.DataFrame, dataset: Dataset, model: str) -> pd.Series:
    """The labels a direction model learns: the dataset's choice (models.direction_labels), the
    absolute direction unless it says otherwise."""
    column = dataset.direction_labels
    if column not in table:
        raise DataError(f"{model}: the training table has no {column} (models.direction_labels); rebuild features")
    return table[column]


def probabilities_frame(index: pd.Index, values: np.ndarray) -> pd.DataFrame:
    return pd.DataFrame(values, index=index, columns=PROBABILITIES)


def round_logger(name: str, rounds: int):
    """An XGBoost callback that logs the validation loss about every tenth of the boosting rounds,
    and where boosting stopped."""
    import xgboost as xgb

    class RoundLogger(xgb.callback.TrainingCallback):
        def after_iteration(self, model, epoch: int, evals_log) -> bool:
            if progress_due(epoch + 1, rounds):
                losses = ", ".join(
                    f"{metric} {values[-1]:.5f}" for scores in evals_log.values() for metric, values in scores.items()
                )
                log.info("%s: round %d of at most %d: validation %s", name, epoch + 1, rounds, losses)
            return False

        def after_training(self, model):
            log.info("%s: stopped after %d rounds", name, model.num_boosted_rounds())
            return model

    return RoundLogger()


# rows XGBoost is handed at a time (30 MB at 119 features), read from the stored inputs without
# mapping them (trading_ml.io.StoredMatrix.rows)
TRAINING_BATCH_ROWS = 65_536


def row_batches(dataset: Dataset, rows: np.ndarray, target: np.ndarray, model: str):
    """An XGBoost DataIter over the dataset's features at ``rows``, TRAINING_BATCH_ROWS at a time,
    with their ``target``: a QuantileDMatrix made from it holds its bins, never the whole matrix,
    and of the stored inputs one batch's copy at a time."""
    import xgboost as xgb

    class RowBatches(xgb.DataIter):
        def __init__(self):
            self.next_start = 0
            super().__init__()

        def next(self, input_data) -> bool:
            if self.next_start >= len(rows):
                return False
            batch = rows[self.next_start : self.next_start + TRAINING_BATCH_ROWS]
            input_data(data=model_inputs(dataset, batch, model), label=target[batch])
            release_inputs(dataset)
            self.next_start += TRAINING_BATCH_ROWS
            return True

        def reset(self) -> None:
            self.next_start = 0

    return RowBatches()


class XGBoostDirection:
    name, task, target = "direction_xgboost", "direction", TARGET
    FILES = (".json", CONFIG)  # XGBoost's own JSON model format, and the feature names
    context_bars = 1  # a prediction reads its own row only: a fold predicts just its test rows

    @checked(frozen=True, config=STRICT)
    class Params:
        """config.yaml `models.direction_xgboost`."""

        rounds: at_most(100_000) = 400  # upper bound; early stopping on the validation segment decides
        depth: at_most(32) = 4
        learning_rate: Rate = 0.05
        early_stopping_rounds: at_most(10_000) = 30

    def __init__(self, feature_names: list[str], booster: xgb.XGBClassifier, info: dict | None = None):
        self.feature_names, self.booster, self.info = feature_names, booster, info or {}

    @classmethod
    def fit(cls, dataset: Dataset, params: Params, seed: int) -> XGBoostDirection:
        """Boosted on the fold's training rows, fed to XGBoost a batch at a time (it keeps only its
        one-byte bins of them), stopping early on the validation rows."""
        import xgboost as xgb

        split, feature_names = dataset.split, dataset.feature_names
        labels = direction_labels(dataset.table, dataset, cls.name)
        labelled = labels.notna().to_numpy()
        train = np.flatnonzero(split.mask("train") & labelled)
        validation = np.flatnonzero(split.mask("validation") & labelled)
        target = class_index(labels.fillna(0))
        classifier = xgb.XGBClassifier(
            n_estimators=params.rounds,
            max_depth=params.depth,
            learning_rate=params.learning_rate,
            subsample=0.8,
            colsample_bytree=0.8,
            objective="multi:softprob",
            eval_metric="mlogloss",
            early_stopping_rounds=params.early_stopping_rounds,
            random_state=seed,
            n_jobs=dataset.threads,
            tree_method="hist",
        )
        log.info(
            "%s: up to %d rounds on %d training rows, stopping after %d without a better validation loss",
            cls.name,
            params.rounds,
            len(train),
            params.early_stopping_rounds,
        )
        bins = {"missing": np.nan, "nthread": dataset.threads}
        training = xgb.QuantileDMatrix(row_batches(dataset, train, target, cls.name), **bins)
        validating = xgb.QuantileDMatrix(
            model_inputs(dataset, validation, cls.name), label=target[validation], ref=training, **bins
        )
        release_inputs(dataset)  # the bins are all boosting reads
        booster = xgb.train(
            {**classifier.get_xgb_params(), "num_class": len(PROBABILITIES)},
            training,
            params.rounds,
            evals=[(validating, "validation_0")],
            early_stopping_rounds=params.early_stopping_rounds,
            callbacks=[round_logger(cls.name, params.rounds)],
            verbose_eval=False,
        )
        del training, validating
        # the sklearn wrapper (its parameters above; predict_proba, importances) around the trained booster
        classifier.load_model(bytearray(booster.save_raw(raw_format="json")))
        log.info("%s: best round %d", cls.name, classifier.best_iteration + 1)
        importance = dict(zip(feature_names, classifier.feature_importances_.round(6).tolist(), strict=True))
        info = {"best_iteration": int(classifier.best_iteration), "feature_importance": importance}
        return cls(feature_names, classifier, info)

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        return probabilities_frame(
            table.index, self.booster.predict_proba(feature_matrix(table, self.feature_names, self.name))
        )

    def save(self) -> dict[str, bytes]:
        model = bytes(self.booster.get_booster().save_raw(raw_format="json"))
        return {".json": model, CONFIG: json_bytes({"feature_names": self.feature_names, **self.info})}

    @classmethod
    def load(cls, files: Mapping[str, bytes]) -> XGBoostDirection:
        import xgboost as xgb

        booster = xgb.XGBClassifier()
        booster.load_model(bytearray(files[".json"]))
        config = read_config(files)
        return cls(config["feature_names"], booster, {k: v for k, v in config.items() if k != "feature_names"})


class LSTMDirection:
    name, task, target = "direction_lstm", "direction", TARGET
    FILES = (".pt", CONFIG)  # a torch state_dict (loaded with weights_only), the scaler and shape
    Params = LSTMParams  # config.yaml `models.direction_lstm`

    def __init__(
        self, feature_names: list[str], net: lstm.LSTMNet, scaler: Standardizer, shape: dict, info: dict | None = None
    ):
        self.feature_names, self.net, self.scaler, self.shape, self.info = feature_names, net, scaler, shape, info or {}

    @property
    def context_bars(self) -> int:
        """A prediction reads this many bars of its symbol (the row's and those before it)."""
        return self.shape["sequence_length"]

    @classmethod
    def fit(cls, dataset: Dataset, params: LSTMParams, seed: int) -> LSTMDirection:
        import torch
        from torch import nn

        from trading_ml.models import lstm

        table, split, feature_names = dataset.table, dataset.split, dataset.feature_names
        scaler, sequences = lstm.standardized_sequences(
            table, lambda rows: model_inputs(dataset, rows, cls.name), split.mask("train"), params.sequence_length
        )
        labels = direction_labels(table, dataset, cls.name)
        labelled = labels.notna().to_numpy()[sequences.row_of]
        segment = split.segment.to_numpy()[sequences.row_of]
        targets = torch.from_numpy(class_index(labels.fillna(0))[sequences.row_of])
        lstm.seed_everything(seed)
        net = lstm.LSTMNet(len(feature_names), params.hidden, 3)
        history = lstm.fit(
            net,
            sequences,
            targets,
            np.flatnonzero(labelled & (segment == "train")),
            np.flatnonzero(labelled & (segment == "validation")),
            nn.CrossEntropyLoss(),
            params,
            seed,
            cls.name,
            threads=dataset.threads,
        )
        shape = {"sequence_length": params.sequence_length, "hidden": params.hidden}
        return cls(feature_names, net, scaler, shape, history)

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        import torch

        from trading_ml.models import lstm

        sequences = lstm.Sequences(
            table,
            self.shape["sequence_length"],
            lambda rows: feature_matrix(table, self.feature_names, self.name, rows),
            self.scaler,
        )
        probabilities = np.full((len(table), 3), np.nan)
        logits = lstm.predict(self.net, sequences, np.arange(len(sequences.row_of)))
        if len(logits):
            probabilities[sequences.row_of] = torch.softmax(logits, dim=1).numpy()
        return probabilities_frame(table.index, probabilities)

    def save(self) -> dict[str, bytes]:
        from trading_ml.models import lstm

        config = {"feature_names": self.feature_names, "scaler": self.scaler.to_dict(), **self.shape, **self.info}
        return {".pt": lstm.state_dict_bytes(self.net), CONFIG: json_bytes(config)}

    @classmethod
    def load(cls, files: Mapping[str, bytes]) -> LSTMDirection:
        from trading_ml.models import lstm

        config = read_config(files)
        net, shape = lstm.load_net(config, 3, files[".pt"])
        return cls(config["feature_names"], net, Standardizer.from_dict(config["scaler"]), shape)


class DirectionEnsemble:
    """The average of its members' probabilities (XGBoost alone where the LSTM has no history yet).

    A model of the protocol built from other models of its run (the catalogue names its members):
    its one file names them and the rule, the loader hands it the loaded members, and ``combine`` is
    the rule applied to predictions the members already made (out of sample, when the train stage combines them)."""

    # Named as its task: the seed plan's interface loads it as load_model("direction"), and registries
    # hold its versions and production pointer under that name.
    name, task, target = "direction", "direction", TARGET
    MEMBERS = ("direction_xgboost", "direction_lstm")  # built from these models of its run
    FILES = (".json",)
    RULE = "mean of member probabilities"

    def __init__(self, members: list):
        self.members = members
        self.feature_names = sorted({n for member in members for n in member.feature_names})

    @staticmethod
    def combine(predictions: list[pd.DataFrame]) -> pd.DataFrame:
        return average_probabilities([p[PROBABILITIES] for p in predictions])

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        return self.combine([member.predict(table) for member in self.members])

    def save(self) -> dict[str, bytes]:
        return self.spec_files([member.name for member in self.members])

    @classmethod
    def spec_files(cls, member_names: list[str]) -> dict[str, bytes]:
        """Its files for members of these names (all a combination needs to be registered)."""
        return {".json": json_bytes({"members": list(member_names), "rule": cls.RULE})}

    @classmethod
    def load(cls, files: Mapping[str, bytes], members: Mapping[str, object]) -> DirectionEnsemble:
        spec = json.loads(files[".json"])
        if spec.get("members") != list(members):
            raise DataError(f"its file names members {spec.get('members')!r}, not {list(members)}; refusing it")
        return cls(list(members.values()))


def average_probabilities(members: list[pd.DataFrame]) -> pd.DataFrame:
    """The ensemble rule: the mean of the members' probabilities, ignoring a member without one."""
    stacked = np.stack([m.to_numpy(dtype=float) for m in members])
    present = np.isfinite(stacked).sum(axis=0)
    mean = np.nansum(stacked, axis=0) / np.where(present > 0, present, 1)
    return probabilities_frame(members[0].index, np.where(present > 0, mean, np.nan))
