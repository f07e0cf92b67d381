"""Volatility of the next bar: GARCH(1,1) per symbol and an LSTM; their baselines (naive, EWMA) and
the target's definition are in :mod:`trading_ml.models.baselines`."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from trading_ml.config import STRICT, checked
from trading_ml.errors import DataError
from trading_ml.features.catalogue import FEATURES
from trading_ml.io import json_bytes
from trading_ml.models.base import CONFIG, Dataset, LSTMParams, Standardizer, feature_matrix, progress_due, read_config
from trading_ml.models.baselines import RETURN, TARGET, align, rolling_std_with_next, symbol_returns

GARCH_SCALE = 100.0  # arch fits percent returns
MIN_TRAIN_RETURNS = 100
PARAMETERS = ("mu", "omega", "alpha[1]", "beta[1]")  # arch's order for a constant-mean GARCH(1,1)
log = logging.getLogger(__name__)
EXTRA_LSTM_INPUTS = [
    "return_1",
    "downside_vol_20",
    "volume_ratio_20",
    "vix_level",
    "vix_change_1",
    "benchmark_volatility_20",
]


class GarchVolatility:
    """GARCH(1,1) with a constant mean, fitted per symbol on its training returns only."""

    name, task, target = "volatility_garch", "volatility", TARGET
    feature_names = [RETURN]
    FILES = (".json",)  # the fitted parameters per symbol

    @checked(frozen=True, config=STRICT)
    class Params:
        """config.yaml `models.volatility_garch`: GARCH(1,1) has nothing to set."""

    def __init__(self, parameters: dict[str, dict[str, float]], window: int):
        self.parameters, self.window = parameters, window

    @classmethod
    def fit(cls, dataset: Dataset, params: Params, seed: int) -> GarchVolatility:
        table, window = dataset.table, dataset.volatility_window
        train = dataset.split.segment == "train"
        parameters, by_symbol = {}, symbol_returns(table)
        for number, (symbol, returns) in enumerate(by_symbol.items(), start=1):
            in_train = train.xs(symbol, level="symbol").to_numpy()
            if in_train.sum() >= MIN_TRAIN_RETURNS:
                parameters[symbol] = fit_garch(symbol, returns[in_train])
            else:
                log.info(
                    "%s: %s has %d training returns (fewer than %d); it gets the median parameters",
                    cls.name,
                    symbol,
                    in_train.sum(),
                    MIN_TRAIN_RETURNS,
                )
            if progress_due(number, len(by_symbol)):
                log.info("%s: %d of %d symbols done", cls.name, number, len(by_symbol))
        return cls(parameters, window)

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        """One-step forecasts with the fitted parameters held fixed; symbols it was not fitted on use
        the median parameters of those it was."""
        from arch import arch_model

        parts = []
        for symbol, returns in symbol_returns(table).items():
            parameters = self.parameters.get(symbol) or self.pooled_parameters()
            model = arch_model(returns.to_numpy() * GARCH_SCALE, mean="Constant", vol="GARCH", p=1, q=1, rescale=False)
            forecast = model.fix([parameters[name] for name in PARAMETERS]).forecast(horizon=1, start=0, reindex=True)
            next_variance = pd.Series(forecast.variance.to_numpy()[:, 0] / GARCH_SCALE**2, index=returns.index)
            parts.append(
                rolling_std_with_next(returns, next_variance, self.window).to_frame("volatility").assign(symbol=symbol)
            )
        return align(table, parts).to_frame()

    def pooled_parameters(self) -> dict[str, float]:
        names = next(iter(self.parameters.values())).keys()
        return {name: float(np.median([p[name] for p in self.parameters.values()])) for name in names}

    def save(self) -> dict[str, bytes]:
        return {".json": json_bytes({"parameters": self.parameters, "window": self.window, "scale": GARCH_SCALE})}

    @classmethod
    def load(cls, files: Mapping[str, bytes]) -> GarchVolatility:
        data = json.loads(files[".json"])
        parameters, window = (
            data.get("parameters") if isinstance(data, dict) else None,
            data.get("window") if isinstance(data, dict) else None,
        )
        if (
            not isinstance(window, int)
            or isinstance(window, bool)
            or window < 2
            or not isinstance(parameters, dict)
            or not all(
                isinstance(p, dict)
                and p
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p.values())
                for p in parameters.values()
            )
        ):
            raise DataError(
                "volatility_garch: the file is not {'parameters': {symbol: {name: number}}, 'window': integer >= 2}; "
                "refusing it"
            )
        return cls(parameters, window)


def fit_garch(symbol: str, returns: pd.Series) -> dict[str, float]:
    """GARCH(1,1) parameters of one symbol's training returns; a fit that did not converge is logged."""
    from arch import arch_model

    model = arch_model(returns.to_numpy() * GARCH_SCALE, mean="Constant", vol="GARCH", p=1, q=1, rescale=False)
    result = model.fit(disp="off", options={"maxiter": 500})
    if result.convergence_flag != 0:
        log.warning(
            "volatility_garch: the fit for %s did not converge (%s); its parameters are kept as they ended",
            symbol,
            result.optimization_result.message,
        )
    return {name: float(value) for name, value in result.params.items()}


