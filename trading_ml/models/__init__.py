"""The five models (direction XGBoost + LSTM, volatility GARCH + LSTM, regime RF), their splits and metrics."""

# The trained models by name, in training order. Light on purpose: the DAG reads it at parse time,
# without importing torch or xgboost; trading_ml.registry checks it against the model classes.
TRAINED_MODELS = ("direction_xgboost", "direction_lstm", "volatility_garch", "volatility_lstm", "regime_rf")
