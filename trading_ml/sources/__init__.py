"""Market data sources behind one interface, and their registry: a source is one module here and
one line in ``SOURCES``.

Each source's ``fetch(instrument, timeframe, start, end)`` returns the normalized bar frame of
:mod:`trading_ml.data.bars` for [start, end), raises :class:`DataError` for input that will stay bad,
and :class:`SourceUnavailable` when the provider did not answer (retrying later may help).
"""

from __future__ import annotations

import re
from typing import Any

from trading_ml.config import Settings, shorten
from trading_ml.errors import ConfigError
from trading_ml.sources.base import MarketDataSource, NoOptions
from trading_ml.sources.csv_folder import CsvSource
from trading_ml.sources.sample import SampleSource
from trading_ml.sources.synthetic import SyntheticSource
from trading_ml.sources.yahoo import YahooSource

SOURCES: dict[str, Any] = {  # kind -> its class (a MarketDataSource)
    source.kind: source for source in (YahooSource, SyntheticSource, SampleSource, CsvSource)
}

__all__ = [
    "SOURCES",
    "CsvSource",
    "MarketDataSource",
    "NoOptions",
    "SampleSource",
    "SyntheticSource",
    "YahooSource",
    "check_source",
    "make_source",
    "source_options",
    "source_problem",
    "spec_forms",
    "spec_is_known",
    "spec_pattern",
]


def make_source(spec: str, settings: Settings, retries: int | None = None) -> MarketDataSource:
    """Build a source from its spec ('yahoo', 'csv:DIR', 'sample', 'synthetic', or any registered
    kind) with its configured options. ``retries`` overrides the configured in-call retries of a
    provider (0 when an orchestrator retries)."""
    kind = check_source(spec).partition(":")[0]
    source = SOURCES[kind]
    return source.from_spec(spec.partition(":")[2], source.Options(**settings.source_options(kind)), retries)


def spec_is_known(spec: object) -> bool:
    """Whether ``spec`` names a registered kind, with an argument exactly when the kind takes one."""
    if not isinstance(spec, str):
        return False
    kind, colon, argument = spec.partition(":")
    source = SOURCES.get(kind)
    return source is not None and (bool(argument) if source.argument else not colon)


def spec_forms() -> list[str]:
    return [f"{kind}:{source.argument}" if source.argument else kind for kind, source in SOURCES.items()]


def source_problem(spec: object) -> str | None:
    """None for a spec of a registered kind (config.yaml's `source:`), else what to write instead."""
    return None if spec_is_known(spec) else f"is not a source: write {spec_choices()}"


def spec_choices() -> str:
    forms = spec_forms()
    return f"{', '.join(forms[:-1])} or {forms[-1]}"


def spec_pattern() -> str:
    """A regular expression of every spec (the DAG's `source` parameter)."""
    return (
        "^(" + "|".join(re.escape(kind) + (":.+" if source.argument else "") for kind, source in SOURCES.items()) + ")$"
    )


def check_source(spec: object) -> str:
    """The spec, or a ConfigError naming it and the forms a spec takes."""
    if not isinstance(spec, str) or not spec_is_known(spec):
        raise ConfigError(f"unknown source {shorten(spec)}; use {spec_choices()}")
    return spec


def source_options() -> dict[str, type]:
    """Each source kind's section of config.yaml (`sources.KIND`)."""
    return {kind: source.Options for kind, source in SOURCES.items()}
