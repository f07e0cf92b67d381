"""The schema's sections that models and sources declare for themselves: a model's ``Params`` is
its `models.<name>` section, a source's ``Options`` its `sources.<kind>` section, and a sixth model
or a new source is known everywhere once its class is registered (no list elsewhere to update)."""

from __future__ import annotations

import dataclasses
import re
from typing import Annotated, Literal

import pytest
import yaml
from pydantic import Field

from tests.conftest import REPO
from trading_ml import sources
from trading_ml.config import STRICT, checked
from trading_ml.drivers import load_settings
from trading_ml.errors import ConfigError, UnknownModel
from trading_ml.models import catalogue
from trading_ml.models.direction import LSTMDirection, XGBoostDirection
from trading_ml.models.regime import RegimeForest
from trading_ml.models.splits import purge_gap
from trading_ml.sources import check_source, make_source, spec_pattern


def config_with(tmp_path, **sections) -> str:
    raw = yaml.safe_load((REPO / "config.yaml").read_text())
    for name, values in sections.items():
        raw[name] = {**raw[name], **values} if isinstance(raw.get(name), dict) else values
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    return str(path)


def test_each_trained_model_reads_its_own_section_and_the_others_keep_their_defaults(tmp_path):
    settings = load_settings(
        config_with(tmp_path, models={"regime_rf": {"trees": 7}, "direction_lstm": {"hidden": 16}}), env={}
    )
    assert settings.models.of("regime_rf") == RegimeForest.Params(trees=7, max_samples=25_000)
    assert settings.models.of("direction_lstm").hidden == 16
    assert settings.models.of("volatility_lstm").hidden == 32  # the volatility LSTM has its own section
    assert settings.models.of("direction_xgboost") == XGBoostDirection.Params()
    assert set(settings.models.params) == set(catalogue.TRAINED_MODELS)
    with pytest.raises(UnknownModel, match="model 'direction' takes no parameters"):
        settings.models.of("direction")  # the ensemble: a rule over its members


def test_the_purge_gap_follows_the_longest_sequence_any_model_reads(tmp_path):
    settings = load_settings(config_with(tmp_path, models={"volatility_lstm": {"sequence_length": 60}}), env={})
    assert purge_gap(settings.models, settings.features) == 5 + 60
    assert purge_gap(load_settings(env={}).models, settings.features) == 5 + 20


def test_tuned_parameters_are_checked_as_the_config_is():
    models = load_settings(env={}).models
    tuned = models.tuned(direction_lstm={"epochs": 2}).of("direction_lstm")
    assert tuned == LSTMDirection.Params(epochs=2, sequences_per_epoch=25_000)  # config.yaml draws 25,000
    with pytest.raises(ValueError, match="epochs"):
        models.tuned(direction_lstm={"epochs": 0})
    with pytest.raises(UnknownModel):
        models.tuned(direction_gbm={"rounds": 2})


class Momentum:
    """A sixth model as a user would add it: a class that says its name, task, target and parameters."""

    name, task, target = "direction_momentum", "direction", "target_direction"
    FILES = (".json",)

    @checked(frozen=True, config=STRICT)
    class Params:
        lookback: Annotated[int, Field(ge=2, le=500)] = 20


@checked(frozen=True, config=STRICT)
class ExampleOptions:
    compression: Literal["snappy", "zstd"] = "snappy"


class ExampleSource:
    """A new source as a user would add it: its kind, argument, options and how it is built (a kind no
    real source would take, so the README's example can be registered without breaking this test)."""

    kind, argument, Options = "example", "DIR", ExampleOptions
    label = "Example files in a folder"
    timeframes, symbols = ("1d",), None

    def __init__(self, folder: str, compression: str):
        self.name, self.folder, self.compression = f"example:{folder}", folder, compression

    @classmethod
    def from_spec(cls, argument, options, retries):
        return cls(argument, options.compression)


@pytest.fixture
def registered(monkeypatch):
    """Momentum and ExampleSource registered as their own modules would register them."""
    monkeypatch.setitem(catalogue.CATALOGUE, Momentum.name, catalogue.Entry.of(Momentum))
    monkeypatch.setitem(sources.SOURCES, ExampleSource.kind, ExampleSource)
    yield


def test_a_sixth_model_and_a_new_source_are_configured_and_checked_with_nothing_else_changed(registered, tmp_path):
    path = config_with(
        tmp_path,
        source="example:/srv/bars",
        models={"direction_momentum": {"lookback": 60}},
        sources={"example": {"compression": "zstd"}},
    )
    settings = load_settings(path, env={})
    assert settings.models.of("direction_momentum") == Momentum.Params(lookback=60)
    assert "direction_momentum" in catalogue.served_models("direction")
    source = make_source(settings.source, settings)
    assert (source.folder, source.compression) == ("/srv/bars", "zstd")
    assert check_source("example:/srv/bars") and re.match(spec_pattern(), "example:/srv/bars")
    with pytest.raises(ConfigError, match=r"models\.direction_momentum\.lookback = 1: must be >= 2"):
        load_settings(config_with(tmp_path, models={"direction_momentum": {"lookback": 1}}), env={})
    with pytest.raises(ConfigError, match=r"sources\.example\.compression = 'gzip': must be one of 'snappy' or 'zstd'"):
        load_settings(config_with(tmp_path, sources={"example": {"compression": "gzip"}}), env={})
    with pytest.raises(ConfigError, match=r"source = 'example': is not a source: write .*example:DIR"):
        load_settings(config_with(tmp_path, source="example"), env={})


def test_without_registration_neither_is_known(tmp_path):
    with pytest.raises(ConfigError, match=r"models\.direction_momentum: unknown key"):
        load_settings(config_with(tmp_path, models={"direction_momentum": {"lookback": 60}}), env={})
    with pytest.raises(
        ConfigError, match=re.escape(f"unknown source 'example:/srv/bars'; use {sources.spec_choices()}")
    ):
        check_source("example:/srv/bars")


def test_every_source_option_section_is_its_class_options():
    settings = load_settings(env={})
    synthetic = make_source(
        "synthetic", dataclasses.replace(settings, sources={"synthetic": {"seed": 7, "market": "random_walk"}})
    )
    assert synthetic.market.seed == 7
    assert make_source("yahoo", settings, retries=0).retries == 0
    with pytest.raises(ValueError, match="market"):
        make_source("synthetic", dataclasses.replace(settings, sources={"synthetic": {"market": "bubble"}}))
