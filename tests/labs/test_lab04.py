"""Lab 04 (routing and canary): each question accepts the solution, rejects wrong answers with a
message that helps without giving the answer away, and reports a blank as not attempted.

The checks run a real mesh (Bookinfo, seeded), so these tests send real requests on loopback.
The solution YAML (in the solution notebook and in the questions) is also checked against
Istio's CRD schemas with ``../shared/tools/istio-schema-check`` when the shared folder is there.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from labtools import (
    check_learner_copy,
    istio_sample,
    needs_schema_check,
    notebooks,
    outcome,
    schema_check,
    solution_answers,
    swap,
    yaml_documents,
)

from meshlab.labs import ____
from meshlab.labs.lab04 import (
    CANARY_SOLUTION,
    DESTINATION_RULES,
    JASON_SOLUTION,
    REWRITE_SOLUTION,
    preview,
    q1,
    q2,
    q3,
)

SOLUTION_NB, LEARNER_NB = notebooks("04-routing-and-canary")


def without_route(text: str, start: str, end: str | None = None) -> str:
    """``text`` without the lines from the one containing ``start`` up to (not including) ``end``."""
    lines = text.splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if start in line)
    j = next((n for n, line in enumerate(lines) if n > i and end and end in line), len(lines))
    return "".join(lines[:i] + lines[j:])


# -- q1: jason on v2 -----------------------------------------------------------------------------

JASON_DEFAULT_FIRST = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
"""

Q1_WRONG = [
    pytest.param(swap(JASON_SOLUTION, "end-user", "end_user"), "jason still reaches v1", id="wrong-header-name"),
    pytest.param(JASON_DEFAULT_FIRST, "first route that matches wins", id="default-route-first"),
    pytest.param(swap(JASON_SOLUTION, "subset: v2", "subset: version2"), "Referenced host+subset",
                 id="undefined-subset"),
    pytest.param(without_route(JASON_SOLUTION, "  - route:"), "no route matched", id="no-route-for-others"),
    pytest.param(swap(JASON_SOLUTION, "subset: v1", "subset: v2"), "users who are not jason reach v2",
                 id="everyone-on-v2"),
    pytest.param(swap(JASON_SOLUTION, "subset: v2", "subset: v3"), "jason reaches v3", id="jason-on-v3"),
    pytest.param(swap(JASON_SOLUTION, "  - reviews\n", "  - ratings\n"), "does not change how the sidecars route",
                 id="wrong-host"),
    pytest.param(swap(JASON_SOLUTION, "end-user", "End-User"), "Istio would refuse", id="uppercase-header"),
    pytest.param(DESTINATION_RULES.split("---")[1] + "---\n" + JASON_SOLUTION, "exactly one VirtualService",
                 id="extra-document"),
    pytest.param({"kind": "VirtualService"}, "should be a string", id="not-a-string"),
    pytest.param("reviews to v2 for jason", "whole VirtualService in YAML", id="not-yaml"),
]


def test_q1_accepts_the_solution() -> None:
    assert outcome(q1, jason_vs=JASON_SOLUTION) == (
        "correct", "jason gets reviews v2 (black stars) and every other user v1, as in Istio's request-routing task.")


@pytest.mark.parametrize(("answer", "expected"), Q1_WRONG)
def test_q1_rejects_wrong_answers_with_a_pointer(answer: Any, expected: str) -> None:
    result, message = outcome(q1, jason_vs=answer)
    assert result == "incorrect", message
    assert expected in message
    assert "exact: jason" not in message and "subset: v2" not in message  # no answer given away


def test_q1_blank_and_missing_are_not_attempted() -> None:
    assert outcome(q1, jason_vs=swap(JASON_SOLUTION, "subset: v2", "subset: ____"))[0] == "not_attempted"
    assert outcome(q1, jason_vs=____)[0] == "not_attempted"
    assert outcome(q1)[0] == "not_attempted"  # no variable `jason_vs` anywhere


# -- q2: canary 90/10 ----------------------------------------------------------------------------

Q2_WRONG = [
    pytest.param(swap(swap(CANARY_SOLUTION, "weight: 90", "weight: 80"), "weight: 10", "weight: 20"),
                 "v3 served 20%", id="80-20"),
    pytest.param(swap(swap(CANARY_SOLUTION, "weight: 90", "weight: 88"), "weight: 10", "weight: 12"),
                 "the weights are v1: 88, v3: 12", id="88-12"),
    pytest.param(swap(swap(CANARY_SOLUTION, "weight: 90", "weight: 9X"), "weight: 10", "weight: 90")
                 .replace("weight: 9X", "weight: 10"), "Check which destination carries which weight",
                 id="weights-swapped"),
    pytest.param(swap(CANARY_SOLUTION, "subset: v3", "subset: v2"), "reached v2", id="canary-on-v2"),
    pytest.param(swap(swap(CANARY_SOLUTION, "weight: 10\n", "weight: 0\n"), "weight: 90", "weight: 100"),
                 "no request reached v3", id="no-canary"),
    pytest.param(swap(CANARY_SOLUTION, "weight: 90", "weight: 80"), "total destination weight 90 != 100",
                 id="weights-do-not-add-up"),
]


