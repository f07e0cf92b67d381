"""Direction, volatility and regime models; their catalogue (names, tasks, classes) is
:mod:`trading_ml.models.catalogue`."""

from trading_ml.models.catalogue import TRAINED_MODELS

__all__ = ["TRAINED_MODELS"]
