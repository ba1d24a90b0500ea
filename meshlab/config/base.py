"""Building blocks shared by every Istio model: the base class, number types, common messages.

Every model uses Istio's own camelCase field names as attributes (``route.destination.port.number``),
rejects unknown fields, and does not coerce types (``weight: "80"`` is an error, as it is for the
Kubernetes API server). The only Python name that differs is ``from_`` (``from`` is a Python keyword);
it is read from and written back as ``from``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field
from pydantic_core import PydanticCustomError

from .errors import show

__all__ = [
    "IstioModel",
    "UInt32",
    "Int32",
    "NonEmptyStr",
    "between",
    "StringMatch",
    "Percent",
    "PortSelector",
    "Destination",
    "WorkloadSelector",
    "PolicyTargetReference",
]


class IstioModel(BaseModel):
    """Base of every Istio message model: camelCase names, unknown fields rejected, strict types."""

    model_config = ConfigDict(extra="forbid", strict=True, populate_by_name=True)

    def set_fields(self) -> dict[str, Any]:
        """The fields written in the YAML (by Istio name) whose value is not null."""
        out = {}
        for name in self.model_fields_set:
            value = getattr(self, name)
            if value is not None:
                out[type(self).model_fields[name].alias or name] = value
        return out


def between(low: float, high: float) -> AfterValidator:
    """A pydantic validator: the number must lie in [low, high]."""

    def check(value: float) -> float:
        if value < low or value > high:
            raise PydanticCustomError("range", f"must be between {low:g} and {high:g} (got {show(value)})")
        return value

    return AfterValidator(check)


UInt32 = Annotated[int, Field(ge=0, le=4294967295)]
Int32 = Annotated[int, Field(ge=-2147483648, le=2147483647)]
NonEmptyStr = Annotated[str, Field(min_length=1)]


class StringMatch(IstioModel):
    """Match a string exactly, by prefix, or by RE2 regex (at most one of the three)."""

    exact: str | None = None
    prefix: str | None = None
    regex: str | None = None


class Percent(IstioModel):
    """A percentage as a double in [0, 100], e.g. ``percentage: {value: 0.1}``."""

    value: float | None = None


class PortSelector(IstioModel):
    """Selects a port of a service by number."""

    number: UInt32 | None = None


class Destination(IstioModel):
    """A service (``host``), optionally one subset of it and one port."""

    host: str
    subset: str | None = None
    port: PortSelector | None = None


class WorkloadSelector(IstioModel):
    """Selects workloads (pods) by label: ``selector: {matchLabels: {app: reviews}}``."""

    matchLabels: dict[str, Annotated[str, Field(max_length=63)]] | None = None


class PolicyTargetReference(IstioModel):
    """Attaches a policy to a Service, ServiceEntry or Gateway instead of using a selector."""

    group: Annotated[str, Field(max_length=253)] | None = None
    kind: Annotated[str, Field(min_length=1, max_length=63)]
    name: Annotated[str, Field(min_length=1, max_length=253)]
    namespace: str | None = None

