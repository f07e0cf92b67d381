"""The trigger form of the DAG: its fields (choices, defaults, descriptions, as JSON schema that Airflow
renders as widgets) and the run request a filled-in form asks for, refused field by field in words.

The DAG builds its Params from :func:`form_fields`, its plan task reads the form with
:func:`form_request`, and the Airflow plugin answers a trigger (the UI's, or the REST API's) with
:func:`form_problems` before Airflow's own schema check can answer with a raw pattern.
No Airflow import here: the library's drivers share it."""

from __future__ import annotations

from trading_ml.config import TICKER_PATTERN, Settings, parse_as_of
from trading_ml.config.schema import TICKER_RULE
from trading_ml.errors import ConfigError
from trading_ml.models.catalogue import CATALOGUE, TRAINED_MODELS
from trading_ml.pipeline.planning import RunRequest
from trading_ml.sources import SOURCES

TASK_NAMES = {
    "direction": "direction (up / flat / down)",
    "volatility": "volatility (next bars)",
    "regime": "regime (bull / bear / ...)",
}
FOLDER_FIELD = "csv_folder"  # the argument of a source kind that takes one (csv:DIR)


def form_fields(settings: Settings) -> dict[str, dict]:
    """Each field as JSON schema with its default, title and description (Airflow's Param keywords):
    multi-selects for symbols, timeframes and models, a dropdown for the source."""
    kind, _, folder = settings.source.partition(":")
    universe = settings.universe
    return {
        "as_of": {
            "default": None,
            "type": ["null", "string"],
            "format": "date",
            "title": "As-of date",
            "description": "The last day the run may see; every data window ends here. Blank: the trigger day "
            "(a scheduled or backfill run: the end of its quarter).",
        },
        "symbols": {
            "default": settings.symbols,
            "type": "array",
            "minItems": 0,
            "maxItems": 1000,
            "uniqueItems": True,
            "items": {"type": "string", "pattern": TICKER_PATTERN.pattern},
            "examples": settings.symbols,
            "values_display": {s: f"{s} ({universe[s].sector or universe[s].kind})" for s in settings.symbols},
            "title": "Symbols",
            "description": "Symbols of the configured universe to ingest (all of them: the "
            "universe, narrowed to what the source has). Others go in the next field.",
        },
        "other_symbols": {
            "default": [],
            "type": "array",
            "maxItems": 1000,
            "uniqueItems": True,
            "items": {"type": "string", "pattern": TICKER_PATTERN.pattern},
            "title": "Other symbols",
            "description": "Tickers outside the configured universe, one per line, upper case (BRK-B, ^FTSE).",
        },
        "timeframes": {
            "default": list(settings.timeframes),
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "enum": list(settings.timeframes)},
            "examples": list(settings.timeframes),
            "values_display": {t: f"{t} over {settings.timeframes[t].lookback}" for t in settings.timeframes},
            "title": "Timeframes",
            "description": "Bar sizes to ingest and train on, each over its configured lookback.",
        },
        "source": {
            "default": kind,
            "type": "string",
            "enum": list(SOURCES),
            "values_display": {k: f"{k}: {SOURCES[k].label}" for k in SOURCES},
            "title": "Data source",
            "description": "Where the bars come from; csv needs the folder below.",
        },
        FOLDER_FIELD: {
            "default": folder or None,
            "type": ["null", "string"],
            "title": "CSV folder",
            "description": "For the csv source (other sources ignore it): the folder of SYMBOL_TIMEFRAME.csv files "
            "(AAPL_1d.csv), as the workers see it.",
        },
        "models": {
            "default": list(TRAINED_MODELS),
            "type": "array",
            "minItems": 1,
            "uniqueItems": True,
            "items": {"type": "string", "enum": list(TRAINED_MODELS)},
            "examples": list(TRAINED_MODELS),
            "values_display": {m: f"{m}: {TASK_NAMES[CATALOGUE[m].task]}" for m in TRAINED_MODELS},
            "title": "Models",
            "description": "Models to train (the direction ensemble is built when both direction models train).",
        },
        "deploy": {
            "default": True,
            "type": "boolean",
            "title": "Deploy",
            "description": "Promote a model only when its skill over its baselines is significant "
            "and not worse than production.",
        },
    }


