"""Lab 14 (find the fault): every hidden fault is found by the solution from telemetry alone; wrong
answers get a pointer that does not give the answer away; blanks are not attempted.

The lab mesh runs the shop with real traffic (a few seconds per scenario); one mesh per scenario
is shared by the tests of that scenario.
"""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from labtools import (
    check_learner_copy,
    needs_schema_check,
    notebooks,
    outcome,
    schema_check,
    solution_regions,
)

from meshlab.labs import ____, lab14
from meshlab.labs.lab14 import SEED, SOLUTION_Q1, SOLUTION_Q2, q1, q2, start_lab

SOLUTION_NB, LEARNER_NB = notebooks("14-find-the-fault")

#: one seed per kind of fault (see lab14.SCENARIOS): seed -> (scenario, service, flag)
SEEDS = {SEED: ("no endpoints", "payment", "UH"), 5: ("crashed pod", "cart", "UF"),
         13: ("fault left on", "cart", "FI")}


def solve(mesh: Any) -> dict[str, Any]:
    """Run the two written solutions against ``mesh``; the variables they set."""
    ns: dict[str, Any] = {"mesh": mesh}
    exec(SOLUTION_Q1, ns)
    exec(SOLUTION_Q2, ns)
    return {k: ns[k] for k in ("faulty_workload", "response_flag", "checkout_p99_ms")}


@pytest.fixture(scope="module", params=sorted(SEEDS), ids=lambda s: SEEDS[s][0].replace(" ", "-"))
def lab(request: pytest.FixtureRequest):
    mesh = start_lab(request.param, quiet=True)
    try:
        yield request.param, mesh, solve(mesh)
    finally:
        mesh.stop()
        lab14._current = None


def test_seeds_cover_every_scenario() -> None:
    assert {lab14._pick(seed) for seed in SEEDS} == {(s, svc, f) for s, svc, f in SEEDS.values()}
    assert {s for s, _, _ in SEEDS.values()} == set(lab14.SCENARIOS)


def test_the_solution_finds_the_fault_from_telemetry(lab: tuple[int, Any, dict[str, Any]]) -> None:
    seed, _, answers = lab
    scenario, service, flag = SEEDS[seed]
    assert (answers["faulty_workload"], answers["response_flag"]) == (f"{service}-v1", flag)
    result, message = outcome(q1, faulty_workload=answers["faulty_workload"], response_flag=answers["response_flag"])
    assert result == "correct", message
    assert outcome(q2, checkout_p99_ms=answers["checkout_p99_ms"])[0] == "correct"


def test_q1_accepts_the_service_or_pod_name(lab: tuple[int, Any, dict[str, Any]]) -> None:
    seed, _, _ = lab
    scenario, service, flag = SEEDS[seed]
    assert outcome(q1, faulty_workload=service, response_flag=flag.lower())[0] == "correct"
    if scenario == "crashed pod":
        assert outcome(q1, faulty_workload=f"{service}-v1-1", response_flag=flag)[0] == "correct"


def test_q1_wrong_answers_point_without_telling(lab: tuple[int, Any, dict[str, Any]]) -> None:
    seed, _, _ = lab
    scenario, service, flag = SEEDS[seed]
    cases = [
        ("checkout-v1" if service != "checkout" else "login-v1", "URX", "retries ran out"),
        ("login-v1", flag, "The flag is right"),
        (f"{service}-v1", "UO", "not the flag the failed requests carry"),
        (f"{service}-v1", "-", "`-` means no flag"),
        (f"{service}-v1", "XYZ", "not one of Envoy's response flags"),
        ("curl", flag, "is the client"),
        ("nosuch-v1", flag, "not a workload of this mesh"),
    ]
    for workload, given_flag, expected in cases:
        result, message = outcome(q1, faulty_workload=workload, response_flag=given_flag)
        assert result == "incorrect", (workload, given_flag, message)
        assert expected in message, message
        assert service not in message.replace(workload, "") and f" {flag}" not in message.replace(given_flag, "")


def test_q1_a_consequence_is_not_the_cause() -> None:
    mesh = start_lab(SEED, quiet=True)  # payment scaled to zero: checkout fails because payment does
    try:
        result, message = outcome(q1, faulty_workload="checkout-v1", response_flag="UH")
        assert result == "incorrect" and "is it the cause" in message and "payment" not in message
        result, message = outcome(q1, faulty_workload="storefront-v1", response_flag="UH")
        assert result == "incorrect" and "no failure" in message
    finally:
        mesh.stop()
        lab14._current = None


def test_q2_tolerance_and_pointers(lab: tuple[int, Any, dict[str, Any]]) -> None:
    _, _, answers = lab
    p99 = float(answers["checkout_p99_ms"])
    assert outcome(q2, checkout_p99_ms=p99 * 1.05)[0] == "correct"
    assert outcome(q2, checkout_p99_ms=round(p99))[0] == "correct"
    result, message = outcome(q2, checkout_p99_ms=p99 / 1000)
    assert result == "incorrect" and "seconds" in message
    result, message = outcome(q2, checkout_p99_ms=p99 / 10)
    assert result == "incorrect" and "too low" in message
    result, message = outcome(q2, checkout_p99_ms=p99 * 10)
    assert result == "incorrect" and "too high" in message
    assert outcome(q2, checkout_p99_ms="fast")[0] == "incorrect"


def test_blanks_are_not_attempted_and_no_lab_is_incorrect() -> None:
    assert outcome(q1, faulty_workload=____, response_flag="UH")[0] == "not_attempted"
    assert outcome(q1)[0] == "not_attempted"
    assert outcome(q2, checkout_p99_ms=____)[0] == "not_attempted"
    saved, lab14._current = lab14._current, None
    try:
        result, message = outcome(q1, faulty_workload="cart-v1", response_flag="UF")
        assert result == "incorrect" and "start_lab()" in message
    finally:
        lab14._current = saved


def test_start_lab_replaces_the_previous_mesh() -> None:
    first = start_lab(SEED, duration=0.5, quiet=True)
    second = start_lab(SEED, duration=0.5, quiet=True)
    try:
        assert not first.running and second.running
    finally:
        second.stop()
        lab14._current = None


# -- the notebooks ---------------------------------------------------------------------------------

def test_solution_notebook_answers_are_the_questions_solutions() -> None:
    assert [code.strip() for code in solution_regions(SOLUTION_NB)] == [SOLUTION_Q1.strip(), SOLUTION_Q2.strip()]
    for region in solution_regions(SOLUTION_NB, learner_lines=True):
        ast.parse(region)


def test_learner_copy_has_blanks_and_no_answers() -> None:
    check_learner_copy(LEARNER_NB, blanks=3,
                       hidden=("str.contains(\\\"URX\\\")",
                               "service_summary(by=\\\"destination_workload\\\").set_index",
                               "payment-v1", "\\\"UH\\\""))


@needs_schema_check
def test_the_abort_yaml_passes_istios_schema(tmp_path: Path) -> None:
    schema_check(tmp_path, {"abort": lab14._abort_yaml("cart")})
