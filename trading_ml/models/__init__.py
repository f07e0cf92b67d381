"""The five models (direction XGBoost + LSTM, volatility GARCH + LSTM, regime RF), their splits and metrics."""
