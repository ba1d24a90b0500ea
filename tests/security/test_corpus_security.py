"""Istio's own validation corpus for the security kinds, applied to a running mesh.

``tests/config/test_config_corpus.py`` checks that every valid document loads and every invalid
one is rejected with Istio's reason. Here the valid PeerAuthentication, AuthorizationPolicy and
RequestAuthentication documents are *applied* to a mesh and compiled by pilot into what the
sidecars enforce, and requests still get a decision (no crash on any field Istio accepts);
the invalid ones are refused by ``mesh.apply`` and change nothing.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import pytest

from meshlab import Mesh
from meshlab.apps.httpbin import make_app
from meshlab.config import ConfigError
from meshlab.config.yaml_source import parse_yaml
from meshlab.security.authz import explain

CORPUS = Path(__file__).resolve().parents[2].parent / "shared" / "istio" / "validation-testdata"
FILES = {"AuthorizationPolicy": "authz", "PeerAuthentication": "peerauth", "RequestAuthentication": "reqauth"}

pytestmark = pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/istio/validation-testdata is missing")


def documents(suffix: str) -> list[dict[str, Any]]:
    out = []
    for kind, stem in FILES.items():
        path = CORPUS / f"{stem}-{suffix}.yaml"
        if path.exists():
            out += [d.data for d in parse_yaml(path.read_text(), str(path))
                    if isinstance(d.data, dict) and d.data.get("kind") == kind]
    return out


def test_valid_security_documents_are_applied_and_enforced(mesh: Mesh) -> None:
    valid = documents("valid")
    assert {d["kind"] for d in valid} >= {"AuthorizationPolicy", "PeerAuthentication"}
    mesh.deploy("httpbin", make_app(), labels={"foo": "bar"})
    mesh.deploy("client", make_app("client"), service_account="sa")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        applied = mesh.apply(valid)
    assert len(applied) == len(valid)
    snapshot = mesh.pilot.snapshot
    assert len(snapshot.extra["authz"]) == sum(d["kind"] == "AuthorizationPolicy" for d in valid)
    assert len(snapshot.extra["peer_auth"]) == sum(d["kind"] == "PeerAuthentication" for d in valid)
    # the corpus's "full" policy selects app=httpbin with conditions nothing satisfies; the
    # namespace-wide one allows only a few identities: the client workload is not among them
    r = mesh.call("httpbin", "/get", headers={"x-header": "header"})
    assert (r.status_code, r.text) == (403, "RBAC: access denied")
    d = explain(mesh, "curl", "httpbin")
    assert not d.allowed and d.action == "ALLOW"
    # ... but a workload running as service account "sa" in the policy's namespace is
    ok = explain(mesh, "client", "httpbin")
    assert ok.allowed and ok.policy == "default/service-account-and-namespace-principal-split"
    stats = mesh.stats("httpbin-v1-0", contains="rbac")
    assert dict(zip(stats["stat"], stats["value"], strict=True))["rbac.denied"] == 1


def test_invalid_security_documents_are_refused_and_change_nothing(mesh: Mesh) -> None:
    invalid = documents("invalid")
    assert invalid
    for doc in invalid:
        doc = {k: v for k, v in doc.items() if k != "_err"}
        with pytest.raises(ConfigError):
            mesh.apply(doc)
    assert mesh.config().empty
