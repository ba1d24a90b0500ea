"""AuthorizationPolicy: matching semantics and precedence with the pure ``evaluate``, then the
RBAC filter in a running mesh (403 body, response details, counters) and ``explain``/``matrix``.

Principals below are as Istio writes them: SPIFFE ids without ``spiffe://``.
"""

from __future__ import annotations

import warnings
from typing import Any

import pytest

from meshlab import Mesh
from meshlab.apps.httpbin import make_app
from meshlab.config import load
from meshlab.security.authz import (
    AuthzPolicy,
    RequestAttributes,
    compile_authorization_policies,
    evaluate,
    explain,
    matrix,
    normalize_path,
    policies_for,
    value_matches,
)

CURL = "cluster.local/ns/default/sa/curl"
PRODUCTPAGE = "cluster.local/ns/default/sa/productpage"
FOO_ADMIN = "cluster.local/ns/foo/sa/admin"


def policies(text: str) -> list[AuthzPolicy]:
    """Compile AuthorizationPolicy YAML (several documents allowed; namespace ``default`` unless set)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return compile_authorization_policies(load(text))


def policy(name: str, spec: str, namespace: str = "default", annotations: str = "") -> str:
    meta = f"{{name: {name}, namespace: {namespace}{', annotations: ' + annotations if annotations else ''}}}"
    return f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {meta}\nspec:\n{spec}\n---\n"


def req(**kw: Any) -> RequestAttributes:
    kw.setdefault("source_principal", CURL)
    kw.setdefault("host", "httpbin")
    return RequestAttributes(**kw)


ALLOW_CURL_GET = policy("allow-curl", """
  rules:
  - from: [{source: {principals: ["cluster.local/ns/default/sa/curl"]}}]
    to: [{operation: {methods: ["GET"]}}]""")
DENY_ADMIN = policy("deny-admin", """
  action: DENY
  rules:
  - to: [{operation: {paths: ["/admin*"]}}]""")


# ---------------------------------------------------------------------------- precedence

def test_no_policy_allows_everything() -> None:
    d = evaluate([], req(source_principal=None, path="/anything"))
    assert d.allowed and d.action == "NONE" and d.policy is None and d.status == 200


def test_allow_policy_requires_a_match() -> None:
    ps = policies(ALLOW_CURL_GET)
    ok = evaluate(ps, req(method="GET"))
    assert ok.allowed and ok.policy == "default/allow-curl" and ok.rule == 0 and ok.action == "ALLOW"
    no = evaluate(ps, req(method="POST"))
    assert not no.allowed and no.status == 403 and no.policy is None
    assert no.details == "rbac_access_denied_matched_policy[none]"
    assert "methods: 'POST' not in ['GET']" in no.reason


def test_deny_beats_allow() -> None:
    ps = policies(ALLOW_CURL_GET + DENY_ADMIN)
    d = evaluate(ps, req(path="/admin/users"))
    assert not d.allowed and d.action == "DENY" and d.policy == "default/deny-admin" and d.rule == 0
    assert d.details == "rbac_access_denied_matched_policy[ns[default]-policy[deny-admin]-rule[0]]"
    assert evaluate(ps, req(path="/status/200")).allowed


def test_deny_alone_leaves_everything_else_allowed() -> None:
    ps = policies(DENY_ADMIN)
    assert evaluate(ps, req(source_principal=None, method="DELETE", path="/x")).allowed
    assert not evaluate(ps, req(source_principal=None, path="/admin")).allowed


def test_allow_nothing_denies_everything_but_other_allow_policies_still_count() -> None:
    nothing = policy("allow-nothing", "  {}")
    assert not evaluate(policies(nothing), req()).allowed
    assert not evaluate(policies(nothing), req(source_principal=None)).allowed
    # allow-nothing plus a matching ALLOW policy: one ALLOW match is enough
    both = policies(nothing + ALLOW_CURL_GET)
    assert evaluate(both, req()).allowed
    assert not evaluate(both, req(method="PUT")).allowed


def test_empty_rule_matches_everything() -> None:
    assert evaluate(policies(policy("allow-all", "  rules: [{}]")), req(source_principal=None)).allowed
    deny_all = policies(policy("deny-all", "  action: DENY\n  rules: [{}]") + ALLOW_CURL_GET)
    d = evaluate(deny_all, req())
    assert not d.allowed and d.policy == "default/deny-all"


def test_audit_never_changes_the_decision() -> None:
    audit = policy("audit-get", "  action: AUDIT\n  rules: [{to: [{operation: {methods: [GET]}}]}]")
    d = evaluate(policies(audit), req())
    assert d.allowed and d.action == "NONE" and d.logged == ("default/audit-get rule 0",)
    d = evaluate(policies(audit + policy("allow-nothing", "  {}")), req())
    assert not d.allowed and d.logged == ("default/audit-get rule 0",)
    assert evaluate(policies(audit), req(method="POST")).logged == ()


def test_custom_is_skipped_with_a_note_and_a_config_warning() -> None:
    text = policy("ext", "  action: CUSTOM\n  provider: {name: opa}\n  rules: [{}]")
    with warnings.catch_warnings(record=True):
        warnings.simplefilter("always")
        [resource] = load(text)
    assert any("not simulated" in w for w in resource.warnings)
    d = evaluate(compile_authorization_policies([resource]), req())
    assert d.allowed and d.action == "NONE"
    assert any("CUSTOM" in n and "not simulated" in n for n in d.notes)


def test_dry_run_policies_are_reported_not_enforced() -> None:
    dry = '{"istio.io/dry-run": "true"}'
    ps = policies(policy("deny-get", "  action: DENY\n  rules: [{to: [{operation: {methods: [GET]}}]}]", annotations=dry)
                  + policy("allow-post", "  rules: [{to: [{operation: {methods: [POST]}}]}]", annotations=dry))
    d = evaluate(ps, req(method="GET"))
    assert d.allowed and d.action == "NONE"
    assert d.shadow == ("would deny: dry-run DENY policy default/deny-get rule 0 matched",
                        "would deny: no dry-run ALLOW policy matched")
    assert set(d.shadow_stats) == {"istio_dry_run_deny_shadow_denied", "istio_dry_run_allow_shadow_denied"}
    d = evaluate(ps, req(method="POST"))
    assert set(d.shadow_stats) == {"istio_dry_run_deny_shadow_allowed", "istio_dry_run_allow_shadow_allowed"}


def test_envoy_reports_the_lowest_policy_id() -> None:
    ps = policies(policy("deny-b", "  action: DENY\n  rules: [{}]") + policy("deny-a", "  action: DENY\n  rules: [{}]"))
    assert evaluate(ps, req()).policy == "default/deny-a"


# ---------------------------------------------------------------------------- selection

def test_selection_root_namespace_namespace_and_selector() -> None:
    ps = policies(
        policy("mesh-wide", "  action: DENY\n  rules: [{to: [{operation: {paths: [/mesh]}}]}]", "istio-system")
        + policy("root-selector", "  selector: {matchLabels: {app: reviews}}\n  action: DENY\n  rules: [{}]",
                 "istio-system")
        + policy("ns-wide", "  action: AUDIT\n  rules: [{}]", "foo")
        + policy("for-httpbin", "  selector: {matchLabels: {app: httpbin}}\n  rules: [{}]", "foo")
        + policy("other-ns", "  rules: [{}]", "bar")
        + policy("ref", "  targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]\n"
                        "  rules: [{}]", "foo")
    )
    names = [p.name for p in policies_for(ps, "foo", {"app": "httpbin", "version": "v1"})]
    assert names == ["mesh-wide", "ns-wide", "for-httpbin", "ref"]
    assert [p.name for p in policies_for(ps, "bar", {"app": "reviews"})] == ["mesh-wide", "root-selector",
                                                                              "other-ns"]
    # a targetRef policy attaches to gateways/waypoints, never to a sidecar: skipped with a note
    d = evaluate([p for p in ps if p.name == "ref"], req())
    assert d.allowed and d.action == "NONE" and "targetRef" in d.notes[0]


# ---------------------------------------------------------------------------- matching

def test_value_matching_forms() -> None:
    assert value_matches("abc*", "abcdef") and not value_matches("abc*", "xabc")
    assert value_matches("*def", "abcdef") and not value_matches("*def", "defx")
    assert value_matches("*", "") and not value_matches("*", None)
    assert value_matches("exact", "exact") and not value_matches("exact", "exactly")


def test_principals_need_mtls_and_notprincipals_match_plaintext() -> None:
    ps = policies(policy("any-peer", "  rules: [{from: [{source: {principals: ['*']}}]}]"))
    assert evaluate(ps, req()).allowed
    assert not evaluate(ps, req(source_principal=None)).allowed
    ps = policies(policy("deny-not-curl", "  action: DENY\n  rules: [{from: [{source: {notPrincipals: ["
                                          "'cluster.local/ns/default/sa/curl']}}]}]"))
    assert evaluate(ps, req()).allowed
    assert not evaluate(ps, req(source_principal=PRODUCTPAGE)).allowed
    assert not evaluate(ps, req(source_principal=None)).allowed  # no principal is "not curl" too


def test_principal_prefix_suffix_and_namespaces_from_the_principal() -> None:
    ps = policies(policy("p", "  rules: [{from: [{source: {principals: ['cluster.local/ns/foo/*']}}]}]"))
    assert evaluate(ps, req(source_principal=FOO_ADMIN)).allowed
    assert not evaluate(ps, req()).allowed
    ps = policies(policy("p", "  rules: [{from: [{source: {principals: ['*/sa/curl']}}]}]"))
    assert evaluate(ps, req()).allowed
    ps = policies(policy("n", "  rules: [{from: [{source: {namespaces: [foo]}}]}]"))
    assert evaluate(ps, req(source_principal=FOO_ADMIN)).allowed
    assert not evaluate(ps, req()).allowed
    assert not evaluate(ps, req(source_principal=None)).allowed  # namespaces need mTLS
    ps = policies(policy("n", "  rules: [{from: [{source: {notNamespaces: [foo]}}]}]"))
    assert evaluate(ps, req()).allowed and not evaluate(ps, req(source_principal=FOO_ADMIN)).allowed


def test_service_accounts_and_trust_domains() -> None:
    ps = policies(policy("sa", "  rules: [{from: [{source: {serviceAccounts: [curl, foo/admin]}}]}]"))
    assert evaluate(ps, req()).allowed and evaluate(ps, req(source_principal=FOO_ADMIN)).allowed
    assert not evaluate(ps, req(source_principal="cluster.local/ns/bar/sa/curl")).allowed
    ps = policies(policy("td", "  rules: [{from: [{source: {trustDomains: [other.domain]}}]}]"))
    assert not evaluate(ps, req()).allowed
    assert evaluate(ps, req(source_principal="other.domain/ns/default/sa/curl")).allowed


def test_fields_are_anded_values_ored_entries_ored() -> None:
    ps = policies(policy("p", """
  rules:
  - from:
    - source: {principals: ["cluster.local/ns/default/sa/curl"], namespaces: [default]}
    - source: {namespaces: [foo]}
    to:
    - operation: {methods: [GET, HEAD], paths: ["/get"]}
    - operation: {methods: [POST], paths: ["/post"]}"""))
    assert evaluate(ps, req(method="HEAD", path="/get")).allowed
    assert evaluate(ps, req(source_principal=FOO_ADMIN, method="POST", path="/post")).allowed
    assert not evaluate(ps, req(method="POST", path="/get")).allowed  # fields of one operation are ANDed
    assert not evaluate(ps, req(source_principal=PRODUCTPAGE, method="GET", path="/get")).allowed


def test_hosts_are_case_insensitive_and_exact_hosts_do_not_match_ports() -> None:
    ps = policies(policy("h", "  rules: [{to: [{operation: {hosts: [httpbin.example.com]}}]}]"))
    assert evaluate(ps, req(host="HTTPBIN.Example.COM")).allowed
    assert not evaluate(ps, req(host="httpbin.example.com:80")).allowed  # Istio's well-known gotcha
    ps = policies(policy("h", "  rules: [{to: [{operation: {hosts: ['httpbin.example.com:*', '*.svc']}}]}]"))
    assert evaluate(ps, req(host="httpbin.example.com:8000")).allowed
    assert evaluate(ps, req(host="reviews.default.SVC")).allowed


def test_ports_and_not_forms() -> None:
    ps = policies(policy("p", "  rules: [{to: [{operation: {ports: ['9080'], notMethods: [DELETE]}}]}]"))
    assert evaluate(ps, req(port=9080)).allowed
    assert not evaluate(ps, req(port=80)).allowed
    assert not evaluate(ps, req(port=9080, method="DELETE")).allowed


def test_paths_without_query_normalized_and_templates() -> None:
    ps = policies(policy("p", "  rules: [{to: [{operation: {paths: ['/public/*', '/api/{*}/info', "
                               "'/files/{**}/raw', '*.json']}}]}]"))
    allowed = ["/public/a?x=/admin", "/api/v1/info", "/files/a/b/c/raw", "/data/x.json", "/admin/../public/x"]
    denied = ["/api/v1/v2/info", "/admin", "/public/../admin", "/files/raw2"]
    assert [p for p in allowed if not evaluate(ps, req(path=p)).allowed] == []
    assert [p for p in denied if evaluate(ps, req(path=p)).allowed] == []
    assert normalize_path("/a/./b/../c?q=1") == "/a/c"


def test_ip_blocks() -> None:
    ps = policies(policy("ip", "  rules: [{from: [{source: {ipBlocks: ['10.0.0.0/8', 127.0.0.1], "
                                "notIpBlocks: [10.1.2.3]}}]}]"))
    assert evaluate(ps, req(source_ip="10.4.5.6")).allowed and evaluate(ps, req()).allowed
    assert not evaluate(ps, req(source_ip="10.1.2.3")).allowed
    assert not evaluate(ps, req(source_ip="192.168.1.1")).allowed
    ps = policies(policy("remote", "  rules: [{from: [{source: {remoteIpBlocks: ['203.0.113.0/24']}}]}]"))
    assert evaluate(ps, req(remote_ip="203.0.113.9")).allowed and not evaluate(ps, req()).allowed


def test_request_principals_and_claims_conditions() -> None:
    ps = policies(policy("jwt", """
  rules:
  - from: [{source: {requestPrincipals: ["https://auth.meshlab.dev/*"]}}]
    when:
    - {key: "request.auth.claims[groups]", values: [admin]}
    - {key: "request.auth.claims[org][team]", values: ["mesh*"]}
    - {key: "request.auth.audiences", values: [bookinfo]}
    - {key: "request.auth.presenter", notValues: [evil-app]}"""))
    claims = {"iss": "https://auth.meshlab.dev", "sub": "alice", "groups": ["dev", "admin"],
              "org": {"team": "meshlab"}, "aud": ["bookinfo", "other"], "azp": "web"}
    good = req(request_principal="https://auth.meshlab.dev/alice", claims=claims)
    assert evaluate(ps, good).allowed
    assert not evaluate(ps, req(request_principal=None, claims=None)).allowed
    for change in ({"groups": ["dev"]}, {"org": {"team": "web"}}, {"aud": "nope"}, {"azp": "evil-app"}):
        d = evaluate(ps, req(request_principal="https://auth.meshlab.dev/alice", claims={**claims, **change}))
        assert not d.allowed, change
        assert "when:" in d.reason
    star = policies(policy("any-jwt", "  rules: [{from: [{source: {requestPrincipals: ['*']}}]}]"))
    assert evaluate(star, good).allowed and not evaluate(star, req()).allowed


def test_when_headers_source_and_destination() -> None:
    ps = policies(policy("w", """
  rules:
  - when:
    - {key: "request.headers[X-Env]", values: ["prod*"], notValues: [prod-legacy]}
    - {key: source.namespace, values: [default]}
    - {key: source.principal, values: ["*/sa/curl"]}
    - {key: destination.port, values: ["80"]}
    - {key: source.ip, values: [127.0.0.0/8]}"""))
    assert evaluate(ps, req(headers={"x-env": "prod-eu"})).allowed
    assert not evaluate(ps, req(headers={"x-env": "prod-legacy"})).allowed
    assert not evaluate(ps, req(headers={})).allowed
    assert not evaluate(ps, req(headers={"x-env": "prod"}, port=9080)).allowed
    exp = policies(policy("e", "  rules: [{when: [{key: 'experimental.envoy.filters.a.b[c]', values: ['*']}]}]"))
    assert not evaluate(exp, req()).allowed  # attributes meshlab does not produce are never present


def test_evaluate_accepts_resources_directly() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resources = load(DENY_ADMIN)
    assert not evaluate(resources, req(path="/admin")).allowed


# ---------------------------------------------------------------------------- in a mesh

def test_rbac_filter_in_the_mesh(mesh: Mesh) -> None:
    mesh.deploy("httpbin", make_app())
    mesh.deploy("sleep", make_app("sleep"))
    mesh.apply(ALLOW_CURL_GET.replace("spec:\n", "spec:\n  selector: {matchLabels: {app: httpbin}}\n", 1)
               + DENY_ADMIN.replace("/admin*", "/status/418"))
    assert mesh.call("httpbin", "/get").status_code == 200
    r = mesh.call("httpbin", "/anything", method="POST")
    assert (r.status_code, r.text) == (403, "RBAC: access denied")
    assert mesh.call("httpbin", "/status/418").status_code == 403
    assert mesh.call("httpbin", "/get", sidecar=False).status_code == 403  # plaintext: no principal
    assert mesh.call("sleep", "/get").status_code == 200  # the ALLOW policy selects httpbin only
    log = mesh.access_log(service="httpbin", reporter="destination")
    assert list(log["response_code_details"]) == [
        "via_upstream", "rbac_access_denied_matched_policy[none]",
        "rbac_access_denied_matched_policy[ns[default]-policy[deny-admin]-rule[0]]",
        "rbac_access_denied_matched_policy[none]"]
    client_side = mesh.access_log(service="httpbin", reporter="source")
    assert list(client_side["response_code"]) == [200, 403, 403]  # the client sidecar sees the 403 too
    stats = dict(zip(mesh.stats("httpbin-v1-0", contains="rbac")["stat"],
                     mesh.stats("httpbin-v1-0", contains="rbac")["value"], strict=True))
    assert stats == {"rbac.allowed": 1, "rbac.denied": 3, "rbac.policy.default.allow-curl.allowed": 1,
                     "rbac.policy.default.deny-admin.denied": 1}
    # a change of policy applies to the next request
    mesh.delete("AuthorizationPolicy", "allow-curl")
    assert mesh.call("httpbin", "/anything", method="POST").status_code == 200


def test_explain_and_matrix_without_sending(mesh: Mesh) -> None:
    mesh.deploy("productpage", make_app("productpage"))
    mesh.deploy("reviews", make_app("reviews"))
    mesh.deploy("ratings", make_app("ratings"))
    mesh.apply(policy("reviews", """
  selector: {matchLabels: {app: reviews}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/productpage"]}}]}]""")
               + policy("ratings", """
  selector: {matchLabels: {app: ratings}}
  rules: [{from: [{source: {principals: ["cluster.local/ns/default/sa/reviews"]}}],
           to: [{operation: {methods: [GET]}}]}]"""))
    before = len(mesh.access_log())
    d = explain(mesh, "productpage", "reviews", path="/reviews/0")
    assert d.allowed and d.policy == "default/reviews"
    d = explain(mesh, "curl", "reviews")
    assert not d.allowed and "cluster.local/ns/default/sa/curl" in d.reason
    assert not explain(mesh, "reviews", "ratings", method="POST").allowed
    assert not explain(mesh, None, "reviews").allowed  # no sidecar: plaintext, no principal
    m = matrix(mesh)
    assert list(m.index) == ["curl", "productpage", "ratings", "reviews"]
    assert m.to_dict() == {
        "productpage": {"curl": True, "productpage": True, "ratings": True, "reviews": True},
        "ratings": {"curl": False, "productpage": False, "ratings": False, "reviews": True},
        "reviews": {"curl": False, "productpage": True, "ratings": False, "reviews": False},
    }
    assert len(mesh.access_log()) == before  # nothing was sent
    # the evaluation agrees with what the sidecars do
    assert mesh.call("reviews", "/").status_code == 403 and mesh.call("productpage", "/").status_code == 200


