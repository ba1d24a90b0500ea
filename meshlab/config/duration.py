"""Istio durations ("1.5s", "100ms", "2m", "1h30m") and the pydantic types that check them.

Istio reads durations the way Kubernetes CEL and Go's ``time.ParseDuration`` do: a sequence of
decimal numbers, each with a unit (h, m, s, ms, us/µs, ns). Negative durations are invalid.
Models keep the text exactly as written (so it round-trips to YAML); code that needs a number calls
:func:`parse_duration`.
"""

from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

__all__ = ["parse_duration", "Duration", "AnyDuration", "show"]

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "μs": 1e-6, "ns": 1e-9}
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
_EXAMPLE = "like '1s' or '250ms'"


def show(value: Any, limit: int = 40) -> str:
    """Render a YAML value the way a learner wrote it: 'text', 5, true, null, [...]."""
    if value is None:
        text = "null"
    elif isinstance(value, bool):
        text = "true" if value else "false"
    elif isinstance(value, str):
        text = repr(value)
    else:
        text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def parse_duration(value: str) -> float:
    """Return an Istio duration in seconds: ``parse_duration("1.5s") == 1.5``, ``"100ms" -> 0.1``.

    Accepts a sequence of number+unit parts (``"1h30m"``), units h, m, s, ms, us/µs, ns, and the bare
    ``"0"``. Raises ValueError, with a message saying what is wrong, for anything else.
    """
    if not isinstance(value, str) or isinstance(value, bool):
        raise ValueError(f"expected a duration {_EXAMPLE} (got {show(value)})")
    text = value.strip()
    if text.startswith("-"):
        raise ValueError(f"invalid duration {show(value)}: durations cannot be negative")
    if text.startswith("+"):
        text = text[1:]
    if text == "0":
        return 0.0
    if not text:
        raise ValueError(f"invalid duration {show(value)}: expected a number and a unit, {_EXAMPLE}")
    total, pos = 0.0, 0
    for match in _PART.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text):
        raise ValueError(
            f"invalid duration {show(value)}: expected a number and a unit (h, m, s, ms, us, ns), {_EXAMPLE}"
        )
    return total


def _duration_validator(minimum: float):
    def check(value: Any) -> Any:
        if not isinstance(value, str):
            raise PydanticCustomError("duration_type", f"expected a duration {_EXAMPLE} (got {show(value)})")
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise PydanticCustomError(
                "duration", f"must be a valid duration {_EXAMPLE} (got {show(value)})"
            ) from None
        if seconds < minimum:
            raise PydanticCustomError("duration_range", f"must be a valid duration greater than 1ms (got {show(value)})")
        return value

    return check


Duration = Annotated[str, BeforeValidator(_duration_validator(1e-3 - 1e-12))]
"""A duration that must be at least 1ms (Istio's rule for timeouts, intervals and delays)."""

AnyDuration = Annotated[str, BeforeValidator(_duration_validator(0.0))]
"""A duration that may be zero (cookie ttl, TCP idle timeout)."""
