"""Problems, errors and warnings raised while loading Istio configuration.

    ValueError
     └── ConfigError            one or more Problems; str() lists each on its own line
          └── ResourceNotFound  (also a KeyError) the store has no such resource
    UserWarning
     └── MeshlabConfigWarning   valid Istio that meshlab accepts but does not simulate
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

__all__ = ["Problem", "ConfigError", "ResourceNotFound", "MeshlabConfigWarning", "show"]


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one document: where it is and what is wrong.

    ``str(problem)`` reads like a compiler message:
    ``"vs.yaml:12: spec.http[0].route[1].weight: must be between 0 and 100 (got 120)"``.
    """

    source: str | None
    line: int | None
    path: str
    message: str

    def __str__(self) -> str:
        where = self.source or "<config>"
        if self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(ValueError):
    """Invalid configuration. ``problems`` lists every problem found, not only the first."""

    def __init__(self, problems: Iterable[Problem] | str) -> None:
        if isinstance(problems, str):
            problems = [Problem(None, None, "", problems)]
        self.problems: list[Problem] = list(problems)
        super().__init__(str(self))

    def __str__(self) -> str:
        if len(self.problems) == 1:
            return str(self.problems[0])
        lines = [f"{len(self.problems)} problems in the configuration:"]
        lines += [f"  {problem}" for problem in self.problems]
        return "\n".join(lines)


class ResourceNotFound(ConfigError, KeyError):
    """The store holds no resource with this kind, namespace and name."""

    def __str__(self) -> str:  # KeyError would quote the message; keep ConfigError's plain text
        return ConfigError.__str__(self)


class MeshlabConfigWarning(UserWarning):
    """A field that is valid Istio but that meshlab accepts without simulating it (or an Istio warning)."""


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
