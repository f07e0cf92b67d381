"""What stages share: the store, and a source only for the stage that fetches."""

import pytest

from tests.conftest import make_settings
from trading_ml.pipeline.resources import StageResources
from trading_ml.run import RunContext


def test_a_stage_gets_a_source_only_when_it_fetches_and_airflow_owns_the_retries(tmp_path):
    """The model stages never build a source; under Airflow (source_retries=0) Yahoo tries once per
    call and the task's retries are the one retry layer."""
    from trading_ml.errors import ConfigError

    settings = make_settings(tmp_path / "data")
    missing = RunContext.create(settings, "2026-11-20", ["AAPL"], ["1d"], f"csv:{tmp_path / 'nowhere'}")
    resources = StageResources.open(missing)  # a stage that does not fetch never notices
    with pytest.raises(ConfigError, match="does not exist"):
        resources.source  # noqa: B018 - the first fetch builds it
    yahoo = RunContext.create(settings, "2026-11-20", ["AAPL"], ["1d"], "yahoo")
    assert StageResources.open(yahoo, source_retries=0).source.retries == 0
    assert StageResources.open(yahoo).source.retries == settings.source_options("yahoo")["retries"] == 5
