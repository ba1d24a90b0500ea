"""Lab 01 (monolith vs microservices): each question accepts the solution, rejects wrong answers
with a message that helps without giving the answer away, and reports a blank as not attempted.

The checks run a real mesh (the shop, seeded), so these tests send real requests on loopback.
Answers that fail before any mesh starts (wrong types, over budget) are tested without one.
"""

from __future__ import annotations

from typing import Any

import pytest
from labtools import outcome

from meshlab.apps import shop
from meshlab.labs import ____
from meshlab.labs.lab01 import (
    BUDGET_MB,
    CRASH_BUDGET_MB,
    CRASH_SOLUTION,
    MICROSERVICES_DOWN,
    MONOLITH_DOWN,
    SPIKE_SOLUTION,
    memory_mb,
    q1,
    q2,
    q3,
    try_spike,
)


# -- q1: scale for the spike --------------------------------------------------------------------
def test_q1_accepts_the_solution() -> None:
    result, message = outcome(q1, spike_replicas=SPIKE_SOLUTION)
    assert result == "correct", message
    assert "cart x4" in message and f"{memory_mb(SPIKE_SOLUTION):.0f} MB" in message


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        (4, "should be a dict"),
        ({"basket": 2}, "services the shop does not have: basket"),
        ({"shop": 3}, "the monolith is not part of this question"),
        ({"cart": 0}, "whole number from 1 to 20"),
        ({"cart": 2.5}, "whole number from 1 to 20"),
        ({"cart": True}, "whole number from 1 to 20"),
        ({name: 2 for name in shop.SERVICES}, "over the 2048 MB budget"),
        ({"cart": 10}, "over the 2048 MB budget"),
    ],
)
def test_q1_rejects_without_running_a_mesh(answer: Any, expected: str) -> None:
    result, message = outcome(q1, spike_replicas=answer)
    assert result == "incorrect" and expected in message, message


def test_q1_rejects_too_few_cart_pods_after_running_the_spike() -> None:
    result, message = outcome(q1, spike_replicas={"listing": 2})
    assert result == "incorrect", message
    assert "cart" in message and "could not keep up" in message
    assert "4" not in message  # the number of pods is not given away


def test_q1_blank_is_not_attempted() -> None:
    assert outcome(q1, spike_replicas=____)[0] == "not_attempted"
    assert outcome(q1, spike_replicas={"cart": ____})[0] == "not_attempted"


def test_budgets_and_memory() -> None:
    assert memory_mb({}) == sum(s.footprint_mb for s in shop.SERVICES.values())
    assert memory_mb(SPIKE_SOLUTION) <= BUDGET_MB
    assert memory_mb(CRASH_SOLUTION) <= CRASH_BUDGET_MB
    assert memory_mb(____) is None and memory_mb("cart") is None


def test_try_spike_shows_a_table_or_a_note(capsys: pytest.CaptureFixture[str]) -> None:
    assert try_spike(____) is None
    assert try_spike({"basket": 1}) is None
    assert "replace the ____" in capsys.readouterr().out
    table = try_spike({"cart": 3})
    assert table is not None and list(table.index) == list(shop.FEATURES)
    assert table.loc["listing", "answered without error (%)"] == 100.0


# -- q2: predict the blast radius ---------------------------------------------------------------
def test_q2_accepts_the_solution_in_any_iterable() -> None:
    result, message = outcome(q2, down_in_monolith=list(MONOLITH_DOWN), down_in_microservices=MICROSERVICES_DOWN)
    assert result == "correct", message


@pytest.mark.parametrize(
    ("monolith", "microservices", "expected"),
    [
        (MONOLITH_DOWN, {"details"}, "in the microservices, 1 feature(s) that went down are missing"),
        (MONOLITH_DOWN, {"details", "home", "checkout"}, "in the microservices, 1 feature(s) you listed kept"),
        ({"details"}, MICROSERVICES_DOWN, "in the monolith, 5 feature(s) that went down are missing"),
    ],
)
def test_q2_rejects_wrong_predictions_without_naming_features(monolith: set[str], microservices: set[str],
                                                               expected: str) -> None:
    result, message = outcome(q2, down_in_monolith=monolith, down_in_microservices=microservices)
    assert result == "incorrect" and expected in message, message
    assert "home" not in message and "login" not in message


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("details", "should be a set of feature names"), ({"payment"}, "not features: payment")],
)
def test_q2_rejects_malformed_answers_without_a_mesh(answer: Any, expected: str) -> None:
    result, message = outcome(q2, down_in_monolith=answer, down_in_microservices=set())
    assert result == "incorrect" and expected in message, message


def test_q2_blank_is_not_attempted() -> None:
    assert outcome(q2, down_in_monolith=____, down_in_microservices={"home"})[0] == "not_attempted"


# -- q3: contain a pod crash --------------------------------------------------------------------
def test_q3_accepts_the_solution() -> None:
    result, message = outcome(q3, crash_replicas=CRASH_SOLUTION)
    assert result == "correct", message


def test_q3_rejects_one_details_pod_and_a_costly_answer() -> None:
    result, message = outcome(q3, crash_replicas={})
    assert result == "incorrect" and "details failed" in message, message
    result, message = outcome(q3, crash_replicas={"details": 2, "listing": 2})
    assert result == "incorrect" and f"over the {CRASH_BUDGET_MB:.0f} MB budget" in message, message


def test_q3_blank_is_not_attempted() -> None:
    assert outcome(q3, crash_replicas=____)[0] == "not_attempted"


def test_hints_and_solutions_exist() -> None:
    for q in (q1, q2, q3):
        assert q._hints() and q._solution
        assert q.qualified_name.startswith("lab01.q")
