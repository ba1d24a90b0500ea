"""Session progress: which lab questions were checked in this kernel, and how it went.

Questions report here every time a learner checks an answer, asks for a hint or
opens a solution. :func:`progress` turns the records into a small table.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

__all__ = ["progress", "record_check", "record_hint", "record_solution", "reset_progress"]


@dataclass
class _Record:
    question: str
    outcome: str | None = None
    attempts: int = 0
    hints_seen: int = 0
    solution_seen: bool = False


_RECORDS: dict[str, _Record] = {}


def _record(question: str) -> _Record:
    if question not in _RECORDS:
        _RECORDS[question] = _Record(question)
    return _RECORDS[question]


def record_check(question: str, outcome: str) -> None:
    """Note that ``question`` was checked and ended with ``outcome``."""
    record = _record(question)
    record.outcome = outcome
    record.attempts += 1


def record_hint(question: str, number: int) -> None:
    """Note that hint ``number`` (1-based) of ``question`` was shown."""
    record = _record(question)
    record.hints_seen = max(record.hints_seen, number)


def record_solution(question: str) -> None:
    """Note that the solution of ``question`` was shown."""
    _record(question).solution_seen = True


def reset_progress() -> None:
    """Forget everything recorded in this session."""
    _RECORDS.clear()


def progress() -> Any:
    """Return a table of the questions checked in this session and their last outcome.

    Columns: ``question``, ``outcome`` ("correct", "incorrect" or "not_attempted"),
    ``attempts``, ``hints_seen`` and ``solution_seen``, one row per question in the
    order they were first touched. The table is a pandas DataFrame when pandas can be
    imported, else a list of dicts.
    """
    rows = [asdict(record) for record in _RECORDS.values() if record.attempts]
    try:
        import pandas as pd
    except ImportError:
        return rows
    return pd.DataFrame(rows, columns=[field for field in _Record.__dataclass_fields__])
