"""One planning path for both drivers (plan_run): defaults, narrowing to the source, continuing a run."""

import pytest

from tests.conftest import AS_OF
from trading_ml.errors import ConfigError
from trading_ml.models import TRAINED_MODELS
from trading_ml.pipeline.planning import RunRequest, plan_run


def sample_folder(tmp_path, symbols=("AAPL", "XOM", "NOTINCONFIG")):
    """A csv: source holding a few daily files (headers only: planning never reads bars)."""
    folder = tmp_path / "csv"
    folder.mkdir()
    for symbol in symbols:
        (folder / f"{symbol}_1d.csv").write_text("timestamp,open,high,low,close,volume\n")
    return f"csv:{folder}"


def test_the_configured_symbols_narrow_to_what_the_source_has_whether_left_out_or_spelled_out(settings, tmp_path):
    """The CLI leaves --symbols out; the DAG's form starts filled with the configured list: one plan."""
    source = sample_folder(tmp_path)
    left_out = plan_run(settings, RunRequest(as_of=AS_OF, source=source))
    spelled_out = plan_run(
        settings,
        RunRequest(as_of=AS_OF, symbols=list(settings.symbols), timeframes=list(settings.timeframes), source=source),
    )
    assert left_out.symbols == spelled_out.symbols == ["AAPL", "XOM"]  # in config order; NOTINCONFIG is not configured
    assert (
        left_out.timeframes == spelled_out.timeframes == ["1d", "1h"]
    )  # a pair without its file fails at ingest, named
    assert left_out.models == list(TRAINED_MODELS) and left_out.deploy is True
    assert left_out.run_id != spelled_out.run_id


def test_symbols_asked_for_by_name_are_kept_even_when_the_source_lacks_them(settings, tmp_path):
    """Validation quarantines what the source does not have, with the reason; planning drops nothing asked for."""
    ctx = plan_run(
        settings, RunRequest(as_of=AS_OF, symbols=["AAPL", "JPM"], timeframes=["1d"], source=sample_folder(tmp_path))
    )
    assert ctx.symbols == ["AAPL", "JPM"] and ctx.pairs == [("AAPL", "1d"), ("JPM", "1d")]


def test_a_source_that_cannot_work_or_has_none_of_the_universe_fails_the_plan(settings, tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        plan_run(settings, RunRequest(as_of=AS_OF, source=f"csv:{tmp_path / 'nowhere'}"))
    with pytest.raises(ConfigError, match="has none of the 26 configured symbols"):
        plan_run(settings, RunRequest(as_of=AS_OF, source=sample_folder(tmp_path, ["NOTINCONFIG"])))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="has none of the 26 configured symbols"):
        plan_run(settings, RunRequest(as_of=AS_OF, source=f"csv:{tmp_path / 'empty'}"))


@pytest.mark.parametrize(
    "request_fields, message",
    [
        ({"models": []}, "models is an empty list"),
        ({"models": ["direction_random"]}, "unknown model.*direction_random"),
        ({"symbols": []}, "symbols is an empty list"),
    ],
)
def test_empty_or_unknown_choices_are_refused_never_read_as_everything(settings, request_fields, message):
    with pytest.raises(ConfigError, match=message):
        plan_run(settings, RunRequest(as_of=AS_OF, source="synthetic", **request_fields))


def test_a_later_stage_continues_the_run_with_what_it_chose(settings):
    first = plan_run(
        settings,
        RunRequest(as_of=AS_OF, symbols=["AAPL", "^GSPC"], timeframes=["1d"], source="synthetic", models=["regime_rf"]),
    )
    first.layout  # noqa: B018 - claims the folder, as ingest does
    later = plan_run(settings, RunRequest(as_of=AS_OF, continues=True))
    assert (later.run_id, later.symbols, later.timeframes, later.source, later.models) == (
        first.run_id,
        ["AAPL", "^GSPC"],
        ["1d"],
        "synthetic",
        ["regime_rf"],
    )
    narrower = plan_run(settings, RunRequest(run_id=first.run_id, symbols=["AAPL"], continues=True))
    assert narrower.run_id == first.run_id and narrower.symbols == ["AAPL"] and narrower.as_of == first.as_of
    with pytest.raises(ConfigError, match="no run matches"):
        plan_run(settings, RunRequest(run_id="manual__nope", continues=True))
