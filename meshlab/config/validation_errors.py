"""Turn pydantic's ValidationError into short, plain Problems with Istio field paths and lines."""

from __future__ import annotations

import typing
from typing import Any

from pydantic import BaseModel, ValidationError

from .errors import Problem, show
from .paths import field_names, format_loc, model_at, suggest, walk_loc
from .yaml_source import Loc, line_of

__all__ = ["problems_from_validation_error", "describe_error"]

_EXPECTED = {
    "string_type": "a string",
    "int_type": "an integer",
    "int_parsing": "an integer",
    "int_from_float": "an integer",
    "float_type": "a number",
    "float_parsing": "a number",
    "bool_type": "true or false",
    "bool_parsing": "true or false",
    "list_type": "a list",
    "dict_type": "an object (key: value fields)",
    "model_type": "an object (key: value fields)",
    "model_attributes_type": "an object (key: value fields)",
}


def _enum_values(root: Any, loc: Loc) -> list[str]:
    walked = walk_loc(root, loc)
    tp = walked[-1][2] if walked else None
    if typing.get_origin(tp) is typing.Literal:
        return [str(v) for v in typing.get_args(tp)]
    return []


def _one_of(values: list[str]) -> str:
    return ", ".join(values[:-1]) + f" or {values[-1]}" if len(values) > 1 else "".join(values)


def describe_error(error: dict[str, Any], loc: Loc, root: Any) -> str:
    """A one-line message for one pydantic error dict; ``loc`` is its full location under ``root``."""
    kind, value, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        model = model_at(root, loc[:-1])
        return "unknown field; " + suggest(str(loc[-1]), field_names(model) if model else [])
    if kind in _EXPECTED:
        message = f"expected {_EXPECTED[kind]} (got {show(value)})"
        if kind == "string_type" and isinstance(value, int | float):
            message += f'; put the value in quotes, e.g. "{show(value)}"'
        elif kind == "list_type" and isinstance(value, str):
            message += f"; write a YAML list, e.g. [{value}]"
        return message
    if kind == "literal_error":
        values = _enum_values(root, loc)
        allowed = _one_of(values) if values else ctx.get("expected", "")
        return f"unsupported value {show(value)}; must be one of {allowed}"
    bounds = {"greater_than_equal": (">=", "ge"), "less_than_equal": ("<=", "le"),
              "greater_than": (">", "gt"), "less_than": ("<", "lt")}
    if kind in bounds:
        op, key = bounds[kind]
        bound = ctx.get(key)
        bound_text = f"{bound:g}" if isinstance(bound, float) else str(bound)
        return f"must be {op} {bound_text} (got {show(value)})"
    if kind in ("too_short", "string_too_short"):
        least = ctx.get("min_length", 1)
        if least == 1:
            return "must not be empty"
        unit = "characters" if kind.startswith("string") else "items"
        return f"must have at least {least} {unit}"
    if kind == "too_long":
        return f"must have at most {ctx.get('max_length')} items (got {ctx.get('actual_length')})"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters long (got {len(str(value))})"
    if kind == "string_pattern_mismatch":
        return f"must match {ctx.get('pattern')} (got {show(value)})"
    return str(error.get("msg", "invalid value"))


def problems_from_validation_error(
    exc: ValidationError,
    *,
    prefix: Loc,
    root: type[BaseModel],
    lines: dict[Loc, int],
    source: str | None,
    default_line: int | None,
) -> list[Problem]:
    """One Problem per pydantic error, located at ``prefix + error loc`` (e.g. ``("spec", ...)``)."""
    problems = []
    for error in exc.errors(include_url=False):
        loc: Loc = (*prefix, *(part for part in error["loc"] if part != "[key]"))
        message = describe_error(error, loc, root)
        problems.append(Problem(source, line_of(lines, loc, default_line), format_loc(loc, root), message))
    return problems
