"""Settings: config.yaml plus environment overrides, checked when read against one typed schema.

``schema`` holds the typed sections (models and sources declare their own next to themselves),
``settings`` is what a run reads, ``messages`` turns an error into one line naming the key and what
to write instead; ``loader`` (``load_settings``) joins the sections with the models' ``Params`` and
the sources' ``Options`` it is given (``ConfigParts``: :mod:`trading_ml.drivers` gives them) into
the file's schema, and reads the file, a run's frozen settings and the environment. Nothing here
imports the models or the sources, which import from here.
"""

from trading_ml.config.messages import shorten
from trading_ml.config.schema import (
    EARLIEST_AS_OF,
    MAX_LOOKBACK_YEARS,
    STRICT,
    TICKER_PATTERN,
    AirflowSettings,
    ApiSettings,
    Count,
    FeatureSettings,
    ModelSettings,
    Positive,
    Rate,
    RegimeRules,
    Ticker,
    ValidationSettings,
    at_most,
    check_ticker,
    checked,
    parse_lookback,
)
from trading_ml.config.settings import Instrument, Settings, StorageSettings, Timeframe, parse_as_of

__all__ = [
    "EARLIEST_AS_OF",
    "MAX_LOOKBACK_YEARS",
    "STRICT",
    "TICKER_PATTERN",
    "AirflowSettings",
    "ApiSettings",
    "Count",
    "FeatureSettings",
    "Instrument",
    "ModelSettings",
    "Positive",
    "Rate",
    "RegimeRules",
    "Settings",
    "Ticker",
    "StorageSettings",
    "Timeframe",
    "ValidationSettings",
    "at_most",
    "check_ticker",
    "checked",
    "parse_as_of",
    "parse_lookback",
    "shorten",
]
