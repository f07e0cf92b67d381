"""How a config error reads: one line naming the key (or environment variable), the value as written
(never a secret's), and what to write instead."""

from __future__ import annotations

import difflib
import typing
from typing import Any

from pydantic import ValidationError


def shorten(value: object, limit: int = 40) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def describe_error(
    error: ValidationError,
    where: str,
    schema: type,
    overridden: dict[tuple, str] | None = None,
    secrets: frozenset[tuple[str, ...]] = frozenset(),
) -> str:
    """The first error of a validation against ``schema`` as one line."""
    first = error.errors()[0]
    location = tuple(str(part) for part in first["loc"] if part not in ("[key]",))
    name = (overridden or {}).get(location) or f"{where}: {'.'.join(location) or 'the file'}"
    shown = first.get("input")
    hidden = location in secrets or first["type"] in ("missing",) or isinstance(shown, dict | list)
    value = "" if hidden else f" = {shorten(shown)}"
    return f"{name}{value}: {_advice(first, location, schema)}"


BOUNDS = {
    "greater_than_equal": ">= {ge}",
    "greater_than": "> {gt}",
    "less_than_equal": "<= {le}",
    "less_than": "< {lt}",
}
FIXED_ADVICE = {
    "missing": "is missing; add it (see the repo's config.yaml)",
    "int_parsing": "must be a whole number",
    "int_type": "must be a whole number",
    "int_from_float": "must be a whole number",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "finite_number": "must be a finite number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "list_type": "must be a list",
    "string_type": "must be text",
    "too_short": "must not be empty",
    "string_too_short": "must not be empty",
    **dict.fromkeys(
        ("dict_type", "model_type", "dataclass_type", "model_attributes_type", "dataclass_args_type"),
        "must be a mapping",
    ),
}


def _advice(error: Any, location: tuple[str, ...], schema: type) -> str:
    kind, context = error["type"], error.get("ctx") or {}
    if kind in BOUNDS:
        return f"must be {BOUNDS[kind].format(**context)}"
    if kind in ("extra_forbidden", "unexpected_keyword_argument"):
        known = field_names(schema, location[:-1])
        nearest = difflib.get_close_matches(location[-1], known, n=1)
        if not known:
            return "unknown key; this section takes none: remove it"
        return (
            f"unknown key; did you mean {nearest[0]!r}?"
            if nearest
            else f"unknown key; known keys here: {', '.join(known)}"
        )
    if kind in FIXED_ADVICE:
        return FIXED_ADVICE[kind]
    if kind.startswith("date"):
        return "must be a date YYYY-MM-DD"
    if kind == "literal_error":
        return f"must be one of {context.get('expected')}"
    if kind == "string_pattern_mismatch":
        return f"must match {context.get('pattern')}"
    return error["msg"].removeprefix("Value error, ")


def field_names(schema: type, location: tuple[str, ...]) -> list[str]:
    """The keys ``schema`` allows at a location of the file."""
    kind: Any = schema
    for part in location:
        fields = _fields_of(kind)
        if part in fields:
            kind = fields[part]
        else:  # a dict key or a list index: the value type
            kind = next((arg for arg in typing.get_args(kind) if _fields_of(arg)), kind)
        kind = _model_in(kind)
    return list(_fields_of(kind))


def _model_in(kind: Any) -> Any:
    """The model or dataclass inside an annotation (Optional[X], list[X], dict[K, X], Annotated[X, ...])."""
    if _fields_of(kind):
        return kind
    for arg in typing.get_args(kind):
        found = _model_in(arg)
        if _fields_of(found):
            return found
    return kind


def _fields_of(kind: Any) -> dict[str, Any]:
    fields = getattr(kind, "model_fields", None) or getattr(kind, "__pydantic_fields__", None)
    return {name: info.annotation for name, info in fields.items()} if isinstance(fields, dict) else {}
