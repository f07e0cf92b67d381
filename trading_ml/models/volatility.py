"""Realized volatility over the next h bars: GARCH(1,1) per symbol, an LSTM anchored on EWMA, and
HAR-RV; their baselines (naive, EWMA, historical) and the target's definition are in
:mod:`trading_ml.models.baselines`."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping

import numpy as np
import pandas as pd

from trading_ml.config import STRICT, at_most, checked
from trading_ml.config.schema import MAX_VOLATILITY_HORIZON
from trading_ml.errors import DataError
from trading_ml.features.catalogue import FEATURES
from trading_ml.features.indicators import rolling_reduce
from trading_ml.features.intraday import INTRADAY_VARIANCE
from trading_ml.io import json_bytes
from trading_ml.models.base import CONFIG, Dataset, LSTMParams, Standardizer, feature_matrix, progress_due, read_config
from trading_ml.models.baselines import RETURN, TARGET, align, ewma_variance, symbol_returns

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

    def __init__(self, parameters: dict[str, dict[str, float]], horizon: int):
        self.parameters, self.horizon = parameters, horizon

    @classmethod
    def fit(cls, dataset: Dataset, params: Params, seed: int) -> GarchVolatility:
        table, horizon = dataset.table, dataset.volatility_horizon
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
        return cls(parameters, horizon)

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        """Forecasts of the next ``horizon`` bars' variances with the fitted parameters held fixed, as
        their realized volatility (root of the mean); symbols it was not fitted on use the median
        parameters of those it was."""
        parts = []
        for symbol, returns in symbol_returns(table).items():
            parameters = self.parameters.get(symbol) or self.pooled_parameters()
            variance = garch_mean_variance(returns.to_numpy() * GARCH_SCALE, parameters, self.horizon) / GARCH_SCALE**2
            parts.append(pd.DataFrame({"volatility": np.sqrt(variance), "symbol": symbol}, index=returns.index))
        return align(table, parts).to_frame()

    def pooled_parameters(self) -> dict[str, float]:
        names = next(iter(self.parameters.values())).keys()
        return {name: float(np.median([p[name] for p in self.parameters.values()])) for name in names}

    def save(self) -> dict[str, bytes]:
        return {".json": json_bytes({"parameters": self.parameters, "horizon": self.horizon, "scale": GARCH_SCALE})}

    @classmethod
    def load(cls, files: Mapping[str, bytes]) -> GarchVolatility:
        data = json.loads(files[".json"])
        parameters, horizon = (
            data.get("parameters") if isinstance(data, dict) else None,
            data.get("horizon") if isinstance(data, dict) else None,
        )
        if (
            not isinstance(horizon, int)
            or isinstance(horizon, bool)
            or not 1 <= horizon <= MAX_VOLATILITY_HORIZON
            or not isinstance(parameters, dict)
            or not all(
                isinstance(p, dict)
                and p
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in p.values())
                for p in parameters.values()
            )
        ):
            raise DataError(
                "volatility_garch: the file is not {'parameters': {symbol: {name: number}}, 'horizon': integer in 1.."
                f"{MAX_VOLATILITY_HORIZON}}}; refusing it"
            )
        return cls(parameters, horizon)


def garch_mean_variance(returns: np.ndarray, parameters: dict[str, float], horizon: int) -> np.ndarray:
    """At each bar, the mean of the next ``horizon`` bars' variance forecasts of a GARCH(1,1) with
    these parameters: arch filters the conditional variances, and the h-step forecasts follow from
    sigma2(t+1) = omega + alpha eps(t)^2 + beta sigma2(t), sigma2(t+k) = omega + (alpha + beta)
    sigma2(t+k-1) (arch's analytic forecast, which loops over the bars in Python)."""
    from arch import arch_model

    model = arch_model(returns, mean="Constant", vol="GARCH", p=1, q=1, rescale=False)
    fixed = model.fix([parameters[name] for name in PARAMETERS])
    mu, omega, alpha, beta = (parameters[name] for name in PARAMETERS)
    step = omega + alpha * (returns - mu) ** 2 + beta * fixed.conditional_volatility**2
    total = step.copy()
    for _ in range(horizon - 1):
        step = omega + (alpha + beta) * step
        total += step
    return total / horizon


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


ANCHOR_DECAY = 0.94  # the LSTM's anchor: the RiskMetrics EWMA of squared returns
MIN_VOLATILITY = 1e-6


def ewma_anchor(table: pd.DataFrame, decay: float) -> np.ndarray:
    """Each row's RiskMetrics volatility forecast from its symbol's returns up to the row."""
    anchor = np.sqrt(ewma_variance(table, decay))
    return np.maximum(anchor.to_numpy(dtype=np.float64), MIN_VOLATILITY)


class LSTMVolatility:
    """An LSTM that learns how far the target sits from the EWMA forecast: it predicts
    log(target / EWMA) from sequences of the scale-free volatility features and log(EWMA), fitted
    with MSE. Its output head starts at zero and the untrained net competes in early stopping, so it
    begins at (and keeps unless it beats on validation) the EWMA forecast; exp() of a log forecast is
    biased low, so the forecast is scaled by Duan's smearing factor, mean(exp(residual)) on the
    validation rows."""

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
        anchor = ewma_anchor(table, ANCHOR_DECAY)
        scaler, sequences = lstm.standardized_sequences(
            table,
            lambda rows: inputs_with_anchor(table, names, anchor, cls.name, rows),
            split.mask("train"),
            params.sequence_length,
        )
        log_ratio = np.log(np.maximum(table[TARGET].to_numpy(dtype=np.float64), MIN_VOLATILITY) / anchor)
        labelled = np.isfinite(log_ratio) & table[TARGET].notna().to_numpy()
        train_rows = split.mask("train") & labelled
        scale = {"mean": float(log_ratio[train_rows].mean()), "std": float(log_ratio[train_rows].std()) or 1.0}
        scaled = torch.from_numpy(((log_ratio - scale["mean"]) / scale["std"]).astype(np.float32))
        targets = torch.nan_to_num(scaled)[sequences.row_of].unsqueeze(1)
        segment = split.segment.to_numpy()[sequences.row_of]
        ok = labelled[sequences.row_of]
        validation = np.flatnonzero(ok & (segment == "validation"))
        lstm.seed_everything(seed)
        net = lstm.LSTMNet(len(names) + 1, params.hidden, 1)
        nn.init.zeros_(net.head.weight)
        nn.init.zeros_(net.head.bias)  # the untrained net forecasts the mean log ratio: a scaled EWMA
        history = lstm.fit(
            net,
            sequences,
            targets,
            np.flatnonzero(ok & (segment == "train")),
            validation,
            nn.MSELoss(),
            params,
            seed,
            cls.name,
            keep_initial=True,
            threads=dataset.threads,
        )
        residual = targets[validation, 0].numpy() - lstm.predict(net, sequences, validation)[:, 0].numpy()
        smearing = float(np.mean(np.exp(residual * scale["std"]))) if len(validation) else 1.0
        shape = {"sequence_length": params.sequence_length, "hidden": params.hidden}
        model = cls(names, net, scaler, {**scale, "smearing": smearing, "anchor_decay": ANCHOR_DECAY}, shape, history)
        log.info("%s: best epoch %d, smearing factor %.4f", cls.name, history["best_epoch"], smearing)
        return model

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        return self.predict_rows(table, np.ones(len(table), dtype=bool))

    def predict_rows(self, table: pd.DataFrame, rows: np.ndarray) -> pd.DataFrame:
        """The forecasts of the ``rows`` (a mask) of ``table``: the EWMA anchor reads each symbol's
        whole history in the table, the net only the rows' sequences (NaN where a row has none)."""
        from trading_ml.models import lstm

        anchor = ewma_anchor(table, self.target_scale["anchor_decay"])
        sequences = lstm.Sequences(
            table,
            self.shape["sequence_length"],
            lambda positions: inputs_with_anchor(table, self.feature_names, anchor, self.name, positions),
            self.scaler,
        )
        forecast = np.full(len(table), np.nan)
        wanted = np.flatnonzero(rows[sequences.row_of])
        outputs = lstm.predict(self.net, sequences, wanted)
        if len(outputs):
            scale, ends = self.target_scale, sequences.row_of[wanted]
            log_ratio = outputs[:, 0].numpy().astype(np.float64) * scale["std"] + scale["mean"]
            forecast[ends] = anchor[ends] * np.exp(log_ratio) * scale["smearing"]
        return pd.DataFrame({"volatility": forecast[rows]}, index=table.index[rows])

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
        scale = config.get("target_scale")
        if not isinstance(scale, dict) or not all(
            isinstance(scale.get(k), (int, float)) and not isinstance(scale.get(k), bool)
            for k in ("mean", "std", "smearing", "anchor_decay")
        ):
            raise DataError(
                "volatility_lstm: target_scale is not {mean, std, smearing, anchor_decay: number} "
                "(a file from before the EWMA anchor); retrain it"
            )
        config["feature_names"] = [*config["feature_names"], ANCHOR_INPUT]  # the net also reads log(EWMA)
        net, shape = lstm.load_net(config, 1, files[".pt"])
        return cls(config["feature_names"][:-1], net, Standardizer.from_dict(config["scaler"]), scale, shape)


ANCHOR_INPUT = "log_ewma_volatility"  # the input the LSTM adds to its features


def inputs_with_anchor(
    table: pd.DataFrame, names: list[str], anchor: np.ndarray, model: str, rows: np.ndarray | None = None
) -> np.ndarray:
    """The named features and log(EWMA volatility) as the last column, float32 (of ``rows`` as in
    :func:`feature_matrix`)."""
    return feature_matrix(table, names, model, rows, extra_columns=(np.log(anchor),))


HAR_REGRESSORS = [  # logs of realized variances (averages over 1, 5 and 22 bars) and the long-run variance
    "intercept",
    "squared_return_5",
    "squared_return_22",
    "session_variance_1",  # the bar's variance: hourly realized variance where the run has it, else Parkinson's
    "session_variance_5",
    "session_variance_22",
    "long_run",  # the expanding mean of squared returns: where volatility reverts to
]
MONTH = 22
VARIANCE_FLOOR = 1e-10  # added before taking logs (a flat bar has zero range)


class HarVolatility:
    """HAR-RV (Corsi 2009) in logs, pooled over symbols and per symbol: log of the next h bars'
    variance regressed on the logs of the weekly (5-bar) and monthly (22-bar) averages of squared
    returns, the daily, weekly and monthly averages of the session's variance, and the long-run
    variance (the expanding mean of squared returns). The session's variance is the realized variance
    of its hourly bars where the run has them (the training table's ``intraday_variance``, put on the
    range estimate's level), else the Parkinson range variance of the bar (from ``hl_range_pct``);
    either is far less noisy than one squared return. exp() of a log forecast is biased low,
    so each fit carries Duan's smearing factor (mean exp(residual) on its training rows).

    A symbol with ``per_symbol_min_rows`` training rows also gets its own fit, kept only where it
    beats the pooled one on the symbol's validation rows. Fitted by least squares; saved as JSON
    (numbers only, no code)."""

    name, task, target = "volatility_har", "volatility", TARGET
    feature_names = [RETURN, "hl_range_pct"]
    FILES = (".json",)  # the fits: pooled, and per symbol where they won on validation

    @checked(frozen=True, config=STRICT)
    class Params:
        """config.yaml `models.volatility_har`: HAR-RV in logs, fitted by least squares."""

        per_symbol_min_rows: at_most(1_000_000) = 250  # training rows a symbol needs for its own fit

    def __init__(self, pooled: dict, per_symbol: dict[str, dict], horizon: int):
        self.pooled, self.per_symbol, self.horizon = pooled, per_symbol, horizon

    @classmethod
    def fit(cls, dataset: Dataset, params: Params, seed: int) -> HarVolatility:
        table, split = dataset.table, dataset.split
        x = har_frame(table).to_numpy()
        target = np.log(table[TARGET].to_numpy(dtype=np.float64) ** 2 + VARIANCE_FLOOR)
        known = np.isfinite(x).all(axis=1) & np.isfinite(target)
        train, validation = split.mask("train") & known, split.mask("validation") & known
        if train.sum() < len(HAR_REGRESSORS) * 10:
            raise DataError(
                f"{cls.name}: {train.sum()} training rows with {MONTH} bars of history and a label; "
                "use a longer lookback or fewer models.folds"
            )
        pooled = log_least_squares(x[train], target[train])
        symbols = table.index.get_level_values("symbol")
        per_symbol = {}
        for symbol, own in pd.Series(np.arange(len(table))).groupby(symbols, sort=False).indices.items():
            fitting, rows = own[train[own]], own[validation[own]]  # positions of the symbol's rows
            if len(fitting) < params.per_symbol_min_rows or not len(rows):
                continue
            fitted = log_least_squares(x[fitting], target[fitting])
            if level_error(x[rows], target[rows], fitted) < level_error(x[rows], target[rows], pooled):
                per_symbol[str(symbol)] = fitted
        log.info(
            "%s: pooled coefficients %s, smearing %.3f; %d of %d symbols keep their own fit",
            cls.name,
            dict(zip(HAR_REGRESSORS, np.round(pooled["coefficients"], 3), strict=True)),
            pooled["smearing"],
            len(per_symbol),
            len(pd.unique(symbols)),
        )
        return cls(pooled, per_symbol, dataset.volatility_horizon)

    def predict(self, table: pd.DataFrame) -> pd.DataFrame:
        x = har_frame(table).to_numpy()
        symbols = table.index.get_level_values("symbol")
        fits = [self.per_symbol.get(symbol, self.pooled) for symbol in symbols]
        coefficients = np.array([fit["coefficients"] for fit in fits])
        smearing = np.array([fit["smearing"] for fit in fits])
        variance = np.exp(np.einsum("ij,ij->i", x, coefficients)) * smearing
        return pd.DataFrame({"volatility": np.sqrt(variance)}, index=table.index)

    def save(self) -> dict[str, bytes]:
        document = {
            "regressors": HAR_REGRESSORS,
            "pooled": self.pooled,
            "per_symbol": self.per_symbol,
            "horizon": self.horizon,
        }
        return {".json": json_bytes(document)}

    @classmethod
    def load(cls, files: Mapping[str, bytes]) -> HarVolatility:
        data = json.loads(files[".json"])
        if not (
            isinstance(data, dict)
            and data.get("regressors") == HAR_REGRESSORS
            and is_fit(data.get("pooled"))
            and isinstance(data.get("per_symbol"), dict)
            and all(is_fit(fit) for fit in data["per_symbol"].values())
            and isinstance(data.get("horizon"), int)
            and not isinstance(data["horizon"], bool)
            and 1 <= data["horizon"] <= MAX_VOLATILITY_HORIZON
        ):
            raise DataError(
                f"volatility_har: the file is not {{'regressors': {HAR_REGRESSORS}, 'pooled': {{'coefficients': "
                f"[number x {len(HAR_REGRESSORS)}], 'smearing': number > 0}}, 'per_symbol': {{symbol: the same}}, "
                f"'horizon': integer in 1..{MAX_VOLATILITY_HORIZON}}}; refusing it"
            )
        return cls(data["pooled"], data["per_symbol"], data["horizon"])


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def is_fit(fit) -> bool:
    """{'coefficients': one finite number per regressor, 'smearing': a finite number > 0}."""
    return (
        isinstance(fit, dict)
        and set(fit) == {"coefficients", "smearing"}
        and isinstance(fit["coefficients"], list)
        and len(fit["coefficients"]) == len(HAR_REGRESSORS)
        and all(is_number(v) for v in fit["coefficients"])
        and is_number(fit["smearing"])
        and fit["smearing"] > 0
    )


def har_frame(table: pd.DataFrame) -> pd.DataFrame:
    """Per row, the HAR regressors (logs of variances up to the row); NaN before a symbol's 22nd bar.
    Computed over the whole table at once, its rows ordered by symbol (each symbol's in their order)."""
    missing = [n for n in HarVolatility.feature_names if n not in table.columns]
    if missing:
        raise DataError(f"volatility_har needs feature(s) {', '.join(missing)} that this table lacks; rebuild features")
    symbols = SymbolRuns(table.index.get_level_values("symbol"))
    squared = symbols.sort(table[RETURN].to_numpy(dtype=np.float64)) ** 2
    bar_range = symbols.sort(table["hl_range_pct"].to_numpy(dtype=np.float64))
    intraday = symbols.sort(table[INTRADAY_VARIANCE].to_numpy(dtype=np.float64)) if INTRADAY_VARIANCE in table else None
    session = bar_variance(np.log1p(bar_range) ** 2 / (4 * np.log(2)), intraday, symbols)
    variances = {
        "squared_return_5": symbols.rolling_mean(squared, 5),
        "squared_return_22": symbols.rolling_mean(squared, MONTH),
        "session_variance_1": session,
        "session_variance_5": symbols.rolling_mean(session, 5),
        "session_variance_22": symbols.rolling_mean(session, MONTH),
        "long_run": symbols.expanding_mean(squared, MONTH),
    }
    columns = {"intercept": np.ones(len(table))}
    columns.update({name: symbols.unsort(np.log(values + VARIANCE_FLOOR)) for name, values in variances.items()})
    return pd.DataFrame(columns, index=table.index)[HAR_REGRESSORS]


class SymbolRuns:
    """A table's rows reordered so each symbol's rows are one run (in their order), with the
    per-symbol rolling, expanding and cumulative operations over those runs."""

    def __init__(self, symbols: pd.Index):
        codes = pd.factorize(symbols)[0]
        self.order = np.argsort(codes, kind="stable")
        rows = np.arange(len(codes))
        starts = np.ones(len(codes), dtype=bool)
        starts[1:] = codes[self.order][1:] != codes[self.order][:-1]
        self.first = np.maximum.accumulate(np.where(starts, rows, 0))  # each row's run start
        self.position = rows - self.first  # bars of its symbol before it

    def sort(self, values: np.ndarray) -> np.ndarray:
        return values[self.order]

    def unsort(self, values: np.ndarray) -> np.ndarray:
        out = np.empty_like(values)
        out[self.order] = values
        return out

    def cumulative_sum(self, values: np.ndarray) -> np.ndarray:
        """The running sum within each symbol."""
        total = np.cumsum(values)
        return total - total[self.first] + values[self.first]

    def rolling_mean(self, values: np.ndarray, length: int) -> np.ndarray:
        """The mean of each row's last ``length`` values of its symbol (NaN while one is missing)."""
        means = rolling_reduce(values, length, np.add) / length
        return np.where(self.position >= length - 1, means, np.nan)

    def expanding_mean(self, values: np.ndarray, min_values: int = 1) -> np.ndarray:
        """The mean of the symbol's known values up to each row, once there are ``min_values``."""
        known = ~np.isnan(values)
        count = self.cumulative_sum(known.astype(np.float64))
        mean = self.cumulative_sum(np.where(known, values, 0.0)) / np.maximum(count, 1)
        return np.where(count >= min_values, mean, np.nan)


def bar_variance(parkinson: np.ndarray, intraday: np.ndarray | None, symbols: SymbolRuns) -> np.ndarray:
    """Each bar's variance: the Parkinson range variance, averaged with the realized variance of the
    bar's hourly session where the run has a complete one, once the symbol has MONTH such sessions
    (hourly realized variance misses the moves inside each hour, so it is put on the range estimate's
    level first: the mean log ratio of the two over the sessions so far). Rows in ``symbols``' order."""
    if intraday is None:
        return parkinson
    both = (intraday > 0) & (parkinson > 0)  # False where either is missing
    with np.errstate(divide="ignore", invalid="ignore"):
        log_ratio = symbols.expanding_mean(np.where(both, np.log(parkinson) - np.log(intraday), np.nan))
    ready = both & (symbols.cumulative_sum(both.astype(np.float64)) >= MONTH)
    return np.where(ready, (parkinson + intraday * np.exp(log_ratio)) / 2, parkinson)


def log_least_squares(x: np.ndarray, log_variance: np.ndarray) -> dict:
    """Least squares in logs, and the smearing factor that makes exp() of its forecast unbiased."""
    coefficients = np.linalg.lstsq(x, log_variance, rcond=None)[0]
    smearing = float(np.mean(np.exp(log_variance - x @ coefficients)))
    return {"coefficients": [float(v) for v in coefficients], "smearing": smearing}


def level_error(x: np.ndarray, log_variance: np.ndarray, fit: dict) -> float:
    """Mean squared error of the volatility forecast (not its log) on these rows."""
    forecast = np.sqrt(np.exp(x @ np.asarray(fit["coefficients"])) * fit["smearing"])
    return float(np.mean((np.sqrt(np.exp(log_variance)) - forecast) ** 2))
