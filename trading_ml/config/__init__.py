"""Settings: config.yaml plus environment overrides, checked when read against one typed schema.

``schema`` holds the typed sections (models and sources declare their own next to themselves),
``settings`` is what a run reads, ``messages`` turns an error into one line naming the key and what
to write instead. :mod:`trading_ml.config_file` (``load_settings``) joins the sections with the
models' and sources' into the file's schema and reads the file and the environment; it sits above
the models and the sources, which import from here.
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
    "EARLIEST_AS_OF", "MAX_LOOKBACK_YEARS", "STRICT", "TICKER_PATTERN", "AirflowSettings", "ApiSettings", "Count", "FeatureSettings", "Instrument",
    "ModelSettings", "Positive", "Rate", "RegimeRules", "Settings", "Ticker", "StorageSettings", "Timeframe", "ValidationSettings",
    "at_most", "check_ticker", "checked", "parse_as_of", "parse_lookback", "shorten",
]