def lstm_inputs(feature_names: list[str]) -> list[str]:
    """The plan's volatility inputs: the scale-free volatility features, returns, volume, the VIX."""
    volatility = [n for n in feature_names if FEATURES[n].category == "volatility" and FEATURES[n].scale_free]
    return volatility + [n for n in EXTRA_LSTM_INPUTS if n in feature_names]


class LSTMVolatility:
    """An LSTM on sequences of volatility features, predicting log(target), fitted with MSE."""

    name, task, target = "volatility_lstm", "volatility", TARGET
    FILES = (".pt", CONFIG)  # a torch state_dict (loaded with weights_only), scalers and shape
    Params = LSTMParams  # config.yaml `models.volatility_lstm`

    def __init__(
        self, feature_names, net, scaler: Standardizer, target_scale: dict, shape: dict, info: dict | None = None
    ):
        self.feature_names, self.net, self.scaler = feature_names, net, scaler
        self.target_scale, self.shape, self.info = target_scale, shape, info or {}

    @classmethod
    def fit(cls, dataset: Dataset, params: LSTMParams, seed: int) -> LSTMVolatility:
        import torch
        from torch import nn

        from trading_ml.models import lstm

        table, split = dataset.table, dataset.split
        names = lstm_inputs(dataset.feature_names)
        features = feature_matrix(table, names, cls.name)
        scaler = Standardizer.fit(features[split.mask("train")])
        sequences = lstm.Sequences(table, scaler.transform(features), params.sequence_length)
        log_target = np.log(table[TARGET].to_numpy(dtype=np.float64).clip(min=1e-6))
        labelled = np.isfinite(log_target)
        train_rows = split.mask("train") & labelled
        target_scale = {"mean": float(log_target[train_rows].mean()), "std": float(log_target[train_rows].std())}
        scaled = torch.from_numpy(((log_target - target_scale["mean"]) / target_scale["std"]).astype(np.float32))
        targets = torch.nan_to_num(scaled)[sequences.row_of].unsqueeze(1)
        segment = split.segment.to_numpy()[sequences.row_of]
        ok = labelled[sequences.row_of]
        lstm.seed_everything(seed)
        net = lstm.LSTMNet(len(names), params.hidden, 1)
        history = lstm.fit(
            net,
            sequences,
            targets,
            np.flatnonzero(ok & (segment == "train")),
            np.flatnonzero(ok & (segment == "validation")),
            nn.MSELoss(),
            params,
            seed,
            cls.name,
        )
        shape = {"sequence_length": params.sequence_length, "hidden": params.hidden}
        return cls(names, net, scaler, target_scale, shape, history)

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        from trading_ml.models import lstm

        sequences = lstm.Sequences(
            table,
            self.scaler.transform(feature_matrix(table, self.feature_names, self.name)),
            self.shape["sequence_length"],
        )
        forecast = np.full(len(table), np.nan)
        outputs = lstm.predict(self.net, sequences, np.arange(len(sequences.row_of)))
        if len(outputs):
            forecast[sequences.row_of] = np.exp(
                outputs[:, 0].numpy() * self.target_scale["std"] + self.target_scale["mean"]
            )
        return pd.DataFrame({"volatility": forecast}, index=table.index)

    def save(self) -> dict[str, bytes]:
        from trading_ml.models import lstm

        config = {
            "feature_names": self.feature_names,
            "scaler": self.scaler.to_dict(),
            "target_scale": self.target_scale,
            **self.shape,
            **self.info,
        }
        return {".pt": lstm.state_dict_bytes(self.net), CONFIG: json_bytes(config)}

    @classmethod
    def load(cls, files: Mapping[str, bytes]) -> LSTMVolatility:
        from trading_ml.models import lstm

        config = read_config(files)
        net, shape = lstm.load_net(config, 1, files[".pt"])
        return cls(
            config["feature_names"], net, Standardizer.from_dict(config["scaler"]), config["target_scale"], shape
        )
