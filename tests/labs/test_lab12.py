"""Lab 12 (least privilege): each question accepts the solution, rejects wrong answers with a
message that helps without giving the answer away, and reports a blank as not attempted.

The checks run a real mesh (Bookinfo, seeded) and send real requests from inside pods, so these
tests use loopback sockets. The solution YAML (in the solution notebook and in the questions)
is also checked against Istio's CRD schemas with ``../shared/tools/istio-schema-check`` when the
shared folder is there.
"""

from __future__ import annotations

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
from meshlab.labs.lab12 import (
    BOOKINFO_GATEWAY,
    DENY_BY_DEFAULT_SOLUTION,
    JWT_SOLUTION,
    RATINGS_SOLUTION,
    preview,
    q1,
    q2,
    q3,
)

SOLUTION_NB, LEARNER_NB = notebooks("12-least-privilege")

REVIEWS = "cluster.local/ns/default/sa/bookinfo-reviews"


def documents(text: str) -> list[str]:
    return [d.strip("\n") + "\n" for d in text.split("---\n")]


def without_document(text: str, name: str) -> str:
    """A multi-document YAML text without the document whose metadata names ``name``."""
    docs = documents(text)
    kept = [d for d in docs if f"name: {name}\n" not in d]
    assert len(kept) == len(docs) - 1, name
    return "---\n".join(kept)


# -- q1: ratings only from reviews, only GET ---------------------------------------------------------

DENY_OTHERS = f"""\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ratings-deny
spec:
  selector:
    matchLabels:
      app: ratings
  action: DENY
  rules:
  - from:
    - source:
        principals: ["{REVIEWS}"]
"""

Q1_WRONG = [
    pytest.param(swap(RATINGS_SOLUTION, "sa/bookinfo-reviews", "sa/reviews"), "No ALLOW rule matched it",
                 id="service-name-not-service-account"),
    pytest.param(swap(RATINGS_SOLUTION, '    to:\n    - operation:\n        methods: ["GET"]\n', ""),
                 "ratings let reviews in with POST, DELETE", id="any-method"),
    pytest.param(swap(RATINGS_SOLUTION, "app: ratings", "app: rating"), "every request to ratings got through",
                 id="selector-typo"),
    pytest.param(swap(RATINGS_SOLUTION, "  selector:\n    matchLabels:\n      app: ratings\n", ""),
                 "also refuse calls to other services", id="no-selector"),
    pytest.param(swap(RATINGS_SOLUTION, f'principals: ["{REVIEWS}"]', 'namespaces: ["default"]'),
                 "these requests to ratings got through: curl GET", id="namespace-instead-of-principal"),
    pytest.param(RATINGS_SOLUTION + "---\n" + DENY_OTHERS, "policy[ratings-deny]-rule[0]]`: a DENY rule matched it", id="deny-reviews-too"),
    pytest.param(swap(RATINGS_SOLUTION, "kind: AuthorizationPolicy", "kind: PeerAuthentication"),
                 "Istio would refuse", id="wrong-kind"),
    pytest.param(RATINGS_SOLUTION + "---\n" + BOOKINFO_GATEWAY.split("---\n")[0], "also has Gateway",
                 id="extra-kind"),
    pytest.param({"kind": "AuthorizationPolicy"}, "should be a string", id="not-a-string"),
]


def test_q1_accepts_the_solution() -> None:
    result, message = outcome(q1, ratings_policy=RATINGS_SOLUTION)
    assert result == "correct", message


@pytest.mark.parametrize(("answer", "expected"), Q1_WRONG)
def test_q1_rejects_wrong_answers_with_a_pointer(answer: Any, expected: str) -> None:
    result, message = outcome(q1, ratings_policy=answer)
    assert result == "incorrect", message
    assert expected in message
    assert "bookinfo-reviews" not in message and "methods:" not in message  # no answer given away


