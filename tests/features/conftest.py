"""Bars for feature tests: a small synthetic universe (1d, 1h) and the real sample series."""

from __future__ import annotations

import pytest

from tests.conftest import AS_OF
from trading_ml.run import RunContext
from trading_ml.sources import make_source

FEATURE_UNIVERSE = ["^GSPC", "^VIX", "^NSEI", "AAPL", "XOM", "JPM"]
SAMPLE_SYMBOLS = ["^GSPC", "^IXIC", "^VIX"]
SAMPLE_AS_OF = "2019-01-01"


def fetch_all(settings, source_kind, symbols, timeframe, as_of):
    ctx = RunContext.create(settings, as_of, symbols, [timeframe], source_kind)
    source = make_source(source_kind, settings)
    start, end = ctx.window(timeframe)
    bars = {s: source.fetch(settings.instrument(s), timeframe, start, end) for s in symbols}
    return bars, {s: settings.instrument(s) for s in symbols}


@pytest.fixture(autouse=True)
def pandas_ta_without_talib(monkeypatch):
    """pandas-ta's reference values the same with or without TA-Lib installed (as CI has it)."""
    import pandas_ta as ta

    monkeypatch.setitem(ta.Imports, "talib", False)


@pytest.fixture(scope="session")
def feature_settings(tmp_path_factory):
    from tests.conftest import make_settings

    return make_settings(tmp_path_factory.mktemp("features"))


@pytest.fixture(scope="session")
def synthetic_daily(feature_settings):
    return fetch_all(feature_settings, "synthetic", FEATURE_UNIVERSE, "1d", AS_OF)


@pytest.fixture(scope="session")
def synthetic_hourly(feature_settings):
    return fetch_all(feature_settings, "synthetic", FEATURE_UNIVERSE, "1h", AS_OF)


@pytest.fixture(scope="session")
def sample_daily(feature_settings):
    return fetch_all(feature_settings, "sample", SAMPLE_SYMBOLS, "1d", SAMPLE_AS_OF)
