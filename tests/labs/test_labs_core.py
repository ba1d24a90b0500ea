"""The lab-check framework: outcomes, answer lookup, hints, solutions, progress, exports."""

from __future__ import annotations

import copy
import pickle
import sys
from typing import Any

import pytest

import meshlab.labs
from meshlab.labs import (
    BLANK,
    Incorrect,
    Question,
    ____,
    bind_questions,
    contains_blank,
    progress,
)
from meshlab.labs import core as labs_core


class Replicas(Question):
    _vars = ["replicas"]
    _hint = ["first hint", "second hint", "third hint"]
    _solution = "replicas = 3"

    def check(self, replicas: Any) -> None:
        if not isinstance(replicas, int):
            raise Incorrect("`replicas` should be a whole number.")
        if replicas != 3:
            raise Incorrect("one replica may fail while the others still serve.")


class VirtualServiceYaml(Question):
    _vars = ["vs_yaml"]
    _hint = "one single hint"
    _error_prefix = "your VirtualService was refused"

    def check(self, vs_yaml: Any) -> str:
        import yaml

        doc = yaml.safe_load(vs_yaml)
        if doc["kind"] != "VirtualService":
            raise Incorrect("that document is not a VirtualService.")
        return "that VirtualService routes as asked."


class TwoAnswers(Question):
    _vars = ["host", "port"]

    def check(self, host: Any, port: Any) -> None:
        if (host, port) != ("reviews", 9080):
            raise Incorrect("check the host and the port.")


def shown(capsys: pytest.CaptureFixture[str]) -> str:
    return capsys.readouterr().out


# -- the placeholder -------------------------------------------------------------------


def test_blank_is_one_object_that_formats_as_four_underscores() -> None:
    assert ____ is BLANK
    assert str(BLANK) == repr(BLANK) == f"{BLANK}" == "____"
    assert copy.copy(BLANK) is BLANK
    assert copy.deepcopy({"a": BLANK})["a"] is BLANK
    assert pickle.loads(pickle.dumps(BLANK)) is BLANK
    assert type(BLANK)() is BLANK


@pytest.mark.parametrize(
    "value",
    [BLANK, "replicas: ____", f"weight: {____}", {"a": [1, {"b": BLANK}]}, {BLANK: 1}, (1, BLANK), {BLANK}],
)
def test_contains_blank_finds_the_placeholder(value: Any) -> None:
    assert contains_blank(value)


@pytest.mark.parametrize("value", [None, 0, "", "__init__", "___", {"a": [1, "b"]}, (), object()])
def test_contains_blank_ignores_real_answers(value: Any) -> None:
    assert not contains_blank(value)


def test_contains_blank_survives_self_referencing_containers() -> None:
    loop: list[Any] = [1]
    loop.append(loop)
    assert not contains_blank(loop)
    loop.append(BLANK)
    assert contains_blank(loop)


# -- the three outcomes ----------------------------------------------------------------


def test_correct_answer(capsys: pytest.CaptureFixture[str]) -> None:
    q = Replicas()
    assert q.check(replicas=3) is None  # nothing for a notebook cell to echo
    assert q.last_outcome == "correct"
    assert shown(capsys).startswith("✅ Correct: well done.")


def test_incorrect_answer_shows_the_authors_message(capsys: pytest.CaptureFixture[str]) -> None:
    q = Replicas()
    q.check(replicas=5)
    assert q.last_outcome == "incorrect"
    assert shown(capsys).strip() == "❌ Not yet: one replica may fail while the others still serve."


def test_missing_variable_is_not_attempted(capsys: pytest.CaptureFixture[str]) -> None:
    q = Replicas()
    q.check()
    assert q.last_outcome == "not_attempted"
    assert shown(capsys).strip() == "⭕ Not attempted: set `replicas` and run this cell again."


@pytest.mark.parametrize("answer", [BLANK, [BLANK], {"replicas": BLANK}])
def test_placeholder_answer_is_not_attempted(answer: Any, capsys: pytest.CaptureFixture[str]) -> None:
    q = Replicas()
    q.check(replicas=answer)
    assert q.last_outcome == "not_attempted"
    assert "⭕ Not attempted: set `replicas` (replace every ____)" in shown(capsys)


def test_yaml_answer_still_containing_the_placeholder_is_not_attempted(
    capsys: pytest.CaptureFixture[str],
) -> None:
    q = VirtualServiceYaml()
    q.check(vs_yaml="kind: VirtualService\nspec:\n  hosts: [____]\n")
    assert q.last_outcome == "not_attempted"
    assert "Not attempted" in shown(capsys)


def test_not_attempted_names_every_unanswered_variable(capsys: pytest.CaptureFixture[str]) -> None:
    q = TwoAnswers()
    q.check(port=BLANK)
    assert "set `host` and `port`" in shown(capsys)
    q.check(host="reviews", port=9080)
    assert q.last_outcome == "correct"


