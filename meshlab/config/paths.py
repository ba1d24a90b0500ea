"""Field paths: from pydantic's location tuples to Istio-style text, with "did you mean" hints.

A location is a tuple like ``("spec", "http", 0, "match", 0, "headers", "end-user")``. Walking the
model classes along it tells model fields (``.route``) from list indexes (``[0]``) and map keys
(``[end-user]``), so it prints as ``spec.http[0].match[0].headers[end-user]``.
"""

from __future__ import annotations

import difflib
import types
import typing
from typing import Any

from pydantic import BaseModel, ConfigDict, create_model

from .yaml_source import Loc

__all__ = ["format_loc", "model_at", "field_names", "suggest", "root_type", "walk_loc"]


def _unwrap(tp: Any) -> Any:
    """Strip Annotated[...] and Optional[...] from a type."""
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        args = [arg for arg in typing.get_args(tp) if arg is not type(None)]
        return _unwrap(args[0]) if len(args) == 1 else tp
    return tp


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def field_names(model: type[BaseModel]) -> list[str]:
    """The field names of a model as written in YAML (aliases, e.g. ``from``)."""
    return [info.alias or name for name, info in model.model_fields.items()]


def _field_type(model: type[BaseModel], key: str) -> Any:
    for name, info in model.model_fields.items():
        if key in (info.alias, name):
            return _unwrap(info.annotation)
    return None


def walk_loc(root: Any, loc: Loc) -> list[tuple[str | int, str, Any]]:
    """Each part of ``loc`` with its role ('field', 'index', 'key', 'unknown') and the type below it."""
    out: list[tuple[str | int, str, Any]] = []
    current = root
    for part in loc:
        origin = typing.get_origin(current)
        if _is_model(current) and isinstance(part, str):
            current = _field_type(current, part)
            out.append((part, "field" if current is not None else "unknown", current))
        elif origin is list and isinstance(part, int):
            current = _unwrap(typing.get_args(current)[0])
            out.append((part, "index", current))
        elif origin is dict:
            current = _unwrap(typing.get_args(current)[1])
            out.append((part, "key", current))
        else:
            current = None
            out.append((part, "index" if isinstance(part, int) else "unknown", None))
    return out


def format_loc(loc: Loc, root: Any = None) -> str:
    """``("spec", "http", 0, "route")`` -> ``"spec.http[0].route"``.

    ``root`` is the model whose fields include ``loc[0]`` (for whole documents: :func:`root_type`).
    """
    text = ""
    for part, role, _ in walk_loc(root, loc):
        if role in ("index", "key") or (isinstance(part, str) and not part.replace("_", "a").isalnum()):
            text += f"[{part}]"
        else:
            text += f".{part}" if text else str(part)
    return text


def model_at(root: Any, loc: Loc) -> type[BaseModel] | None:
    """The model class found at ``loc`` (None if ``loc`` does not lead to a model)."""
    walked = walk_loc(root, loc)
    tp = walked[-1][2] if walked else root
    return tp if _is_model(tp) else None


def suggest(bad: str, candidates: list[str]) -> str:
    """A hint for an unknown field: "did you mean 'route'?" or the list of valid fields."""
    squash = {c.lower().replace("_", ""): c for c in candidates}
    exact = squash.get(str(bad).lower().replace("_", "").replace("-", ""))
    if exact:
        return f"did you mean '{exact}'? (Istio field names are camelCase and case-sensitive)"
    close = difflib.get_close_matches(str(bad), candidates, n=1, cutoff=0.6)
    if close:
        return f"did you mean '{close[0]}'?"
    if len(candidates) <= 20:
        return "valid fields are: " + ", ".join(sorted(candidates))
    return "see the Istio reference for the valid fields"


class _Metadata(BaseModel):
    """The metadata fields meshlab reads (other Kubernetes metadata is kept as-is)."""

    model_config = ConfigDict(extra="allow")

    name: str | None = None
    namespace: str | None = None
    labels: dict[str, str] | None = None
    annotations: dict[str, str] | None = None


_DOCUMENT_ROOTS: dict[Any, Any] = {}


def root_type(spec_model: type[BaseModel] | None) -> Any:
    """A model of a whole document (apiVersion, kind, metadata, spec) to format paths from its top."""
    if spec_model not in _DOCUMENT_ROOTS:
        spec_type = spec_model if spec_model is not None else dict[str, Any]
        _DOCUMENT_ROOTS[spec_model] = create_model(
            "Document",
            apiVersion=(str, ...),
            kind=(str, ...),
            metadata=(_Metadata, ...),
            spec=(spec_type | None, None),
            status=(dict[str, Any] | None, None),
        )
    return _DOCUMENT_ROOTS[spec_model]