def test_explain_sees_strict_mtls_refusing_plaintext(mesh: Mesh) -> None:
    mesh.deploy("httpbin", make_app())
    mesh.apply("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
               "metadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n")
    d = explain(mesh, None, "httpbin")
    assert not d.allowed and d.action == "PeerAuthentication" and "STRICT" in d.reason and d.status == 0
    assert explain(mesh, "curl", "httpbin").allowed


@pytest.mark.parametrize("action", ["ALLOW", "DENY"])
def test_audit_and_dry_run_are_counted_in_the_mesh(mesh: Mesh, action: str) -> None:
    mesh.deploy("httpbin", make_app())
    dry = '{"istio.io/dry-run": "true"}'
    mesh.apply(policy("audit", "  action: AUDIT\n  rules: [{to: [{operation: {paths: ['/get']}}]}]")
               + policy("trial", f"  action: {action}\n  rules: [{{to: [{{operation: {{paths: ['/get']}}}}]}}]",
                        annotations=dry))
    assert [mesh.call("httpbin", p).status_code for p in ("/get", "/ip")] == [200, 200]
    stats = dict(zip(*(mesh.stats("httpbin-v1-0", contains="rbac")[c] for c in ("stat", "value")), strict=True))
    kind = action.lower()
    assert stats["rbac.logged"] == 1 and stats["rbac.not_logged"] == 1
    assert stats["rbac.policy.default.audit.logged"] == 1
    assert stats[f"rbac.istio_dry_run_{kind}_shadow_{'allowed' if action == 'ALLOW' else 'denied'}"] == 1
    assert stats[f"rbac.istio_dry_run_{kind}_shadow_{'denied' if action == 'ALLOW' else 'allowed'}"] == 1
    assert stats["rbac.allowed"] == 2 and "rbac.denied" not in stats
