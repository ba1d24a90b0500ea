"""Lab 06 (gateways): each question accepts its solution, rejects wrong answers with a helpful
message that does not give the answer away, and reports ``____`` as not attempted."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from meshlab.labs import BLANK
from meshlab.labs.core import Question
from meshlab.labs.lab06 import SOLUTION_Q1, SOLUTION_Q2, SOLUTION_Q3, q1, q2, q3

SCHEMA_CHECK = Path(__file__).resolve().parents[3] / "shared" / "tools" / "istio-schema-check"


def judge(question: Question, **answers: object) -> tuple[str, str]:
    """(outcome, message) of checking ``answers``, without printing."""
    result = question._evaluate(answers, None)
    return result.outcome, result.message


# -- q1: a Gateway + VirtualService for shop.example.com only ------------------------------------


def test_q1_accepts_the_solution() -> None:
    assert judge(q1, shop_yaml=SOLUTION_Q1)[0] == "correct"


def test_q1_accepts_a_wildcard_gateway_with_a_host_specific_virtual_service() -> None:
    gateway_for_all_hosts = SOLUTION_Q1.replace("    hosts:\n    - shop.example.com", '    hosts:\n    - "*"')
    assert gateway_for_all_hosts != SOLUTION_Q1
    assert judge(q1, shop_yaml=gateway_for_all_hosts)[0] == "correct"


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (SOLUTION_Q1.replace("- shop.example.com", '- "*"'), "Host: www.example.com"),
        (SOLUTION_Q1.replace("  gateways:\n  - shop-gateway\n", ""), "no `gateways` field"),
        (SOLUTION_Q1.replace("istio: ingressgateway", "istio: ingress"), "`selector`"),
        (SOLUTION_Q1.replace("  - shop-gateway", "  - bookinfo-gateway"), "does not name your Gateway"),
        (SOLUTION_Q1.replace("number: 9080", "number: 80"), "cluster that does not exist"),
        (SOLUTION_Q1.replace("host: productpage", "host: details"), "reached details"),
        (SOLUTION_Q1.replace("exact: /productpage", "exact: /product"), "no route of your VirtualService"),
        (SOLUTION_Q1.split("---")[0], "has no VirtualService"),
        (SOLUTION_Q1.split("---")[1], "has no Gateway"),
        (SOLUTION_Q1.replace("exact:", "exakt:"), "the mesh refused your YAML"),
        (42, "should be a string"),
    ],
)
def test_q1_rejects_wrong_answers_with_a_message(wrong: object, expected: str) -> None:
    outcome, message = judge(q1, shop_yaml=wrong)
    assert outcome == "incorrect"
    assert expected in message
    assert "ingressgateway" not in message  # the selector is part of the answer


def test_q1_blank_is_not_attempted() -> None:
    assert judge(q1, shop_yaml=BLANK)[0] == "not_attempted"
    assert judge(q1, shop_yaml=SOLUTION_Q1.replace("shop.example.com", "____"))[0] == "not_attempted"


# -- q2: only the API under /api/v1/products ------------------------------------------------------


def test_q2_accepts_the_solution() -> None:
    assert judge(q2, api_yaml=SOLUTION_Q2)[0] == "correct"


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (SOLUTION_Q2.replace("prefix: /api/v1/products", "exact: /api/v1/products"), "Which kind of `uri` match"),
        (SOLUTION_Q2.replace("prefix: /api/v1/products", "prefix: /"), "the HTML page should not be reachable"),
        (SOLUTION_Q1, "no route of your VirtualService matches the path /api/v1/products/0"),
        (SOLUTION_Q2.replace("- shop.example.com", '- "*"'), "Host: www.example.com"),
    ],
)
def test_q2_rejects_wrong_answers_with_a_message(wrong: str, expected: str) -> None:
    outcome, message = judge(q2, api_yaml=wrong)
    assert outcome == "incorrect"
    assert expected in message
    assert "prefix" not in message  # the kind of match is the answer


def test_q2_blank_is_not_attempted() -> None:
    assert judge(q2, api_yaml=BLANK)[0] == "not_attempted"


# -- q3: consistentHash on end-user ---------------------------------------------------------------


def test_q3_accepts_the_solution() -> None:
    outcome, message = judge(q3, sticky_yaml=SOLUTION_Q3)
    assert outcome == "correct", message


@pytest.mark.parametrize(
    ("wrong", "expected"),
    [
        (SOLUTION_Q3.replace("consistentHash:\n        httpHeaderName: end-user", "simple: ROUND_ROBIN"),
         "different pods"),
        (SOLUTION_Q3.replace("consistentHash:\n        httpHeaderName: end-user", "simple: LEAST_REQUEST"),
         "different pods"),
        (SOLUTION_Q3.replace("httpHeaderName: end-user", "httpHeaderName: x-user"), "different pods"),
        (SOLUTION_Q3.replace("httpHeaderName: end-user", "useSourceIp: true"), "landed on the same pod"),
        (SOLUTION_Q3.replace("host: productpage", "host: reviews"), "requests go to the productpage service"),
        (SOLUTION_Q1, "has no DestinationRule"),
    ],
)
def test_q3_rejects_wrong_answers_with_a_message(wrong: str, expected: str) -> None:
    outcome, message = judge(q3, sticky_yaml=wrong)
    assert outcome == "incorrect"
    assert expected in message
    assert "consistentHash" not in message and "httpHeaderName" not in message


def test_q3_blank_is_not_attempted() -> None:
    assert judge(q3, sticky_yaml=BLANK)[0] == "not_attempted"
    assert judge(q3, sticky_yaml=SOLUTION_Q3.replace("end-user", "____"))[0] == "not_attempted"


# -- the solutions are real Istio YAML -------------------------------------------------------------


@pytest.mark.skipif(not SCHEMA_CHECK.is_file(), reason="../shared/tools/istio-schema-check is not available")
def test_solutions_pass_istio_schema(tmp_path: Path) -> None:
    for name, solution in (("q1", SOLUTION_Q1), ("q2", SOLUTION_Q2), ("q3", SOLUTION_Q3)):
        (tmp_path / f"{name}.yaml").write_text(solution, encoding="utf-8")
    result = subprocess.run([sys.executable, str(SCHEMA_CHECK), str(tmp_path)], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 Istio documents checked, 0 invalid" in result.stdout, result.stdout