def form_values(settings: Settings, conf: dict | None) -> dict:
    """The form as a trigger fills it: each field's default, overridden by the conf."""
    return {**{name: field["default"] for name, field in form_fields(settings).items()}, **(conf or {})}


def form_problems(settings: Settings, values: dict) -> list[str]:
    """Every field the form cannot run with, each in words with what to do; [] when it can run."""
    fields = form_fields(settings)
    problems = [
        f"{name!r} is not a field of this form; its fields are {', '.join(fields)}"
        for name in values
        if name not in fields
    ]
    problems += _as_of_problems(values.get("as_of"))
    problems += _symbol_problems(values.get("symbols"), "Symbols") + _symbol_problems(
        values.get("other_symbols"), "Other symbols"
    )
    if not (_list(values.get("symbols")) or _list(values.get("other_symbols"))):
        problems.append("Symbols: choose at least one symbol (or name one under Other symbols)")
    problems += _choice_problems(
        values.get("timeframes"), list(settings.timeframes), "Timeframes", "config.yaml `timeframes`"
    )
    problems += _choice_problems(
        values.get("models"), list(TRAINED_MODELS), "Models", "the models of trading_ml.models"
    )
    problems += _source_problems(values.get("source"), values.get(FOLDER_FIELD))
    if not isinstance(values.get("deploy", True), bool):
        problems.append(f"Deploy: {values.get('deploy')!r} is not true or false")
    return problems


def form_request(settings: Settings, values: dict, run_id: str | None = None) -> RunRequest:
    """The run the form asks for (as-of left to the driver); a ConfigError listing every problem."""
    problems = form_problems(settings, values)
    if problems:
        raise ConfigError("the trigger form cannot run: " + "; ".join(problems))
    kind, folder = values["source"], values.get(FOLDER_FIELD)
    symbols = list(dict.fromkeys([*_list(values.get("symbols")), *_list(values.get("other_symbols"))]))
    return RunRequest(
        values.get("as_of"),
        symbols,
        list(values["timeframes"]),
        f"{kind}:{folder}" if SOURCES[kind].argument else kind,
        list(values["models"]),
        bool(values.get("deploy", True)),
        run_id,
    )


def _list(value) -> list:
    return list(value) if isinstance(value, list | tuple) else []


def _as_of_problems(value) -> list[str]:
    if value in (None, ""):
        return []
    try:
        parse_as_of(value)
    except ConfigError as error:
        return [f"As-of date: {error}"]
    return []


def _symbol_problems(value, title: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list):
        return [f"{title}: expected a list of tickers, got {type(value).__name__}"]
    problems = []
    for symbol in value:
        if isinstance(symbol, str) and TICKER_PATTERN.match(symbol):
            continue
        hint = (
            f" (did you mean {symbol.strip().upper()}?)"
            if isinstance(symbol, str) and TICKER_PATTERN.match(symbol.strip().upper())
            else ""
        )
        problems.append(f"{title}: {str(symbol)[:40]!r} {TICKER_RULE}{hint}")
    return problems


def _choice_problems(value, choices: list[str], title: str, where: str) -> list[str]:
    if not isinstance(value, list) or not value:
        return [f"{title}: choose at least one of {', '.join(choices)}"]
    return [
        f"{title}: {str(v)[:40]!r} is not one of this deployment's ({', '.join(choices)}; {where})"
        for v in value
        if v not in choices
    ]


def _source_problems(kind, folder) -> list[str]:
    if kind not in SOURCES:
        return [f"Data source: {str(kind)[:40]!r} is not a source; choose one of {', '.join(SOURCES)}"]
    if SOURCES[kind].argument and not (isinstance(folder, str) and folder.strip()):
        return [
            f"CSV folder: the {kind} source reads files from a folder; fill in CSV folder (the folder of AAPL_1d.csv "
            "...)"
        ]
    return []
