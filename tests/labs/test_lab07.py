"""Lab 07 (timeouts and retries): each question accepts its solution, rejects wrong answers with a
pointer that does not give the answer away, and reports "not attempted" for blanks.

The checks run real meshes (seeded); the q1 and q2 verdicts come from measured behaviour, with
margins wide enough for a busy machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from labtools import (
    check_learner_copy,
    needs_schema_check,
    notebooks,
    outcome,
    schema_check,
    solution_answers,
    swap,
)

from meshlab.labs import ____
from meshlab.labs.lab07 import (
    FAIL_FAST_SOLUTION,
    NO_RETRIES_INTO_A,
    RETRIES_SOLUTION,
    q1,
    q2,
    q3,
    trial,
)

SOLUTION_NB, LEARNER_NB = notebooks("07-timeouts-and-retries")


# -- q1: fail fast ---------------------------------------------------------------------------------

Q1_WRONG = [
    pytest.param(
        swap(FAIL_FAST_SOLUTION, "    timeout: 0.1s\n", ""), "nothing stops a slow request", id="no-timeout"
    ),
    pytest.param(swap(FAIL_FAST_SOLUTION, "0.1s", "0.4s"), "the budget is 0.2 s", id="timeout-too-long"),
    pytest.param(swap(FAIL_FAST_SOLUTION, "0.1s", "0.005s"), "normal requests", id="timeout-too-short"),
    pytest.param(
        swap(
            FAIL_FAST_SOLUTION,
            "timeout: 0.1s",
            "retries:\n      attempts: 3\n      perTryTimeout: 0.1s\n      retryOn: gateway-error",
        ),
        "`perTryTimeout` each one",
        id="per-try-timeouts-add-up",
    ),
    pytest.param(
        swap(
            FAIL_FAST_SOLUTION,
            "    timeout: 0.1s\n",
            "    fault:\n      abort:\n        httpStatus: 504\n        percentage:\n          value: 100\n",
        ),
        "fault injection",
        id="fault-abort",
    ),
    pytest.param(
        swap(FAIL_FAST_SOLUTION, "        host: httpbin\n", "        host: httpbin\n        subset: v1\n"),
        "503 NC",
        id="undefined-subset",
    ),
    pytest.param(
        swap(FAIL_FAST_SOLUTION, "  - httpbin\n", "  - ratings\n"),
        "does not change how the sidecars route",
        id="wrong-host",
    ),
    pytest.param(
        swap(FAIL_FAST_SOLUTION, "timeout: 0.1s", "timeout: 100"),
        "Istio would refuse",
        id="duration-without-unit",
    ),
    pytest.param(
        FAIL_FAST_SOLUTION + "---\n" + RETRIES_SOLUTION, "exactly one VirtualService", id="two-documents"
    ),
    pytest.param({"kind": "VirtualService"}, "should be a string", id="not-a-string"),
    pytest.param("timeout of 0.1s", "whole VirtualService in YAML", id="not-yaml"),
]


def test_q1_accepts_the_solution() -> None:
    assert outcome(q1, fail_fast_vs=FAIL_FAST_SOLUTION) == (
        "correct",
        "hung requests fail fast with 504 UT, within the 0.2 s budget, and normal requests still succeed: "
        "the caller's sidecar enforces the route timeout.",
    )


@pytest.mark.parametrize(("answer", "expected"), Q1_WRONG)
def test_q1_rejects_wrong_answers_with_a_pointer(answer: Any, expected: str) -> None:
    result, message = outcome(q1, fail_fast_vs=answer)
    assert result == "incorrect", message
    assert expected in message
    assert "timeout: 0.1s" not in message and "0.1s" not in message  # no answer given away


def test_q1_blank_and_missing_are_not_attempted() -> None:
    assert outcome(q1, fail_fast_vs=swap(FAIL_FAST_SOLUTION, "timeout: 0.1s", "____"))[0] == "not_attempted"
    assert outcome(q1, fail_fast_vs=____)[0] == "not_attempted"
    assert outcome(q1)[0] == "not_attempted"  # no variable `fail_fast_vs` anywhere


# -- q2: retries for a flaky service ---------------------------------------------------------------

Q2_WRONG = [
    pytest.param(
        swap(RETRIES_SOLUTION, "connect-failure,refused-stream,503", "5xx"),
        "a 500 was tried 5 times",
        id="retries-500",
    ),
    pytest.param(
        swap(RETRIES_SOLUTION, "attempts: 4", "attempts: 10"),
        "tried 11 times; at most 5",
        id="too-many-tries",
    ),
    pytest.param(swap(RETRIES_SOLUTION, "attempts: 4", "attempts: 2"), "below 99 %", id="too-few-tries"),
    pytest.param(
        swap(RETRIES_SOLUTION, "connect-failure,refused-stream,503", "retriable-status-codes"),
        "not retried at all",
        id="retry-on-without-codes",
    ),
    pytest.param(
        swap(
            RETRIES_SOLUTION, "attempts: 4\n      retryOn: connect-failure,refused-stream,503", "attempts: 0"
        ),
        "not retried at all",
        id="retries-off",
    ),
]


def test_q2_accepts_the_solution_and_the_defaults() -> None:
    result, message = outcome(q2, retries_vs=RETRIES_SOLUTION)
    assert result == "correct", message
    assert message.startswith(
        "199 of 200 requests to `/flaky/percent/30` succeeded, a failing request gets 5 tries"
    )
    # attempts alone keeps Istio's default conditions (503 yes, 500 no); 4 tries are enough too
    default_conditions = swap(RETRIES_SOLUTION, "      retryOn: connect-failure,refused-stream,503\n", "")
    assert outcome(q2, retries_vs=swap(default_conditions, "attempts: 4", "attempts: 3"))[0] == "correct"


@pytest.mark.parametrize(("answer", "expected"), Q2_WRONG)
def test_q2_rejects_wrong_answers_with_a_pointer(answer: str, expected: str) -> None:
    result, message = outcome(q2, retries_vs=answer)
    assert result == "incorrect", message
    assert expected in message
    assert "attempts: 4" not in message and "attempts: 3" not in message


def test_q2_blank_is_not_attempted() -> None:
    assert (
        outcome(q2, retries_vs=swap(RETRIES_SOLUTION, "attempts: 4", "attempts: ____"))[0] == "not_attempted"
    )
    assert outcome(q2, retries_vs=____)[0] == "not_attempted"


# -- q3: the storm, a number -----------------------------------------------------------------------

Q3_WRONG = [
    pytest.param(3, 27, "27 would need three retrying hops", id="three-hops"),
    pytest.param(3, 6, "multiply, they do not add up", id="added"),
    pytest.param(3, 3, "only B's sidecar retried", id="one-hop"),
    pytest.param(3, 4, "C does not receive 4", id="other-number"),
    pytest.param(2, 4, "2 *retries*, on top of the first try", id="retries-not-tries"),
    pytest.param(9, 9, "the call into A is not retried", id="b-too-many"),
    pytest.param(3, "9", "whole number", id="string"),
    pytest.param(3.0, 9, "whole number", id="float"),
]


def test_q3_accepts_the_answer_and_measures_it() -> None:
    assert outcome(q3, requests_to_b=3, requests_to_c=9) == (
        "correct",
        "B receives 3 and C receives 3 x 3 = 9. Measured on a fresh mesh: B received 3 and C 9 for one user "
        "request, which failed anyway.",
    )


@pytest.mark.parametrize(("b", "c", "expected"), Q3_WRONG)
def test_q3_rejects_wrong_numbers_with_a_pointer(b: Any, c: Any, expected: str) -> None:
    result, message = outcome(q3, requests_to_b=b, requests_to_c=c)
    assert result == "incorrect", message
    assert expected in message
    assert "3 x 3" not in message and "= 9" not in message  # the answer is not given away


def test_q3_blank_is_not_attempted() -> None:
    assert outcome(q3, requests_to_b=3, requests_to_c=____)[0] == "not_attempted"
    assert outcome(q3, requests_to_b=____, requests_to_c=____)[0] == "not_attempted"


# -- the playground --------------------------------------------------------------------------------


def test_trial_shows_what_a_virtual_service_does(capsys: pytest.CaptureFixture[str]) -> None:
    table = trial(FAIL_FAST_SOLUTION, "/delay/0.6", requests=5)
    assert table is not None
    assert list(table.index) == [(504, "UT")]
    assert table["requests"].tolist() == [5] and table["tries_per_request"].tolist() == [1.0]
    assert trial(swap(FAIL_FAST_SOLUTION, "0.1s", "____")) is None
    assert "Replace every ____" in capsys.readouterr().out


# -- the solution notebook and the YAML ------------------------------------------------------------


def test_solution_notebook_answers_are_the_questions_solutions() -> None:
    assert solution_answers(SOLUTION_NB) == {
        "fail_fast_vs": FAIL_FAST_SOLUTION,
        "retries_vs": RETRIES_SOLUTION,
        "requests_to_b": 3,
        "requests_to_c": 9,
    }
    assert (q1._solution, q2._solution) == (FAIL_FAST_SOLUTION, RETRIES_SOLUTION)


def test_learner_copy_has_blanks_and_no_answers() -> None:
    check_learner_copy(
        LEARNER_NB, blanks=4, hidden=("timeout: 0.1s", "attempts: 4", "requests_to_c = 9", "3 x 3 = 9")
    )


@needs_schema_check
def test_solution_yaml_passes_istios_schema(tmp_path: Path) -> None:
    texts = solution_answers(SOLUTION_NB, strings_only=True)
    output = schema_check(tmp_path, {**texts, "no_retries_into_a": NO_RETRIES_INTO_A})
    assert "3 Istio documents checked, 0 invalid" in output