def test_q2_accepts_the_solution() -> None:
    result, message = outcome(q2, canary_vs=CANARY_SOLUTION)
    assert result == "correct", message
    assert re.match(r"v3 served \d+ of 400 requests", message)


@pytest.mark.parametrize(("answer", "expected"), Q2_WRONG)
def test_q2_rejects_wrong_answers_with_a_pointer(answer: str, expected: str) -> None:
    result, message = outcome(q2, canary_vs=answer)
    assert result == "incorrect", message
    assert expected in message
    assert "weight: 90" not in message and "weight: 10" not in message


def test_q2_blank_is_not_attempted() -> None:
    assert outcome(q2, canary_vs=swap(CANARY_SOLUTION, "weight: 10", "weight: ____"))[0] == "not_attempted"
    assert outcome(q2, canary_vs=f"weight: {____}")[0] == "not_attempted"


def test_q2_is_reproducible() -> None:
    first = outcome(q2, canary_vs=CANARY_SOLUTION)
    assert outcome(q2, canary_vs=CANARY_SOLUTION) == first  # same seed, same YAML: same count


# -- q3: rewrite -----------------------------------------------------------------------------------

Q3_WRONG = [
    pytest.param(swap(REWRITE_SOLUTION, "rewrite:\n      uri: /ratings/\n    route:\n    - destination:\n"
                                        "        host: ratings\n        subset: v1\n",
                      "redirect:\n      uri: /ratings/0\n"), "a redirect", id="redirect"),
    pytest.param(without_route(REWRITE_SOLUTION, "  - name: default"), "no longer finds a route",
                 id="no-route-for-current-paths"),
    pytest.param(swap(REWRITE_SOLUTION, "uri: /ratings/", "uri: /ratings/0"),
                 "reached the ratings app as `/ratings/00`", id="rewrite-whole-path"),
    pytest.param(swap(REWRITE_SOLUTION, "prefix: /api/ratings/", "exact: /api/ratings/0"),
                 "reached the ratings app as `/ratings/`", id="exact-match"),
    pytest.param(swap(REWRITE_SOLUTION, "prefix: /api/ratings/", "prefix: /api/rating/x"),
                 "reached the ratings app unchanged", id="match-misses"),
    pytest.param(swap(REWRITE_SOLUTION, "subset: v1", "subset: v9"), "Referenced host+subset",
                 id="undefined-subset"),
]


def test_q3_accepts_the_solution() -> None:
    assert outcome(q3, rewrite_vs=REWRITE_SOLUTION)[0] == "correct"


@pytest.mark.parametrize(("answer", "expected"), Q3_WRONG)
def test_q3_rejects_wrong_answers_with_a_pointer(answer: str, expected: str) -> None:
    result, message = outcome(q3, rewrite_vs=answer)
    assert result == "incorrect", message
    assert expected in message
    assert "rewrite:" not in message and "prefix: /api/ratings/" not in message


def test_q3_blank_is_not_attempted() -> None:
    assert outcome(q3, rewrite_vs=swap(REWRITE_SOLUTION, "uri: /ratings/", "uri: ____"))[0] == "not_attempted"


# -- the playground ----------------------------------------------------------------------------------

def test_preview_shows_versions_per_user(capsys: pytest.CaptureFixture[str]) -> None:
    table = preview(JASON_SOLUTION, requests=5)
    assert table is not None
    assert table.to_dict() == {"v1": {"jason": 0, "another user (alice)": 5, "anonymous": 5},
                               "v2": {"jason": 5, "another user (alice)": 0, "anonymous": 0}}
    assert preview(swap(JASON_SOLUTION, "subset: v2", "subset: ____")) is None
    assert "Replace every ____" in capsys.readouterr().out


# -- the solution notebook and the YAML ----------------------------------------------------------------

def test_solution_notebook_answers_are_the_questions_solutions() -> None:
    assert solution_answers(SOLUTION_NB) == {"jason_vs": JASON_SOLUTION, "canary_vs": CANARY_SOLUTION,
                                             "rewrite_vs": REWRITE_SOLUTION}
    assert (q1._solution, q2._solution, q3._solution) == (JASON_SOLUTION, CANARY_SOLUTION, REWRITE_SOLUTION)


def test_learner_copy_has_blanks_and_no_answers() -> None:
    check_learner_copy(LEARNER_NB, blanks=3,
                       hidden=("exact: jason", "weight: 90", "prefix: /api/ratings/", "rewrite:"))


def test_destination_rules_are_istios_sample() -> None:
    docs = yaml_documents(istio_sample("destination-rule-all.yaml"))
    assert yaml_documents(DESTINATION_RULES) == docs


@needs_schema_check
def test_solution_yaml_passes_istios_schema(tmp_path: Path) -> None:
    output = schema_check(tmp_path, {**solution_answers(SOLUTION_NB), "destination_rules": DESTINATION_RULES})
    assert "7 Istio documents checked, 0 invalid" in output
