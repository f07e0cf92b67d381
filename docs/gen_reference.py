"""Reference pages generated from the code at every `make docs` (mkdocs-gen-files), so they cannot
go stale: config.yaml's keys from the schema (types, bounds, defaults, the comment beside each key),
the command line from argparse, and the Python API from docstrings (mkdocstrings)."""

from __future__ import annotations

import inspect
import os
import re
import types
import typing
import warnings
from typing import Any

import mkdocs_gen_files
from annotated_types import Ge, Gt, Le, Lt, MaxLen, MinLen

warnings.simplefilter("ignore")  # pandas-ta's deprecation notes when the CLI's modules are imported
from trading_ml.cli import parser, plan_parser  # noqa: E402
from trading_ml.drivers import schema  # noqa: E402

BOUNDS = {Ge: ">= {}", Gt: "> {}", Le: "<= {}", Lt: "< {}", MinLen: "at least {} items", MaxLen: "at most {} items"}
API_MODULES = {
    "Drivers": ["trading_ml.drivers", "trading_ml.cli"],
    "Stages": [
        f"trading_ml.pipeline.{stage}"
        for stage in ("planning", "ingest", "validate", "features", "train", "evaluate", "deploy", "report")
    ],
    "Runs and settings": ["trading_ml.run", "trading_ml.config.loader", "trading_ml.config.settings"],
    "Sources": ["trading_ml.sources", "trading_ml.sources.base"],
    "Models": [
        "trading_ml.models.base",
        "trading_ml.models.catalogue",
        "trading_ml.models.tasks",
        "trading_ml.models.evaluation",
    ],
    "Registry and serving": [
        "trading_ml.registry",
        "trading_ml.loading",
        "trading_ml.verify",
        "trading_ml.serving",
        "trading_ml.contract",
    ],
}


def fields_of(section: Any) -> dict[str, Any]:
    """A pydantic model's or pydantic dataclass's fields (name -> FieldInfo), or {} for a plain type."""
    return dict(getattr(section, "model_fields", None) or getattr(section, "__pydantic_fields__", None) or {})


def comments_of(section: Any) -> dict[str, str]:
    """The comment written beside each field in the section's source (`name: type = default  # comment`)."""
    try:
        source = inspect.getsource(section)
    except (OSError, TypeError):
        return {}
    return {m[1]: m[2].strip() for m in re.finditer(r"^\s+(\w+):[^#\n]*#\s*(.+)$", source, re.M)}


def type_text(annotation: Any) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " | ".join(repr(value) for value in typing.get_args(annotation))
    if origin is typing.Annotated:
        return type_text(typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(arg) for arg in typing.get_args(annotation))
    if origin is not None:
        args = ", ".join(type_text(arg) for arg in typing.get_args(annotation))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    if fields_of(annotation):
        return "section"
    return getattr(annotation, "__name__", str(annotation)).replace("NoneType", "null")


def bounds_text(info: Any) -> str:
    found = []
    for rule in info.metadata:
        for kind, text in BOUNDS.items():
            if isinstance(rule, kind):
                value = getattr(rule, next(iter(kind.__dataclass_fields__)))
                found.append(text.format(value).replace("items", "characters" if info.annotation is str else "items"))
        if getattr(rule, "pattern", None):
            found.append(f"matches `{rule.pattern}`")
    return ", ".join(found)


def default_text(info: Any) -> str:
    if info.is_required():
        return "required"
    value = info.default
    if fields_of(type(value)):
        return "(its keys' defaults)"
    return f"`{value!r}`" if value not in ({}, [], None) else f"`{value!r}`".replace("None", "null")


def nested(annotation: Any) -> tuple[str, Any] | None:
    """(how the key continues, the section inside) for a section, a list of sections or a mapping of them."""
    if fields_of(annotation):
        return "", annotation
    args = typing.get_args(annotation)
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return nested(args[0])
    if origin is list and args and fields_of(args[0]):
        return "[]", args[0]
    if origin is dict and len(args) == 2 and fields_of(args[1]):
        return ".<" + type_text(args[0]).replace("'", "") + ">", args[1]
    return None


def rows(section: Any, prefix: str) -> list[tuple[str, str, str, str, str]]:
    found, comments = [], comments_of(section)
    for name, info in fields_of(section).items():
        if name == "params":
            continue
        key, inner = f"{prefix}{name}", nested(info.annotation)
        found.append((key, type_text(info.annotation), bounds_text(info), default_text(info), comments.get(name, "")))
        if inner:
            found.extend(rows(inner[1], f"{key}{inner[0]}."))
    return found


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def configuration_page() -> str:
    lines = [
        "# config.yaml reference",
        "",
        "Every key of `config.yaml`, generated from the schema the loader checks it against "
        "(`trading_ml/config/schema.py`, each model's `Params` and each source's `Options`). An unknown key, a "
        "value of the wrong type or outside its bounds is refused with one line naming the key. "
        "See [Configuration](../configuration.md) for how the file and the environment combine.",
        "",
    ]
    for name, info in fields_of(schema()).items():
        lines += [f"## `{name}`", ""]
        doc = vars(info.annotation).get("__doc__") if fields_of(info.annotation) else None  # its own, not pydantic's
        if doc:
            lines += [" ".join(doc.split()), ""]
        lines += ["| key | type | bounds | default | meaning |", "| --- | --- | --- | --- | --- |"]
        lines += [
            f"| `{cell(key)}` | {cell(kind)} | {cell(bounds)} | {cell(default)} | {cell(note)} |"
            for key, kind, bounds, default, note in rows(schema(), "")
            if key == name or key.startswith((f"{name}.", f"{name}["))
        ]
        lines.append("")
    return "\n".join(lines)


def cli_page() -> str:
    os.environ["COLUMNS"] = "110"
    root = parser()
    commands = next(action for action in root._actions if action.dest == "command")
    lines = [
        "# Command-line reference",
        "",
        "Generated from the argparse parsers (`trading_ml/cli.py`); the "
        "[command-line guide](../guide/command-line.md) says how the commands fit together.",
        "",
        "```text",
        root.format_help().rstrip(),
        "```",
        "",
    ]
    for name, command in commands.choices.items():
        lines += [f"## `trading-ml {name}`", "", "```text", command.format_help().rstrip(), "```", ""]
    lines += ["## `train_production_models.py`", "", "```text", plan_parser().format_help().rstrip(), "```", ""]
    return "\n".join(lines)


def python_page() -> str:
    lines = [
        "# Python API",
        "",
        "Generated from the docstrings. The library (`trading_ml/`) imports nothing from "
        "Airflow; the drivers (the command line, the DAG, the plugin) call the stage functions.",
        "",
    ]
    for group, modules in API_MODULES.items():
        lines += [f"## {group}", ""]
        for module in modules:
            lines += [
                f"::: {module}",
                "    options:",
                "      heading_level: 3",
                "      show_root_heading: true",
                "      show_source: false",
                "      members_order: source",
                "",
            ]
    return "\n".join(lines)


for path, page in (
    ("reference/configuration.md", configuration_page()),
    ("reference/cli.md", cli_page()),
    ("reference/python.md", python_page()),
):
    with mkdocs_gen_files.open(path, "w") as handle:
        handle.write(page)
