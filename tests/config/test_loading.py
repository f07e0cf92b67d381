import datetime as dt

import pandas as pd
import pytest

from trading_ml.config import parse_as_of, parse_lookback
from trading_ml.config.loader import ENV_DATA_DIR, ENV_MONGO_URI
from trading_ml.drivers import load_settings, run_settings
from trading_ml.errors import ConfigError
from trading_ml.run import RunContext


def test_config_holds_the_plans_universe_grouped_as_the_plan_groups_it():
    settings = load_settings(env={})
    indices = [s for s, i in settings.universe.items() if i.kind == "index"]
    assert indices == ["^GSPC", "^IXIC", "^DJI", "^NSEI", "^NSEBANK", "^VIX"]
    sectors = {}
    for instrument in settings.universe.values():
        if instrument.kind == "equity":
            sectors.setdefault(instrument.sector, []).append(instrument.symbol)
    assert {k: len(v) for k, v in sectors.items()} == {
        "Technology": 5,
        "Financials": 4,
        "Healthcare": 3,
        "Consumer": 4,
        "Energy": 4,
    }
    assert len(settings.symbols) == 26
    assert settings.universe["^NSEI"].exchange == "XBOM"
    assert settings.universe["^VIX"].has_volume is False
    assert {n: t.lookback for n, t in settings.timeframes.items()} == {"1d": "5y", "1h": "6mo"}


def test_environment_overrides_data_dir_and_mongo_uri(tmp_path):
    settings = load_settings(env={ENV_DATA_DIR: str(tmp_path), ENV_MONGO_URI: "mongodb://h:1/"})
    assert settings.data_dir == tmp_path
    assert settings.storage.mongo_uri == "mongodb://h:1/"
    assert settings.storage.fallback_dir == tmp_path / "fallback"


def test_windows_are_derived_from_the_as_of_date(settings):
    ctx = RunContext.create(settings, "2024-03-15")
    assert ctx.window("1d") == (pd.Timestamp("2019-03-15", tz="UTC"), pd.Timestamp("2024-03-15", tz="UTC"))
    assert ctx.window("1h") == (pd.Timestamp("2023-09-15", tz="UTC"), pd.Timestamp("2024-03-15", tz="UTC"))
    assert ctx.run_root.parent == settings.data_dir / "runs" / "2024-03-15"
    older = RunContext.create(settings, "2023-12-31")
    assert older.run_root.parent.name == "2023-12-31" and older.window("1d")[1] < ctx.window("1d")[1]


def test_as_of_in_the_future_or_malformed_is_refused():
    today = dt.date(2026, 11, 24)
    assert parse_as_of(None, today) == today
    with pytest.raises(ConfigError, match="in the future"):
        parse_as_of("2026-11-25", today)
    with pytest.raises(ConfigError, match="YYYY-MM-DD"):
        parse_as_of("24/11/2026", today)


def test_unknown_timeframe_ticker_and_config_key_are_named(settings, tmp_path):
    with pytest.raises(ConfigError, match="unknown timeframe '5m'"):
        RunContext.create(settings, "2024-01-02", timeframes=["5m"])
    with pytest.raises(ConfigError, match="'aapl;rm' is not a ticker"):
        RunContext.create(settings, "2024-01-02", symbols=["aapl;rm"])
    bad = tmp_path / "config.yaml"
    bad.write_text("universe: {equities: {sectors: {Tech: [AAPL]}}}\ntimeframes: {1d: {lookback: 5y}}\ntimefrmes: {}\n")
    with pytest.raises(ConfigError, match="timefrmes: unknown key; did you mean 'timeframes'\\?"):
        load_settings(bad, env={})


def test_lookbacks_parse_and_typos_are_refused():
    assert parse_lookback("5y") == pd.DateOffset(years=5)
    assert parse_lookback("6mo") == pd.DateOffset(months=6)
    with pytest.raises(ConfigError, match="'6 months'"):
        parse_lookback("6 months")


def test_feature_options_are_read_typed_and_typos_refused(tmp_path):
    settings = load_settings(env={})
    assert settings.features.benchmark == "^GSPC" and settings.features.direction_threshold == 0.001
    assert settings.features.regime.fear_vix == 30.0 and settings.features.regime.horizon == 5
    base = "universe: {equities: {sectors: {Tech: [AAPL]}}}\ntimeframes: {1d: {lookback: 5y}}\n"
    cases = {
        "features: {direction_treshold: 0.002}": (
            "features.direction_treshold = 0.002: unknown key; did you mean 'direction_threshold'"
        ),
        "features: {regime: {fear: 25}}": "features.regime.fear = 25: unknown key; did you mean 'fear_vix'",
        "features: {regime: {horizon: soon}}": "features.regime.horizon = 'soon': must be a whole number",
        "features: {direction_threshold: 0.5}": "features.direction_threshold = 0.5: must be < 0.1",
        "features: {benchmark: 'spx index'}": "features.benchmark = 'spx index': is not a ticker",
    }
    for text, message in cases.items():
        path = tmp_path / "config.yaml"
        path.write_text(base + text + "\n")
        with pytest.raises(ConfigError, match=message):
            load_settings(path, env={})
    path.write_text(base + "features: {regime: {calm_vix: 18}}\n")
    tuned = load_settings(path, env={}).features
    assert tuned.regime.calm_vix == 18.0 and tuned.regime.fear_vix == 30.0 and tuned.volatility_window == 20


def test_airflow_options_are_typed_and_a_context_survives_the_trip_through_xcom(settings, tmp_path):
    assert settings.airflow.source_pool == "market_data_source" and settings.airflow.ingest_retries == 4
    bad = tmp_path / "config.yaml"
    bad.write_text(
        "universe: {equities: {sectors: {Tech: [AAPL]}}}\ntimeframes: {1d: {lookback: 5y}}\nairflow: {retries: 3}\n"
    )
    with pytest.raises(ConfigError, match="airflow.retries = 3: unknown key; did you mean 'stage_retries'"):
        load_settings(bad, env={})
    ctx = RunContext.create(settings, "2024-01-02", ["AAPL", "^GSPC"], ["1d"], "synthetic")
    again = RunContext.from_dict(
        ctx.to_dict(), run_settings(ctx.to_dict(), mongo_uri="mongodb://u:secret@127.0.0.1:1/db")
    )
    assert (again.run_id, again.as_of, again.symbols, again.timeframes, again.source, again.run_root) == (
        ctx.run_id,
        ctx.as_of,
        ctx.symbols,
        ctx.timeframes,
        ctx.source,
        ctx.run_root,
    )
    assert again.settings.storage.mongo_uri == "mongodb://u:secret@127.0.0.1:1/db"
    assert "secret" not in str(ctx.to_dict())


def test_an_empty_section_means_its_defaults_and_the_environment_still_applies(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text(
        "universe: {equities: {sectors: {Tech: [AAPL]}}}\ntimeframes: {1d: {lookback: 5y}}\nstorage:\nvalidation:\n"
    )
    settings = load_settings(path, env={ENV_MONGO_URI: "mongodb://db:27017/"})
    assert settings.storage.mongo_uri == "mongodb://db:27017/" and settings.storage.database == "trading_system"
    assert settings.validation.min_pass_share == 0.8
    path.write_text("universe: {equities: {sectors: {Tech: [AAPL]}}}\ntimeframes: {1d: {lookback: 5y}}\nstorage: 5\n")
    with pytest.raises(ConfigError, match="storage = 5: must be a mapping"):
        load_settings(path, env={ENV_MONGO_URI: "mongodb://db:27017/"})
