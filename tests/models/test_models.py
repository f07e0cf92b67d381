"""Each model against its baseline on planted data, and a guard against leakage on pure noise."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest

from trading_ml.config import FeatureSettings, ModelSettings
from trading_ml.features.registry import model_features, symbol_feature_names
from trading_ml.features.targets import direction_labels
from trading_ml.models import metrics
from trading_ml.models.direction import LSTMDirection, XGBoostDirection
from trading_ml.models.evaluation import evaluate_regime
from trading_ml.models.regime import FORECAST, NOWCAST, REGIME_FEATURES, RegimeForest
from trading_ml.models.splits import split_by_time
from trading_ml.models.volatility import GarchVolatility, LSTMVolatility, ewma_forecast, naive_forecast

SETTINGS = dataclasses.replace(ModelSettings(), lstm_epochs=4, xgboost_rounds=200)
FEATURES = model_features(symbol_feature_names())[:12]  # real feature names, synthetic values


def planted_table(signal: float, days: int = 600, symbols: int = 8, seed: int = 0) -> pd.DataFrame:
    """Random features; the next return is ``signal`` x the first feature plus noise; GARCH-like returns."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2020-01-01", periods=days, freq="B", tz="UTC", name="timestamp")
    frames = []
    for number in range(symbols):
        values = rng.normal(size=(days, len(FEATURES)))
        frame = pd.DataFrame(values, index=stamps, columns=FEATURES)
        variance, returns = 1e-4, np.zeros(days)
        for t in range(days):  # GARCH(1,1) with strong clustering
            returns[t] = np.sqrt(variance) * rng.normal()
            variance = 2e-6 + 0.12 * returns[t] ** 2 + 0.86 * variance
        frame["return_1"] = returns
        next_return = signal * 0.01 * frame[FEATURES[0]] + pd.Series(returns, index=stamps).shift(-1)
        frame["target_return"] = next_return
        frame["target_direction"] = direction_labels(next_return, 0.001)
        frame["target_volatility"] = pd.Series(returns, index=stamps).rolling(20).std().shift(-1)
        frames.append(frame.assign(symbol=f"S{number}").set_index("symbol", append=True))
    return pd.concat(frames).sort_index(level=["timestamp", "symbol"])


def direction_accuracy(model_class, table):
    split = split_by_time(table, SETTINGS, FeatureSettings())
    model = model_class.fit(table, split, FEATURES, SETTINGS)
    probabilities = model.predict(table)
    rows = split.mask("test") & table["target_direction"].notna().to_numpy() & probabilities.notna().all(axis=1).to_numpy()
    truth = table["target_direction"].to_numpy()[rows].astype(int)
    accuracy = metrics.direction_metrics(truth, probabilities.to_numpy()[rows])["accuracy"]
    best_constant = pd.Series(truth).value_counts(normalize=True).max()  # the best single class, known in hindsight
    return accuracy, float(best_constant), model


@pytest.mark.parametrize("model_class", [XGBoostDirection, LSTMDirection])
def test_direction_models_learn_a_planted_signal_and_not_noise(model_class):
    accuracy, constant = direction_accuracy(model_class, planted_table(signal=1.0))[:2]
    assert accuracy > constant + 0.10, (accuracy, constant)
    noise_accuracy, noise_constant = direction_accuracy(model_class, planted_table(signal=0.0, seed=1))[:2]
    assert noise_accuracy < noise_constant + 0.03, (noise_accuracy, noise_constant)


def test_garch_beats_the_naive_forecast_on_clustered_volatility():
    table = planted_table(signal=0.0, seed=2)
    split = split_by_time(table, SETTINGS, FeatureSettings())
    forecast = GarchVolatility.fit(table, split, SETTINGS, 20).predict(table)["volatility"]
    rows = split.mask("test") & table["target_volatility"].notna().to_numpy()
    truth = table["target_volatility"].to_numpy()[rows]
    garch = metrics.volatility_metrics(truth, forecast.to_numpy()[rows])
    naive = metrics.volatility_metrics(truth, naive_forecast(table, 20).to_numpy()[rows])
    assert garch["rmse"] < 0.9 * naive["rmse"] and garch["qlike"] < naive["qlike"]


@pytest.mark.parametrize("model_class", [XGBoostDirection, LSTMDirection, LSTMVolatility, GarchVolatility])
def test_save_and_load_give_identical_predictions(model_class):
    table = planted_table(signal=1.0, days=300, symbols=4)
    split = split_by_time(table, SETTINGS, FeatureSettings())
    if model_class is GarchVolatility:
        model = model_class.fit(table, split, SETTINGS, 20)
    else:
        model = model_class.fit(table, split, FEATURES + ["return_1"] if model_class is LSTMVolatility else FEATURES, SETTINGS)
    files = model.to_files()
    assert tuple(files) == model_class.FILES and all(isinstance(payload, bytes) and payload for payload in files.values())
    again = model_class.from_files(files)
    pd.testing.assert_frame_equal(model.predict(table), again.predict(table))


