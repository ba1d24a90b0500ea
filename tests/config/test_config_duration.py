"""parse_duration: Istio durations to seconds."""

from __future__ import annotations

import pytest

from meshlab.config import parse_duration


@pytest.mark.parametrize(("text", "seconds"), [
    ("1s", 1.0), ("1.5s", 1.5), ("0.5s", 0.5), (".5s", 0.5), ("100ms", 0.1), ("500us", 0.0005),
    ("500µs", 0.0005), ("250ns", 2.5e-7), ("2m", 120.0), ("1h", 3600.0), ("1h30m", 5400.0),
    ("1m30.5s", 90.5), ("0", 0.0), ("0s", 0.0), ("7s", 7.0),
])
def test_valid_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize(("value", "fragment"), [
    ("-1s", "cannot be negative"),
    ("5", "expected a number and a unit"),
    ("1 s", "expected a number and a unit"),
    ("1d", "expected a number and a unit"),
    ("s", "expected a number and a unit"),
    ("", "expected a number and a unit"),
    ("1.5.s", "expected a number and a unit"),
    (5, "expected a duration like '1s' or '250ms' (got 5)"),
    (None, "(got null)"),
])
def test_invalid_durations(value: object, fragment: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(value)  # type: ignore[arg-type]
    assert fragment in str(caught.value)