def test_q1_blank_and_missing_are_not_attempted() -> None:
    assert outcome(q1, ratings_policy=swap(RATINGS_SOLUTION, 'methods: ["GET"]', "methods: ____"))[0] == "not_attempted"
    assert outcome(q1, ratings_policy=____)[0] == "not_attempted"
    assert outcome(q1)[0] == "not_attempted"  # no variable `ratings_policy` anywhere


# -- q2: deny by default ----------------------------------------------------------------------------

Q2_WRONG = [
    pytest.param(without_document(DENY_BY_DEFAULT_SOLUTION, "allow-nothing"), "deny by default means",
                 id="no-default-deny"),
    pytest.param(documents(DENY_BY_DEFAULT_SOLUTION)[0], "the product page itself answered 403 for a user (curl). Refused: productpage -> details", id="allow-nothing-only"),
    pytest.param(without_document(DENY_BY_DEFAULT_SOLUTION, "reviews-viewer"),
                 "says its reviews are unavailable. Refused: productpage -> reviews.", id="no-reviews-viewer"),
    pytest.param(without_document(DENY_BY_DEFAULT_SOLUTION, "ratings-viewer"), "show no stars", id="no-ratings-viewer"),
    pytest.param(swap(DENY_BY_DEFAULT_SOLUTION, '        principals: ["cluster.local/ns/default/sa/bookinfo-productpage"]\n'
                      '    to:\n    - operation:\n        methods: ["GET"]\n---\napiVersion: security.istio.io/v1\n'
                      'kind: AuthorizationPolicy\nmetadata:\n  name: reviews-viewer',
                      '        namespaces: ["default"]\n    to:\n    - operation:\n        methods: ["GET"]\n---\n'
                      'apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: reviews-viewer'),
                 "these calls got through, but Bookinfo never makes them: curl -> details", id="details-by-namespace"),
    pytest.param(DENY_BY_DEFAULT_SOLUTION.replace('    to:\n    - operation:\n        methods: ["GET"]\n', ""),
                 "requests other than GET got through", id="any-method"),
    pytest.param(swap(DENY_BY_DEFAULT_SOLUTION, "name: allow-nothing\n  namespace: default",
                      "name: allow-nothing\n  namespace: istio-system"),
                 "through the ingress gateway", id="allow-nothing-in-root-namespace"),
]


def test_q2_accepts_the_solution() -> None:
    result, message = outcome(q2, deny_by_default=DENY_BY_DEFAULT_SOLUTION)
    assert result == "correct", message


@pytest.mark.parametrize(("answer", "expected"), Q2_WRONG)
def test_q2_rejects_wrong_answers_with_a_pointer(answer: str, expected: str) -> None:
    result, message = outcome(q2, deny_by_default=answer)
    assert result == "incorrect", message
    assert expected in message
    assert "spec: {}" not in message and "bookinfo-productpage" not in message


def test_q2_accepts_an_equivalent_answer() -> None:
    # productpage opened to the users only (curl and the ingress gateway), not to every caller
    users_only = swap(DENY_BY_DEFAULT_SOLUTION, "  rules:\n  - to:\n",
                      '  rules:\n  - from:\n    - source:\n        principals: ["cluster.local/ns/default/sa/curl", '
                      '"cluster.local/ns/istio-system/sa/istio-ingressgateway-service-account"]\n    to:\n')
    result, message = outcome(q2, deny_by_default=users_only)
    assert result == "correct", message


def test_q2_blank_is_not_attempted() -> None:
    assert outcome(q2, deny_by_default=swap(DENY_BY_DEFAULT_SOLUTION, "spec: {}", "spec: ____"))[0] == "not_attempted"


# -- q3: require a JWT ------------------------------------------------------------------------------