def test_two_fits_on_the_same_data_give_the_same_predictions():
    table = planted_table(signal=1.0, days=300, symbols=4)
    split = split_by_time(table, SETTINGS, FeatureSettings())
    first = LSTMDirection.fit(table, split, FEATURES, SETTINGS).predict(table)
    second = LSTMDirection.fit(table, split, FEATURES, SETTINGS).predict(table)
    pd.testing.assert_frame_equal(first, second)


def planted_volatility_table(days: int = 600, symbols: int = 6, seed: int = 3) -> pd.DataFrame:
    """Next bar's volatility is set by today's ``atr_14_pct`` (a shock a model can read); returns follow it."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2020-01-01", periods=days, freq="B", tz="UTC", name="timestamp")
    frames = []
    for number in range(symbols):
        shock = rng.normal(size=days)
        next_sigma = 0.01 * np.exp(0.5 * shock)
        returns = np.concatenate([[0.0], next_sigma[:-1] * rng.normal(size=days - 1)])
        frame = pd.DataFrame({"atr_14_pct": shock, "return_1": returns, "target_volatility": next_sigma}, index=stamps)
        frames.append(frame.assign(symbol=f"S{number}").set_index("symbol", append=True))
    return pd.concat(frames).sort_index(level=["timestamp", "symbol"])


def test_volatility_lstm_learns_a_planted_driver_and_beats_naive_and_ewma():
    table = planted_volatility_table()
    settings = dataclasses.replace(SETTINGS, lstm_epochs=10, lstm_learning_rate=0.005)  # a small table learns faster
    split = split_by_time(table, settings, FeatureSettings())
    model = LSTMVolatility.fit(table, split, ["atr_14_pct", "return_1"], settings)
    assert model.feature_names == ["atr_14_pct", "return_1"]
    forecast = model.predict(table)["volatility"].to_numpy()
    naive = naive_forecast(table, 20).to_numpy()
    ewma = ewma_forecast(table, 20, 0.94).to_numpy()
    rows = split.mask("test") & np.isfinite(forecast) & np.isfinite(naive)
    truth = table["target_volatility"].to_numpy()[rows]
    lstm_rmse = metrics.volatility_metrics(truth, forecast[rows])["rmse"]
    for baseline in (naive, ewma):
        assert lstm_rmse < 0.5 * metrics.volatility_metrics(truth, baseline[rows])["rmse"]


def planted_regime_table(days: int = 700, symbols: int = 6, seed: int = 4) -> pd.DataFrame:
    """Regime labels that follow the plan's rule on fast-moving features, so persistence is weak."""
    rng = np.random.default_rng(seed)
    stamps = pd.date_range("2020-01-01", periods=days, freq="B", tz="UTC", name="timestamp")
    frames = []
    for number in range(symbols):
        frame = pd.DataFrame(rng.normal(size=(days, len(REGIME_FEATURES))), index=stamps, columns=REGIME_FEATURES)
        frame["vix_level"] = 20 + 8 * frame["vix_level"]
        label = np.select(
            [frame["vix_level"] > 30, frame["sma_50_to_sma_200"] > 0.3, frame["sma_50_to_sma_200"] < -0.3],
            ["high_vol", "bull", "bear"], "sideways",
        )
        frame[NOWCAST] = label
        frame[FORECAST] = frame[NOWCAST].shift(-5)
        frames.append(frame.assign(symbol=f"S{number}").set_index("symbol", append=True))
    return pd.concat(frames).sort_index(level=["timestamp", "symbol"])


def test_regime_forest_nowcast_beats_persistence_and_survives_save_and_load():
    table = planted_regime_table()
    split = split_by_time(table, SETTINGS, FeatureSettings())
    model = RegimeForest.fit(table, split, REGIME_FEATURES, SETTINGS)
    result = evaluate_regime(table, split, model.predict(table))
    now = result["nowcast"]
    assert now["metrics"]["accuracy"] > now["persistence"]["accuracy"] + 0.3, now
    assert result["beats_baselines"]
    again = RegimeForest.from_files(model.to_files())
    pd.testing.assert_frame_equal(model.predict(table), again.predict(table))


def test_regime_trees_draw_at_most_forest_max_samples_rows_and_all_rows_below_it():
    table = planted_regime_table(symbols=4)
    split = split_by_time(table, SETTINGS, FeatureSettings())
    train_rows = int((split.mask("train") & table[NOWCAST].notna().to_numpy()).sum())
    capped = RegimeForest.fit(table, split, REGIME_FEATURES, dataclasses.replace(SETTINGS, forest_max_samples=300))
    uncapped = RegimeForest.fit(table, split, REGIME_FEATURES, dataclasses.replace(SETTINGS, forest_max_samples=train_rows + 1))
    assert train_rows > 1000 and capped.forests[NOWCAST].max_samples == 300
    assert uncapped.forests[NOWCAST].max_samples is None  # below the cap: the plain bootstrap of every row
    nodes = {name: np.mean([tree.tree_.node_count for tree in model.forests[FORECAST].estimators_])
             for name, model in (("capped", capped), ("uncapped", uncapped))}
    assert nodes["capped"] < 0.5 * nodes["uncapped"], nodes
    now = evaluate_regime(table, split, capped.predict(table))["nowcast"]
    assert now["metrics"]["accuracy"] > now["persistence"]["accuracy"] + 0.2, now
