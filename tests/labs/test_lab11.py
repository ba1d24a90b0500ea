"""Lab 11 (mTLS migration): each question accepts the solution, rejects wrong answers with a message
that helps without giving the answer away, and reports a blank as not attempted.

The checks run a real mesh (httpbin services, seeded), so these tests send real requests on
loopback, plaintext and mTLS. The solution YAML (in the solution notebook and in the questions) and
the lab's own setup are also checked against Istio's CRD schemas with
``../shared/tools/istio-schema-check`` when the shared folder is there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from labtools import (
    check_learner_copy,
    needs_schema_check,
    notebooks,
    outcome,
    schema_check,
    solution_answers,
    solution_regions,
    swap,
)

from meshlab.control.ca import spiffe_of
from meshlab.labs import ____
from meshlab.labs.lab11 import (
    BROKEN_DR,
    CERT_SOLUTION,
    DR_SOLUTION,
    PAYMENTS_SETUP,
    STRICT_SOLUTION,
    mystery_certificate,
    preview,
    q1,
    q2,
    q3,
)

SOLUTION_NB, LEARNER_NB = notebooks("11-mtls-migration")


NAMESPACE_DOC, LEGACY_DOC = STRICT_SOLUTION.split("---\n")


def strict_for(*apps: str) -> str:
    """Workload-level STRICT policies, one per app (the namespace itself stays PERMISSIVE)."""
    return "---\n".join(
        f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: {app}\nspec:\n"
        f"  selector:\n    matchLabels:\n      app: {app}\n  mtls:\n    mode: STRICT\n" for app in apps)


# -- q1: STRICT namespace, legacy-api PERMISSIVE -------------------------------------------------------

Q1_WRONG = [
    pytest.param(swap(STRICT_SOLUTION, "  namespace: default\nspec:\n  mtls", "  namespace: istio-system\nspec:\n  mtls"),
                 "reaches the whole mesh", id="mesh-wide-strict"),
    pytest.param(NAMESPACE_DOC, "legacy-api refuses plaintext", id="no-exception"),
    pytest.param(swap(STRICT_SOLUTION, "app: legacy-api", "app: legacy"), "check the selector", id="wrong-label"),
    pytest.param(swap(STRICT_SOLUTION, "  namespace: default\nspec:\n  selector",
                      "  namespace: istio-system\nspec:\n  selector"), "legacy-api refuses plaintext",
                 id="exception-in-root-namespace"),
    pytest.param(swap(STRICT_SOLUTION, "mode: PERMISSIVE", "mode: DISABLE"), "switches mTLS off",
                 id="legacy-disable"),
    pytest.param(strict_for("orders", "catalog") + "---\n" + LEGACY_DOC, "deployed *after* your policies",
                 id="workload-by-workload"),
    pytest.param(LEGACY_DOC, "nothing makes namespace `default` STRICT", id="only-the-exception"),
    pytest.param(swap(STRICT_SOLUTION, "mode: STRICT", "mode: strict"), "Istio would refuse", id="lowercase-mode"),
    pytest.param(STRICT_SOLUTION + "---\n" + BROKEN_DR, "PeerAuthentication documents only", id="other-kind"),
    pytest.param(["STRICT"], "should be a string", id="not-a-string"),
]


def test_q1_accepts_the_solution() -> None:
    result, message = outcome(q1, strict_yaml=STRICT_SOLUTION)
    assert result == "correct", message
    assert "legacy-api accepts both plaintext and mTLS" in message


@pytest.mark.parametrize(("answer", "expected"), Q1_WRONG)
def test_q1_rejects_wrong_answers_with_a_pointer(answer: Any, expected: str) -> None:
    result, message = outcome(q1, strict_yaml=answer)
    assert result == "incorrect", message
    assert expected in message
    assert "mode: STRICT" not in message and "app: legacy-api" not in message  # no answer given away


def test_q1_blank_and_missing_are_not_attempted() -> None:
    assert outcome(q1, strict_yaml=swap(STRICT_SOLUTION, "mode: PERMISSIVE", "mode: ____"))[0] == "not_attempted"
    assert outcome(q1, strict_yaml='"""\n____\n"""')[0] == "not_attempted"
    assert outcome(q1)[0] == "not_attempted"  # no variable `strict_yaml` anywhere


# -- q2: the DestinationRule that sends plaintext to a STRICT workload -----------------------------------

WITHOUT_TLS = swap(DR_SOLUTION, "  trafficPolicy:\n    tls:\n      mode: ISTIO_MUTUAL\n", "")
SUBSET_DISABLE = swap(DR_SOLUTION, "      version: v1\n",
                      "      version: v1\n    trafficPolicy:\n      tls:\n        mode: DISABLE\n")

Q2_WRONG = [
    pytest.param(BROKEN_DR, "503 UC", id="unchanged"),
    pytest.param(SUBSET_DISABLE, "subsets included", id="subset-still-disable"),
    pytest.param(swap(DR_SOLUTION, "mode: ISTIO_MUTUAL", "mode: SIMPLE"), "certificates *you* provide",
                 id="simple"),
    pytest.param(DR_SOLUTION.split("  subsets:")[0], "flag `NC`", id="subsets-dropped"),
    pytest.param(swap(DR_SOLUTION, "name: payments", "name: payments-mtls"), "2 DestinationRules for payments",
                 id="second-rule"),
    pytest.param(swap(DR_SOLUTION, "host: payments", "host: orders"), "does not apply to the payments service",
                 id="wrong-host"),
    pytest.param(DR_SOLUTION + "---\n" + NAMESPACE_DOC, "a DestinationRule only", id="extra-document"),
]


def test_q2_accepts_the_solution_and_auto_mtls() -> None:
    result, message = outcome(q2, payments_dr=DR_SOLUTION)
    assert result == "correct", message
    assert "`ISTIO_MUTUAL` says it explicitly" in message
    result, message = outcome(q2, payments_dr=WITHOUT_TLS)
    assert result == "correct", message
    assert "auto mTLS" in message


@pytest.mark.parametrize(("answer", "expected"), Q2_WRONG)
def test_q2_rejects_wrong_answers_with_a_pointer(answer: str, expected: str) -> None:
    result, message = outcome(q2, payments_dr=answer)
    assert result == "incorrect", message
    assert expected in message
    assert "ISTIO_MUTUAL" not in message


def test_q2_blank_is_not_attempted() -> None:
    assert outcome(q2, payments_dr=swap(DR_SOLUTION, "mode: ISTIO_MUTUAL", "mode: ____"))[0] == "not_attempted"
    assert outcome(q2, payments_dr=____)[0] == "not_attempted"


# -- q3: reading a certificate -------------------------------------------------------------------------

GOOD_FACTS = {"trust_domain": "cluster.local", "namespace": "finance", "service_account": "ledger-writer",
              "rotation_after_hours": 12}

Q3_WRONG = [
    pytest.param({**GOOD_FACTS, "service_account": "ledger"}, "that is the *service* name", id="service-name"),
    pytest.param({**GOOD_FACTS, "namespace": "default"}, "the part after `/ns/`", id="wrong-namespace"),
    pytest.param({**GOOD_FACTS, "trust_domain": "spiffe://cluster.local"}, "no `spiffe://`", id="with-scheme"),
    pytest.param({**GOOD_FACTS, "trust_domain": "meshlab"}, "not the one in the certificate", id="issuer-org"),
    pytest.param({**GOOD_FACTS, "rotation_after_hours": 24}, "that is when the certificate expires", id="at-expiry"),
    pytest.param({**GOOD_FACTS, "rotation_after_hours": 19.2}, "default grace ratio", id="80-percent"),
    pytest.param({**GOOD_FACTS, "rotation_after_hours": "12h"}, "should be a number", id="not-a-number"),
    pytest.param({k: v for k, v in GOOD_FACTS.items() if k != "namespace"}, "missing: namespace", id="missing-key"),
    pytest.param("cluster.local/ns/finance", "should be a dict", id="not-a-dict"),
]


def test_q3_accepts_the_solution() -> None:
    result, message = outcome(q3, cert_facts=GOOD_FACTS)
    assert result == "correct", message
    assert outcome(q3, cert_facts={**GOOD_FACTS, "rotation_after_hours": 11.9})[0] == "correct"  # jitter


@pytest.mark.parametrize(("answer", "expected"), Q3_WRONG)
def test_q3_rejects_wrong_answers_with_a_pointer(answer: Any, expected: str) -> None:
    result, message = outcome(q3, cert_facts=answer)
    assert result == "incorrect", message
    assert expected in message
    assert "ledger-writer" not in message and "finance" not in message


def test_q3_blank_is_not_attempted() -> None:
    assert outcome(q3, cert_facts={**GOOD_FACTS, "namespace": ____})[0] == "not_attempted"
    assert outcome(q3, cert_facts=____)[0] == "not_attempted"


def test_q3_solution_code_computes_the_answer() -> None:
    namespace: dict[str, Any] = {"pem": mystery_certificate()}
    exec(CERT_SOLUTION, namespace)  # noqa: S102 - the lab's own solution code
    assert namespace["cert_facts"] == {**GOOD_FACTS, "rotation_after_hours": 12.0}


def test_mystery_certificate_is_a_workload_certificate() -> None:
    cert = x509.load_pem_x509_certificate(mystery_certificate())
    assert cert.subject.rfc4514_string() == ""
    assert spiffe_of(cert) == "spiffe://cluster.local/ns/finance/sa/ledger-writer"


# -- the playground ----------------------------------------------------------------------------------------

def test_preview_shows_modes_and_outcomes(capsys: pytest.CaptureFixture[str]) -> None:
    table = preview(STRICT_SOLUTION)
    assert table is not None
    assert table["mTLS mode"].to_dict() == {
        "orders.default": "STRICT", "catalog.default": "STRICT", "legacy-api.default": "PERMISSIVE",
        "payments.default": "STRICT", "reports.analytics": "PERMISSIVE"}
    assert list(table["plaintext client"]) == ["refused", "refused", "200", "refused", "200"]
    broken = preview(broken_payments=True)
    assert broken is not None
    assert broken.loc["payments.default", "client with a sidecar"] == "503 UC"
    assert preview(swap(STRICT_SOLUTION, "mode: STRICT", "mode: ____")) is None
    assert "Replace every ____" in capsys.readouterr().out


# -- the solution notebook and the YAML ------------------------------------------------------------------

def test_solution_notebook_answers_are_the_questions_solutions() -> None:
    assert solution_answers(SOLUTION_NB, strings_only=True) == {"strict_yaml": STRICT_SOLUTION,
                                                                 "payments_dr": DR_SOLUTION}
    assert solution_regions(SOLUTION_NB)[2] == CERT_SOLUTION
    assert (q1._solution, q2._solution, q3._solution) == (STRICT_SOLUTION, DR_SOLUTION, CERT_SOLUTION)


def test_learner_copy_has_blanks_and_no_answers() -> None:
    check_learner_copy(LEARNER_NB, blanks=6,
                       hidden=("ISTIO_MUTUAL", "ledger-writer", "24 * 0.5", "app: legacy-api", "BEGIN SOLUTION"))


@needs_schema_check
def test_solution_and_setup_yaml_pass_istios_schema(tmp_path: Path) -> None:
    texts = solution_answers(SOLUTION_NB, strings_only=True)
    output = schema_check(tmp_path, {**texts, "payments_setup": PAYMENTS_SETUP})
    assert "6 Istio documents checked, 0 invalid" in output
