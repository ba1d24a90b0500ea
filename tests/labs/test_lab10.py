"""Lab 10 (circuit breaking): each question accepts the solution, rejects wrong answers with a message
that helps without giving the answer away, and reports a blank as not attempted.

The checks of q1 and q2 run a real mesh (httpbin, seeded), so these tests send real requests on
loopback. The solution YAML (in the solution notebook and in the questions) is also checked against
Istio's CRD schemas with ``../shared/tools/istio-schema-check`` when the shared folder is there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
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
from meshlab.labs.lab10 import (
    NUMBERS_SOLUTION,
    OUTLIER_SOLUTION,
    POOL_SOLUTION,
    most_at_once,
    q1,
    q2,
    q3,
    try_outlier,
    try_pool,
)

SOLUTION_NB, LEARNER_NB = notebooks("10-circuit-breaking")


# -- q1: a connection pool -------------------------------------------------------------------------

POOL_ONLY_REQUESTS = swap(POOL_SOLUTION, "      tcp:\n        maxConnections: 2\n      http:\n"
                                         "        http1MaxPendingRequests: 1\n",
                          "      http:\n        http2MaxRequests: 2\n")

Q1_WRONG = [
    pytest.param(swap(POOL_SOLUTION, "      http:\n        http1MaxPendingRequests: 1\n", ""),
                 "no request was refused", id="no-pending-limit"),
    pytest.param(swap(POOL_SOLUTION, "http1MaxPendingRequests: 1", "http1MaxPendingRequests: 10"),
                 "no request was refused", id="long-queue"),
    pytest.param(swap(POOL_SOLUTION, "http1MaxPendingRequests: 1", "http1MaxPendingRequests: 4"),
                 "waited in the caller's sidecar", id="queue-of-four"),
    pytest.param(swap(POOL_SOLUTION, "maxConnections: 2", "maxConnections: 5"),
                 "up to 5 requests were at httpbin", id="five-connections"),
    pytest.param(swap(POOL_SOLUTION, "      tcp:\n        maxConnections: 2\n", ""),
                 "up to 10 requests were at httpbin", id="pending-limit-only"),
    pytest.param(swap(POOL_SOLUTION, "    connectionPool:\n      tcp:\n        maxConnections: 2\n      http:\n"
                                     "        http1MaxPendingRequests: 1\n",
                      "    outlierDetection:\n      consecutive5xxErrors: 1\n"),
                 "sets no connection pool", id="outlier-detection-instead"),
    pytest.param(swap(POOL_SOLUTION, "host: httpbin", "host: ratings"), "does not apply to the calls to `httpbin`",
                 id="wrong-host"),
    pytest.param(swap(POOL_SOLUTION, "maxConnections: 2", "maxConnections: two"), "Istio would refuse",
                 id="not-a-number"),
    pytest.param(POOL_SOLUTION.replace("DestinationRule", "VirtualService"), "Istio would refuse",
                 id="wrong-kind"),
    pytest.param({"kind": "DestinationRule"}, "should be a string", id="not-a-string"),
]


def test_q1_accepts_the_solution() -> None:
    result, message = outcome(q1, pool_dr=POOL_SOLUTION)
    assert result == "correct", message
    assert message.startswith("httpbin never served more than 2 at once")


def test_q1_accepts_other_good_limits() -> None:
    assert outcome(q1, pool_dr=POOL_ONLY_REQUESTS)[0] == "correct"  # http2MaxRequests caps every request
    assert outcome(q1, pool_dr=swap(POOL_SOLUTION, "maxConnections: 2", "maxConnections: 1"))[0] == "correct"


@pytest.mark.parametrize(("answer", "expected"), Q1_WRONG)
def test_q1_rejects_wrong_answers_with_a_pointer(answer: Any, expected: str) -> None:
    result, message = outcome(q1, pool_dr=answer)
    assert result == "incorrect", message
    assert expected in message
    assert "maxConnections: 2" not in message and "http1MaxPendingRequests: 1" not in message


def test_q1_blank_and_missing_are_not_attempted() -> None:
    assert outcome(q1, pool_dr=swap(POOL_SOLUTION, "maxConnections: 2", "maxConnections: ____"))[0] == "not_attempted"
    assert outcome(q1, pool_dr=____)[0] == "not_attempted"
    assert outcome(q1)[0] == "not_attempted"  # no variable `pool_dr` anywhere


# -- q2: outlier detection -------------------------------------------------------------------------

Q2_WRONG = [
    pytest.param(swap(OUTLIER_SOLUTION, "consecutive5xxErrors: 3", "consecutive5xxErrors: 10"),
                 "only after 10 errors in a row", id="too-many-errors"),
    pytest.param(swap(OUTLIER_SOLUTION, "consecutive5xxErrors: 3", "consecutiveGatewayErrors: 3"),
                 "only after 5 errors in a row", id="gateway-errors-only"),
    pytest.param(swap(OUTLIER_SOLUTION, "baseEjectionTime: 2s", "baseEjectionTime: 30s"),
                 "not back", id="ejected-for-30s"),
    pytest.param(swap(OUTLIER_SOLUTION, "interval: 0.5s", "interval: 10s"), "not back", id="slow-sweeps"),
    pytest.param(swap(OUTLIER_SOLUTION, "baseEjectionTime: 2s", "baseEjectionTime: 1s"),
                 "should stay out about 2 s", id="back-too-early"),
    pytest.param(swap(OUTLIER_SOLUTION, "baseEjectionTime: 2s", "baseEjectionTime: 1.8s")
                 .replace("interval: 0.5s", "interval: 1.4s"), "only at a sweep", id="back-too-late"),
    pytest.param(swap(OUTLIER_SOLUTION, "      maxEjectionPercent: 50\n", ""),
                 "refused by the cap", id="default-max-ejection-percent"),
    pytest.param(swap(OUTLIER_SOLUTION, "maxEjectionPercent: 50", "maxEjectionPercent: 30"),
                 "30 % in your rule", id="cap-below-one-of-three"),
    pytest.param(swap(OUTLIER_SOLUTION, "    outlierDetection:\n      consecutive5xxErrors: 3\n      interval: 0.5s\n"
                                        "      baseEjectionTime: 2s\n      maxEjectionPercent: 50\n",
                      "    connectionPool:\n      tcp:\n        maxConnections: 3\n"),
                 "sets no outlier detection", id="connection-pool-instead"),
]


def test_q2_accepts_the_solution() -> None:
    result, message = outcome(q2, outlier_dr=OUTLIER_SOLUTION)
    assert result == "correct", message
    assert "httpbin-v2-0, and only it, was ejected" in message


@pytest.mark.parametrize(("answer", "expected"), Q2_WRONG)
def test_q2_rejects_wrong_answers_with_a_pointer(answer: str, expected: str) -> None:
    result, message = outcome(q2, outlier_dr=answer)
    assert result == "incorrect", message
    assert expected in message
    assert "consecutive5xxErrors: 3" not in message and "maxEjectionPercent: 50" not in message


def test_q2_blank_is_not_attempted() -> None:
    assert outcome(q2, outlier_dr=swap(OUTLIER_SOLUTION, "interval: 0.5s", "interval: ____"))[0] == "not_attempted"


# -- q3: numbers -------------------------------------------------------------------------------------

def test_q3_accepts_the_answer_in_several_spellings() -> None:
    for status, flag, seconds in [(503, "UO", 90), ("503", "uo", "90s"), (503.0, " UO ", "1m30s"), (503, "UO", 90.0)]:
        assert outcome(q3, refused_status=status, refused_flag=flag, third_ejection_s=seconds)[0] == "correct"


@pytest.mark.parametrize(("answers", "expected"), [
    pytest.param((429, "UO", 90), "rate limiter", id="429"),
    pytest.param((504, "UO", 90), "timeout", id="504"),
    pytest.param((500, "UO", 90), "not the status", id="500"),
    pytest.param(("five hundred", "UO", 90), "should be an HTTP status code", id="not-a-number"),
    pytest.param((503, "UH", 90), "no healthy upstream", id="flag-UH"),
    pytest.param((503, "URX", 90), "retry limit", id="flag-URX"),
    pytest.param((503, "overflow", 90), "two capital letters", id="flag-unknown"),
    pytest.param((503, "UO", 30), "first ejection", id="30s"),
    pytest.param((503, "UO", 60), "second ejection", id="60s"),
    pytest.param((503, "UO", 120), "does not double", id="doubling"),
    pytest.param((503, "UO", 100), "times the number of times", id="100s"),
    pytest.param((503, "UO", "a while"), "number of seconds", id="not-a-duration"),
])
def test_q3_rejects_wrong_answers_with_a_pointer(answers: tuple[Any, Any, Any], expected: str) -> None:
    status, flag, seconds = answers
    result, message = outcome(q3, refused_status=status, refused_flag=flag, third_ejection_s=seconds)
    assert result == "incorrect", message
    assert expected in message
    assert "503" not in message and "UO" not in message and "90" not in message


def test_q3_blank_is_not_attempted() -> None:
    assert outcome(q3, refused_status=503, refused_flag=____, third_ejection_s=90)[0] == "not_attempted"
    assert outcome(q3, refused_status=____, refused_flag="UO", third_ejection_s=____)[0] == "not_attempted"


# -- helpers and the playground ----------------------------------------------------------------------

def test_most_at_once_counts_overlaps() -> None:
    log = pd.DataFrame({"start_time": [0.0, 0.5, 1.0, 1.0, 3.0], "duration_ms": [1000.0, 1000.0, 500.0, 10.0, 1.0]})
    assert most_at_once(log) == 3  # at 1.0 the first ends as two start: an end comes first
    assert most_at_once(log.iloc[:0]) == 0


def test_playground_shows_numbers_and_handles_blanks(capsys: pytest.CaptureFixture[str]) -> None:
    table = try_pool(POOL_SOLUTION)
    assert table is not None
    assert table.loc[0, "most at httpbin at once"] == 2 and table.loc[0, "most admitted at once"] == 3
    assert table.loc[0, "refused at once"] > table.loc[0, "served (200)"] > 0
    events = try_outlier(OUTLIER_SOLUTION)
    assert events is not None and set(events["pod"]) == {"httpbin-v2-0"}
    assert try_pool(swap(POOL_SOLUTION, "maxConnections: 2", "maxConnections: ____")) is None
    assert try_outlier("not yaml") is None
    out = capsys.readouterr().out
    assert "Replace every ____" in out and "should hold a whole DestinationRule" in out


# -- the solution notebook and the YAML ----------------------------------------------------------------

def test_solution_notebook_answers_are_the_questions_solutions() -> None:
    numbers: dict[str, Any] = {}
    exec(NUMBERS_SOLUTION, numbers)  # noqa: S102 - our own constant
    assert solution_answers(SOLUTION_NB) == {"pool_dr": POOL_SOLUTION, "outlier_dr": OUTLIER_SOLUTION,
                                             "refused_status": numbers["refused_status"],
                                             "refused_flag": numbers["refused_flag"],
                                             "third_ejection_s": numbers["third_ejection_s"]}
    assert (q1._solution, q2._solution, q3._solution) == (POOL_SOLUTION, OUTLIER_SOLUTION, NUMBERS_SOLUTION)


def test_learner_copy_has_blanks_and_no_answers() -> None:
    check_learner_copy(LEARNER_NB, blanks=5,
                       hidden=("maxConnections", "http1MaxPendingRequests", "consecutive5xxErrors",
                               "baseEjectionTime: 2s", "= 503", "\\\"UO\\\"", "= 90"))


@needs_schema_check
def test_solution_yaml_passes_istios_schema(tmp_path: Path) -> None:
    answers = solution_answers(SOLUTION_NB)
    output = schema_check(tmp_path, {name: answers[name] for name in ("pool_dr", "outlier_dr")})
    assert "2 Istio documents checked, 0 invalid" in output
