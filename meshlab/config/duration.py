"""Istio durations ("1.5s", "100ms", "2m", "1h30m") and the pydantic types that check them.

Istio reads durations the way Kubernetes CEL and Go's ``time.ParseDuration`` do: a sequence of
decimal numbers, each with a unit (h, m, s, ms, us/µs, ns). Negative durations are invalid.
Models keep the text exactly as written (so it round-trips to YAML); code that needs a number calls
:func:`parse_duration`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from decimal import Decimal
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from .errors import show

__all__ = ["parse_duration", "Duration", "AnyDuration"]

_UNITS_NS = {"h": Decimal(3600 * 10**9), "m": Decimal(60 * 10**9), "s": Decimal(10**9), "ms": Decimal(10**6),
             "us": Decimal(1000), "µs": Decimal(1000), "μs": Decimal(1000), "ns": Decimal(1)}
_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|μs|ms|s|m|h)")
_EXAMPLE = "like '1s' or '250ms'"


def _nanoseconds(value: str) -> Decimal:
    """The duration in nanoseconds, exactly (no float rounding at the 1ms boundary)."""
    if not isinstance(value, str):
        raise ValueError(f"expected a duration {_EXAMPLE} (got {show(value)})")
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"invalid duration {show(value)}: durations cannot be negative")
    text = text.removeprefix("+")
    if text == "0":
        return Decimal(0)
    total, pos = Decimal(0), 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += Decimal(match.group(1)) * _UNITS_NS[match.group(2)]
        pos = match.end()
    if not text or pos != len(text):
        raise ValueError(
            f"invalid duration {show(value)}: expected a number and a unit (h, m, s, ms, us, ns), {_EXAMPLE}"
        )
    return total


def parse_duration(value: str) -> float:
    """Return an Istio duration in seconds: ``parse_duration("1.5s") == 1.5``, ``"100ms" -> 0.1``.

    Accepts a sequence of number+unit parts (``"1h30m"``), units h, m, s, ms, us/µs, ns, and the bare
    ``"0"``. Raises ValueError, with a message saying what is wrong, for anything else.
    """
    return float(_nanoseconds(value) / _UNITS_NS["s"])


def _duration_validator(minimum_ns: int) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        if not isinstance(value, str):
            raise PydanticCustomError("duration_type", f"expected a duration {_EXAMPLE} (got {show(value)})")
        try:
            nanoseconds = _nanoseconds(value)
        except ValueError:
            raise PydanticCustomError(
                "duration", f"must be a valid duration {_EXAMPLE} (got {show(value)})"
            ) from None
        if nanoseconds < minimum_ns:
            raise PydanticCustomError("duration_range", f"must be a valid duration greater than 1ms (got {show(value)})")
        return value

    return check


Duration = Annotated[str, BeforeValidator(_duration_validator(1_000_000))]
"""A duration that must be at least 1ms (Istio's rule for timeouts, intervals and delays)."""

AnyDuration = Annotated[str, BeforeValidator(_duration_validator(0))]
"""A duration that may be zero (cookie ttl, TCP idle timeout)."""
