"""The module the plan's verification imports: `from logical_pipe import TradingSystemAPI, ConfigLoader`."""

from trading_ml.plan_interface import ConfigLoader, ModelManager, TradingSystemAPI

__all__ = ["ConfigLoader", "ModelManager", "TradingSystemAPI"]
