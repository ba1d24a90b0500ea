"""The answer placeholder ``____`` that learner copies of labs use.

A learner copy says ``replicas = ____``; until the learner replaces the four
underscores, the question counts as *not attempted* rather than *incorrect*.
The placeholder is recognised when it is the answer itself, when it sits
anywhere inside a dict / list / tuple / set answer, and when a string answer
(typically YAML) still contains the text ``____``. Formatting the placeholder
(``str``, f-strings) gives ``____``, so ``f"replicas: {____}"`` stays blank too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, final

__all__ = ["BLANK", "BLANK_TEXT", "Blank", "contains_blank"]

BLANK_TEXT: Final = "____"


@final
class Blank:
    """The type of the single placeholder object ``____`` (also called ``BLANK``)."""

    _instance: Blank | None = None

    def __new__(cls) -> Blank:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return BLANK_TEXT

    def __str__(self) -> str:
        return BLANK_TEXT

    def __format__(self, format_spec: str) -> str:
        return format(BLANK_TEXT, format_spec)

    def __copy__(self) -> Blank:
        return self

    def __deepcopy__(self, memo: dict[int, Any]) -> Blank:
        return self

    def __reduce__(self) -> tuple[type[Blank], tuple[()]]:
        return (Blank, ())


BLANK: Final = Blank()


def contains_blank(value: Any) -> bool:
    """Return True if ``value`` is, or still contains, the ``____`` placeholder.

    Strings count when they contain the text ``____``; mappings (keys and values),
    lists, tuples, sets and frozensets are searched recursively. Other objects are
    taken as real answers.
    """
    return _contains_blank(value, set())


def _contains_blank(value: Any, seen: set[int]) -> bool:
    if isinstance(value, Blank):
        return True
    if isinstance(value, str):
        return BLANK_TEXT in value
    if isinstance(value, Mapping | list | tuple | set | frozenset):
        if id(value) in seen:  # self-referencing containers
            return False
        seen.add(id(value))
        items = list(value.keys()) + list(value.values()) if isinstance(value, Mapping) else list(value)
        return any(_contains_blank(item, seen) for item in items)
    return False