def test_check_can_return_its_own_success_message(capsys: pytest.CaptureFixture[str]) -> None:
    VirtualServiceYaml().check(vs_yaml="kind: VirtualService")
    assert shown(capsys).strip() == "✅ Correct: that VirtualService routes as asked."


def test_other_exceptions_are_reported_as_incorrect_without_traceback(
    capsys: pytest.CaptureFixture[str],
) -> None:
    q = VirtualServiceYaml()
    q.check(vs_yaml="kind: [VirtualService")  # does not parse
    out = shown(capsys)
    assert q.last_outcome == "incorrect"
    assert out.startswith("❌ Not yet: your VirtualService was refused: ParserError: ")
    assert "Traceback" not in out
    assert isinstance(q.last_result and q.last_result.error, Exception)

    q.check(vs_yaml="apiVersion: v1")  # parses, but the check trips over a missing key
    assert shown(capsys).strip() == "❌ Not yet: your VirtualService was refused: KeyError: 'kind'"


def test_default_error_prefix(capsys: pytest.CaptureFixture[str]) -> None:
    class Broken(Question):
        _vars = ["x"]

        def check(self, x: Any) -> None:
            raise ValueError("mesh refused it")

    Broken().check(x=1)
    assert (
        shown(capsys).strip()
        == "❌ Not yet: checking your answer raised an error: ValueError: mesh refused it"
    )


def test_keyboard_interrupt_is_not_swallowed() -> None:
    class Interrupted(Question):
        def check(self) -> None:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        Interrupted().check()


def test_unknown_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match="replica_count"):
        Replicas().check(replica_count=3)


def test_subclass_of_a_question_keeps_its_parents_check(capsys: pytest.CaptureFixture[str]) -> None:
    class StricterReplicas(Replicas):
        _hint = None

    q = StricterReplicas()
    q.check(replicas=4)
    assert q.last_outcome == "incorrect"
    q.check(replicas=3)
    assert q.last_outcome == "correct"


def test_question_without_check_is_reported_not_crashed(capsys: pytest.CaptureFixture[str]) -> None:
    class Unfinished(Question):
        pass

    Unfinished().check()
    assert "NotImplementedError" in shown(capsys)


# -- where answers come from -----------------------------------------------------------


def test_answers_come_from_the_callers_locals(capsys: pytest.CaptureFixture[str]) -> None:
    q = Replicas()
    replicas = 3  # noqa: F841 - read by q.check() from this frame
    q.check()
    assert q.last_outcome == "correct"


def test_answers_come_from_the_callers_globals() -> None:
    q = Replicas()
    notebook_globals: dict[str, Any] = {"q": q, "replicas": 3}
    exec("def run_cell():\n    q.check()\n", notebook_globals)
    notebook_globals["run_cell"]()
    assert q.last_outcome == "correct"

    notebook_globals["replicas"] = 4
    exec("q.check()", notebook_globals)  # a cell at module level: locals are the globals
    assert q.last_outcome == "incorrect"


def test_answers_fall_back_to_main(monkeypatch: pytest.MonkeyPatch) -> None:
    q = Replicas()
    monkeypatch.setattr(sys.modules["__main__"], "replicas", 3, raising=False)
    exec("q.check()", {"q": q})
    assert q.last_outcome == "correct"


def test_explicit_answers_win_over_notebook_variables(capsys: pytest.CaptureFixture[str]) -> None:
    q = Replicas()
    replicas = 4  # noqa: F841 - would be read if the keyword were ignored
    q.check(replicas=3)
    assert q.last_outcome == "correct"
    q.check()
    assert q.last_outcome == "incorrect"


# -- assert_correct ----------------------------------------------------------------------


def test_assert_correct_passes_silently(capsys: pytest.CaptureFixture[str]) -> None:
    q = Replicas()
    replicas = 3  # noqa: F841 - read from this frame
    q.assert_correct()
    assert q.last_outcome == "correct"
    assert shown(capsys) == ""


@pytest.mark.parametrize(("answer", "text"), [(5, "Not yet: one replica"), (BLANK, "Not attempted")])
def test_assert_correct_raises_with_the_message(answer: Any, text: str) -> None:
    with pytest.raises(AssertionError, match=text):
        Replicas().assert_correct(replicas=answer)


def test_assert_correct_chains_the_checks_exception() -> None:
    with pytest.raises(AssertionError) as info:
        VirtualServiceYaml().assert_correct(vs_yaml="{")
    assert type(info.value.__cause__).__name__ == "ParserError"


# -- hints and solutions ---------------------------------------------------------------


