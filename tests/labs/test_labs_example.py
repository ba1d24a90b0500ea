"""The example lab: right answers pass, wrong ones get a pointer that does not give the answer away."""

from __future__ import annotations

from typing import Any

import pytest

from meshlab.labs import BLANK, Question
from meshlab.labs import example as lab

# (question, variable, the right answer as a learner would write it, text that would give it away)
QUESTIONS = [
    (lab.q1, "default_retries", 2, "2"),
    (lab.q2, "no_healthy_upstream_flag", "UH", "UH"),
]
WRONG_ANSWERS = {
    "default_retries": [0, 1, 3, 5, 10, -1, 2.0, "2", True, None, [2]],
    "no_healthy_upstream_flag": [
        "UF",
        "UO",
        "URX",
        "UT",
        "NR",
        "FI",
        "DI",
        "LH",
        "XYZ",
        "",
        503,
        None,
        b"UH",
    ],
}


def test_module_exports_questions_and_placeholder() -> None:
    assert lab.__all__ == ["q1", "q2", "____"]
    assert lab.____ is BLANK
    assert [q.qualified_name for q in (lab.q1, lab.q2)] == ["example.q1", "example.q2"]
    assert all(isinstance(q, Question) for q in (lab.q1, lab.q2))


@pytest.mark.parametrize(("question", "var", "answer", "secret"), QUESTIONS, ids=["q1", "q2"])
def test_right_answer_is_correct(question: Question, var: str, answer: Any, secret: str) -> None:
    question.assert_correct(**{var: answer})


def test_flag_answer_ignores_case_and_spaces() -> None:
    lab.q2.assert_correct(no_healthy_upstream_flag=" uh ")


@pytest.mark.parametrize(("question", "var", "answer", "secret"), QUESTIONS, ids=["q1", "q2"])
def test_wrong_answers_are_incorrect_and_do_not_leak_the_answer(
    question: Question, var: str, answer: Any, secret: str
) -> None:
    for wrong in WRONG_ANSWERS[var]:
        question.check(**{var: wrong})
        assert question.last_result is not None
        assert question.last_outcome == "incorrect", wrong
        assert question.last_result.error is None, f"{wrong!r} crashed the check"
        assert secret not in question.last_result.message, f"the message for {wrong!r} leaks the answer"


@pytest.mark.parametrize(("question", "var", "answer", "secret"), QUESTIONS, ids=["q1", "q2"])
def test_placeholder_is_not_attempted(question: Question, var: str, answer: Any, secret: str) -> None:
    question.check(**{var: BLANK})
    assert question.last_outcome == "not_attempted"


@pytest.mark.parametrize(("question", "var", "answer", "secret"), QUESTIONS, ids=["q1", "q2"])
def test_hints_do_not_leak_and_solution_gives_the_answer(
    question: Question, var: str, answer: Any, secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    hints = question._hints()
    assert len(hints) >= 2
    assert not any(secret in hint for hint in hints)
    question.solution()
    solution = capsys.readouterr().out
    namespace: dict[str, Any] = {}
    exec(question._solution or "", namespace)  # the solution is runnable code that sets the variable
    assert namespace[var] == answer
    assert f"{var} = " in solution