Q3_WRONG = [
    pytest.param(documents(JWT_SOLUTION)[0], "a RequestAuthentication only rejects tokens that are present",
                 id="request-authentication-only"),
    pytest.param(documents(JWT_SOLUTION)[1], "nothing validates tokens for productpage", id="authorization-only"),
    pytest.param(swap(JWT_SOLUTION, "https://auth.meshlab.dev/.well-known/jwks.json",
                      "https://auth.meshlab.dev/keys.json"), "Jwks doesn't have key to match kid", id="wrong-jwks-uri"),
    pytest.param(swap(JWT_SOLUTION, 'issuer: "https://auth.meshlab.dev"', 'issuer: "auth.meshlab.dev"'),
                 "Jwt issuer is not configured", id="wrong-issuer"),
    pytest.param(swap(JWT_SOLUTION, 'requestPrincipals: ["https://auth.meshlab.dev/*"]', 'principals: ["*"]'),
                 "`principals` are workload identities", id="principals-instead-of-request-principals"),
    pytest.param(swap(JWT_SOLUTION, "spec:\n  selector:\n    matchLabels:\n      app: productpage\n  action: ALLOW",
                      "spec:\n  action: ALLOW"), "productpage does not pass the token on", id="policy-for-namespace"),
]


def test_q3_accepts_the_solution() -> None:
    result, message = outcome(q3, jwt_policy=JWT_SOLUTION)
    assert result == "correct", message


def test_q3_accepts_a_deny_without_request_principal() -> None:
    deny = swap(swap(JWT_SOLUTION, "action: ALLOW", "action: DENY"), "requestPrincipals:", "notRequestPrincipals:")
    result, message = outcome(q3, jwt_policy=deny)
    assert result == "correct", message


@pytest.mark.parametrize(("answer", "expected"), Q3_WRONG)
def test_q3_rejects_wrong_answers_with_a_pointer(answer: str, expected: str) -> None:
    result, message = outcome(q3, jwt_policy=answer)
    assert result == "incorrect", message
    assert expected in message
    assert "requestPrincipals" not in message and ".well-known" not in message


def test_q3_blank_is_not_attempted() -> None:
    assert outcome(q3, jwt_policy=swap(JWT_SOLUTION, "requestPrincipals: [", "requestPrincipals: [____")
                   )[0] == "not_attempted"


# -- the playground ----------------------------------------------------------------------------------

def test_preview_shows_who_can_call_whom(capsys: pytest.CaptureFixture[str]) -> None:
    table = preview(RATINGS_SOLUTION)
    assert table is not None
    assert table["ratings"].to_dict() == {"curl": 403, "productpage": 403, "details": 403, "reviews": 200,
                                          "ratings": 403, "(no sidecar)": 403}
    assert (table.drop(columns="ratings") == 200).all().all()
    assert preview(swap(RATINGS_SOLUTION, "app: ratings", "app: ____")) is None
    assert "Replace every ____" in capsys.readouterr().out


# -- the solution notebook and the YAML ----------------------------------------------------------------

def test_solution_notebook_answers_are_the_questions_solutions() -> None:
    assert solution_answers(SOLUTION_NB) == {"ratings_policy": RATINGS_SOLUTION,
                                             "deny_by_default": DENY_BY_DEFAULT_SOLUTION, "jwt_policy": JWT_SOLUTION}
    assert (q1._solution, q2._solution, q3._solution) == (RATINGS_SOLUTION, DENY_BY_DEFAULT_SOLUTION, JWT_SOLUTION)


def test_learner_copy_has_blanks_and_no_answers() -> None:
    check_learner_copy(LEARNER_NB, blanks=3,
                       hidden=("sa/bookinfo-reviews", "spec: {}", "requestPrincipals", "jwksUri:", "methods:"))


def test_bookinfo_gateway_is_istios_sample() -> None:
    docs = yaml_documents(istio_sample("bookinfo-gateway.yaml"))
    assert yaml_documents(BOOKINFO_GATEWAY) == docs


@needs_schema_check
def test_solution_yaml_passes_istios_schema(tmp_path: Path) -> None:
    output = schema_check(tmp_path, {**solution_answers(SOLUTION_NB), "gateway": BOOKINFO_GATEWAY})
    assert "10 Istio documents checked, 0 invalid" in output