def test_hints_are_progressive_then_stay_on_the_last(capsys: pytest.CaptureFixture[str]) -> None:
    q = Replicas()
    q.hint()
    assert shown(capsys).startswith("💡 Hint 1 of 3: first hint (next: Replicas.hint())")
    q.hint()
    assert "Hint 2 of 3: second hint" in shown(capsys)
    q.hint()
    q.hint()
    assert shown(capsys).count("Hint 3 of 3: third hint") == 2
    q.hint(1)
    assert "Hint 1 of 3: first hint" in shown(capsys)
    q.hint(7)
    assert "hints 1 to 3" in shown(capsys)


def test_single_hint_and_no_hint(capsys: pytest.CaptureFixture[str]) -> None:
    VirtualServiceYaml().hint()
    assert shown(capsys).strip() == "💡 Hint: one single hint"
    TwoAnswers().hint()
    assert "no hint" in shown(capsys)


def test_solution_is_shown_as_code(capsys: pytest.CaptureFixture[str]) -> None:
    Replicas().solution()
    assert shown(capsys) == "💡 Solution:\n    replicas = 3\n"
    TwoAnswers().solution()
    assert "no written solution" in shown(capsys)


def test_prose_solution(capsys: pytest.CaptureFixture[str]) -> None:
    class Prose(Question):
        _solution = "Pilot pushes the routes to every sidecar."
        _solution_lang = ""

    Prose().solution()
    assert shown(capsys).strip() == "💡 Solution: Pilot pushes the routes to every sidecar."


# -- display inside a Jupyter kernel ---------------------------------------------------


def test_in_a_kernel_outcomes_are_displayed_as_markdown_and_text(monkeypatch: pytest.MonkeyPatch) -> None:
    displayed: list[dict[str, str]] = []
    monkeypatch.setattr(labs_core, "_in_kernel", lambda: True)
    monkeypatch.setattr("IPython.display.display", lambda data, raw: displayed.append(data))
    q = VirtualServiceYaml()
    q.check(vs_yaml="kind: Gateway")
    q.check(vs_yaml="kind: [")
    assert displayed[0] == {
        "text/plain": "❌ Not yet: that document is not a VirtualService.",
        "text/markdown": "❌ **Not yet:** that document is not a VirtualService.",
    }
    multi_line_error = displayed[1]["text/markdown"]
    assert multi_line_error.startswith("❌ **Not yet:** your VirtualService was refused:\n\n```\nParserError")


def test_markdown_of_a_one_line_error_is_escaped() -> None:
    assert labs_core._markdown_literal("KeyError: '*x*'") == " KeyError: '\\*x\\*'"


# -- binding and progress --------------------------------------------------------------


def test_bind_questions_names_questions_and_exports_the_placeholder() -> None:
    namespace: dict[str, Any] = {
        "__name__": "meshlab.labs.lab99",
        "q1": Replicas(),
        "q2": TwoAnswers(),
        "_scratch": Replicas(),
        "other": 1,
    }
    assert bind_questions(namespace) == ["q1", "q2", "____"]
    assert namespace["____"] is BLANK
    assert namespace["q1"].qualified_name == "lab99.q1"
    assert namespace["_scratch"].qualified_name == "Replicas"
    assert "q1.check()" in repr(namespace["q1"]) and "q1.hint()" in repr(namespace["q1"])


def test_progress_lists_checked_questions_with_their_last_outcome() -> None:
    namespace: dict[str, Any] = {"__name__": "lab98", "q1": Replicas(), "q2": TwoAnswers(), "q3": Replicas()}
    bind_questions(namespace)
    namespace["q1"].check(replicas=5)
    namespace["q1"].hint()
    namespace["q1"].check(replicas=3)
    namespace["q2"].check()
    namespace["q3"].hint()  # only a hint: not in the table
    table = progress()
    assert table.to_dict("records") == [
        {
            "question": "lab98.q1",
            "outcome": "correct",
            "attempts": 2,
            "hints_seen": 1,
            "solution_seen": False,
        },
        {
            "question": "lab98.q2",
            "outcome": "not_attempted",
            "attempts": 1,
            "hints_seen": 0,
            "solution_seen": False,
        },
    ]


def test_progress_without_pandas_is_a_list_of_dicts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "pandas", None)  # makes "import pandas" fail
    q = Replicas()
    q.solution()
    q.check(replicas=1)
    assert progress() == [
        {
            "question": "Replicas",
            "outcome": "incorrect",
            "attempts": 1,
            "hints_seen": 0,
            "solution_seen": True,
        }
    ]


def test_progress_is_empty_before_any_check() -> None:
    assert len(progress()) == 0


def test_public_api_is_exactly_all() -> None:
    assert sorted(meshlab.labs.__all__) == sorted(
        [
            "BLANK",
            "Blank",
            "Incorrect",
            "Outcome",
            "Question",
            "Result",
            "____",
            "bind_questions",
            "contains_blank",
            "progress",
            "reset_progress",
        ]
    )
    for name in meshlab.labs.__all__:
        assert hasattr(meshlab.labs, name), name
