"""RequestAuthentication and the JWT issuer: tokens that get in, tokens that do not, and what
Envoy answers each with (status, body, response details), as seen from a mesh and from the pure
``authenticate``."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

from meshlab import Mesh
from meshlab.apps.httpbin import make_app
from meshlab.config import load
from meshlab.proxy.http1 import Headers
from meshlab.security.authz import explain
from meshlab.security.jwt import (
    AUDIENCE_NOT_ALLOWED,
    BAD_FORMAT,
    EXPIRED,
    FORGERIES,
    KID_ALG_MISMATCH,
    MISSING,
    OK,
    REMOTE_FETCH_FAILED,
    UNKNOWN_ISSUER,
    VERIFICATION_FAILS,
    Issuer,
    JwksDirectory,
    authenticate,
    compile_request_authentication,
    parse,
)

ISS = "https://auth.meshlab.dev"


class Clock:
    """A clock the test moves by hand."""

    def __init__(self, t: float = 1_700_000_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def request_authn(name: str, rules: str, selector: str = "{matchLabels: {app: httpbin}}",
                  namespace: str = "default") -> str:
    return (f"apiVersion: security.istio.io/v1\nkind: RequestAuthentication\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n  selector: {selector}\n"
            f"  jwtRules:\n{rules}\n---\n")


def require_jwt(name: str = "require-jwt", extra: str = "") -> str:
    return (f"apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
            f"metadata: {{name: {name}, namespace: default}}\nspec:\n"
            f"  selector: {{matchLabels: {{app: httpbin}}}}\n"
            f"  rules: [{{from: [{{source: {{requestPrincipals: ['*']}}}}]{extra}}}]\n---\n")


def providers(text: str, directory: JwksDirectory | None = None) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [policy] = compile_request_authentication(load(text), directory)
    return policy.providers


def bearer(token: str) -> Headers:
    return Headers([("authorization", f"Bearer {token}")])


@pytest.fixture
def jwt_mesh() -> Iterator[tuple[Mesh, Issuer, Clock]]:
    clock = Clock()
    mesh = Mesh(seed=0, clock=clock).start()
    try:
        mesh.deploy("httpbin", make_app())
        issuer = mesh.jwt_issuer(ISS)
        mesh.apply(request_authn("jwt", f"  - issuer: {ISS}\n    jwksUri: {issuer.jwks_uri}\n"
                                        "    audiences: [httpbin]"))
        yield mesh, issuer, clock
    finally:
        mesh.stop()


# ---------------------------------------------------------------------------- the issuer

@pytest.mark.parametrize("key_type", ["RS256", "ES256"])
def test_issuer_tokens_and_jwks(key_type: str) -> None:
    clock = Clock()
    issuer = Issuer(ISS, key_type=key_type, clock=clock)
    assert issuer.jwks_uri == f"{ISS}/.well-known/jwks.json"
    [key] = issuer.jwks()["keys"]
    assert key["kid"] == issuer.kid and key["alg"] == key_type and key["use"] == "sig"
    assert "d" not in key  # public keys only
    assert json.loads(issuer.jwks_json()) == issuer.jwks()
    token = issuer.token("alice", aud=["a", "b"], exp_in=60, claims={"groups": ["admin"], "org": {"team": "x"}})
    jwt = parse(token)
    assert not isinstance(jwt, str)
    assert jwt.header == {"alg": key_type, "kid": issuer.kid, "typ": "JWT"}
    assert jwt.payload == {"iss": ISS, "sub": "alice", "aud": ["a", "b"], "iat": int(clock.t),
                           "exp": int(clock.t) + 60, "groups": ["admin"], "org": {"team": "x"}}
    [prov] = providers(request_authn("r", f"  - issuer: {ISS}\n    jwks: '{issuer.jwks_json()}'"))
    assert authenticate([prov], bearer(token), "/", clock.t).status == OK
    assert issuer.openid_configuration()["jwks_uri"] == issuer.jwks_uri


def test_every_forgery_gets_envoys_answer() -> None:
    clock = Clock()
    issuer = Issuer(ISS, clock=clock)
    [prov] = providers(request_authn("r", f"  - issuer: {ISS}\n    jwks: '{issuer.jwks_json()}'\n"
                                          "    audiences: [httpbin]"))
    got = {kind: authenticate([prov], bearer(issuer.forge(kind, aud="httpbin")), "/", clock.t).status
           for kind in FORGERIES}
    assert got == FORGERIES
    assert got["alg_none"] == BAD_FORMAT  # "header.payload." has two sections: not even a JWT
    with pytest.raises(ValueError, match="unknown forgery"):
        issuer.forge("nonsense")


def test_expiry_uses_envoys_60s_clock_skew() -> None:
    clock = Clock()
    issuer = Issuer(ISS, clock=clock)
    [prov] = providers(request_authn("r", f"  - issuer: {ISS}\n    jwks: '{issuer.jwks_json()}'"))
    token = issuer.token("alice", exp_in=10)
    assert authenticate([prov], bearer(token), "/", clock.t + 69).status == OK
    assert authenticate([prov], bearer(token), "/", clock.t + 71).status == EXPIRED


def test_parse_errors_are_envoys() -> None:
    assert parse("a.b") == BAD_FORMAT
    assert parse("!!.e30.c2ln") == "Jwt header is an invalid Base64url encoded"
    assert parse("bm90IGpzb24.e30.c2ln") == "Jwt header is an invalid JSON"
    none = base64.urlsafe_b64encode(b'{"alg":"none"}').rstrip(b"=").decode()
    assert parse(f"{none}.e30.c2ln") == "Jwt header [alg] is not supported"


def test_keys_are_matched_by_kid_and_alg() -> None:
    clock = Clock()
    a, b = Issuer(ISS, clock=clock), Issuer(ISS, clock=clock, key_type="ES256")
    both = json.dumps({"keys": a.jwks()["keys"] + b.jwks()["keys"]})
    [prov] = providers(request_authn("r", f"  - issuer: {ISS}\n    jwks: '{both}'"))
    assert authenticate([prov], bearer(a.token("x")), "/", clock.t).status == OK
    assert authenticate([prov], bearer(b.token("x")), "/", clock.t).status == OK
    [only_a] = providers(request_authn("r", f"  - issuer: {ISS}\n    jwks: '{a.jwks_json()}'"))
    assert authenticate([only_a], bearer(b.token("x")), "/", clock.t).status == KID_ALG_MISMATCH


def test_unknown_jwks_uri_fails_every_token_as_istiod_does() -> None:
    clock = Clock()
    issuer = Issuer(ISS, clock=clock)
    text = request_authn("r", f"  - issuer: {ISS}\n    jwksUri: https://nowhere.example.com/jwks.json")
    [prov] = providers(text)  # istiod inlines a fake JWKS (kid "abc")
    assert authenticate([prov], bearer(issuer.token("x")), "/", clock.t).status == KID_ALG_MISMATCH
    [prov] = providers(text, JwksDirectory(remote_jwks=True))  # Envoy fetching the JWKS itself
    assert authenticate([prov], bearer(issuer.token("x")), "/", clock.t).status == REMOTE_FETCH_FAILED
    # no token: still passes, whatever the keys
    assert authenticate([prov], Headers(), "/", clock.t).status == MISSING


def test_issuer_discovery_without_jwks_uri() -> None:
    clock = Clock()
    directory = JwksDirectory()
    issuer = Issuer(ISS, clock=clock)
    directory.register(issuer)
    [prov] = providers(request_authn("r", f"  - issuer: {ISS}"), directory)
    assert authenticate([prov], bearer(issuer.token("x")), "/", clock.t).status == OK


def test_several_rules_any_of_and_error_preference() -> None:
    clock = Clock()
    a, b = Issuer("https://a.example", clock=clock), Issuer("https://b.example", clock=clock)
    provs = providers(request_authn("r", f"  - issuer: {a.name}\n    jwks: '{a.jwks_json()}'\n"
                                         f"  - issuer: {b.name}\n    jwks: '{b.jwks_json()}'"))
    assert authenticate(provs, bearer(b.token("bob")), "/", clock.t).identity.principal == "https://b.example/bob"
    assert authenticate(provs, bearer(Issuer("https://c.example").token("x")), "/", clock.t).status == UNKNOWN_ISSUER
    # a real error (expired) is preferred over the other rule's "unknown issuer"
    assert authenticate(provs, bearer(b.forge("expired")), "/", clock.t).status == EXPIRED


# ---------------------------------------------------------------------------- in a mesh

def test_tokens_that_try_to_get_in(jwt_mesh: tuple[Mesh, Issuer, Clock]) -> None:
    mesh, issuer, _ = jwt_mesh
    expected = {"bad_signature": (401, VERIFICATION_FAILS), "wrong_issuer": (401, UNKNOWN_ISSUER),
                "wrong_audience": (403, AUDIENCE_NOT_ALLOWED), "expired": (401, EXPIRED),
                "alg_none": (401, BAD_FORMAT), "alg_confusion": (401, KID_ALG_MISMATCH)}
    got = {}
    for kind in expected:
        r = mesh.call("httpbin", "/headers", headers={"Authorization": f"Bearer {issuer.forge(kind, aud='httpbin')}"})
        got[kind] = (r.status_code, r.text)
        assert r.headers["www-authenticate"] == 'Bearer realm="http://httpbin/headers", error="invalid_token"'
    assert got == expected
    details = list(mesh.access_log(service="httpbin", reporter="destination")["response_code_details"])
    assert details == ["jwt_authn_access_denied{" + text.replace(" ", "_") + "}" for _, text in expected.values()]
    stats = mesh.stats("httpbin-v1-0", contains="jwt_authn")
    assert dict(zip(stats["stat"], stats["value"], strict=True)) == {"jwt_authn.denied": len(expected)}


def test_no_token_passes_until_a_policy_requires_one(jwt_mesh: tuple[Mesh, Issuer, Clock]) -> None:
    mesh, issuer, _ = jwt_mesh
    good = {"Authorization": f"Bearer {issuer.token('alice', aud='httpbin')}"}
    assert mesh.call("httpbin", "/get").status_code == 200  # no token: authentication passes
    mesh.apply(require_jwt())
    r = mesh.call("httpbin", "/get")
    assert (r.status_code, r.text) == (403, "RBAC: access denied")  # authz, not authn, refuses
    assert mesh.call("httpbin", "/get", headers=good).status_code == 200
    assert mesh.call("httpbin", "/get", headers={"Authorization": "Bearer nope"}).status_code == 401
    # explain() follows the same path without sending anything
    assert not explain(mesh, "curl", "httpbin").allowed
    assert explain(mesh, "curl", "httpbin", token=good["Authorization"][7:]).allowed
    d = explain(mesh, "curl", "httpbin", token=issuer.forge("expired", aud="httpbin"))
    assert (d.allowed, d.action, d.status, d.reason.endswith(EXPIRED)) == (False, "RequestAuthentication", 401, True)


def test_token_is_removed_unless_forwarded_and_outputs(jwt_mesh: tuple[Mesh, Issuer, Clock]) -> None:
    mesh, issuer, _ = jwt_mesh
    token = issuer.token("alice", aud="httpbin", claims={"org": {"team": "mesh"}, "admin": True})
    seen = mesh.call("httpbin", "/headers", headers={"Authorization": f"Bearer {token}"}).json()["headers"]
    assert "authorization" not in seen  # forwardOriginalToken defaults to false
    mesh.apply(request_authn("jwt", f"""  - issuer: {ISS}
    jwksUri: {issuer.jwks_uri}
    forwardOriginalToken: true
    outputPayloadToHeader: x-jwt-payload
    outputClaimToHeaders: [{{header: x-team, claim: org.team}}, {{header: x-admin, claim: admin}}]"""))
    seen = mesh.call("httpbin", "/headers", headers={"Authorization": f"Bearer {token}", "x-team": "forged"}
                     ).json()["headers"]
    assert seen["authorization"] == f"Bearer {token}"
    assert (seen["x-team"], seen["x-admin"]) == ("mesh", "true")  # the forged x-team is gone
    payload = json.loads(base64.urlsafe_b64decode(seen["x-jwt-payload"] + "=="))
    assert payload["sub"] == "alice" and payload["org"] == {"team": "mesh"}
    # without a token the output headers cannot be forged either
    seen = mesh.call("httpbin", "/headers", headers={"x-team": "forged"}).json()["headers"]
    assert "x-team" not in seen


def test_token_locations(jwt_mesh: tuple[Mesh, Issuer, Clock]) -> None:
    mesh, issuer, _ = jwt_mesh
    token = issuer.token("alice")
    bad = issuer.forge("bad_signature", aud="httpbin")
    # defaults: Authorization: Bearer and ?access_token=
    assert mesh.call("httpbin", f"/get?access_token={bad}").status_code == 401
    mesh.apply(request_authn("jwt", f"""  - issuer: {ISS}
    jwksUri: {issuer.jwks_uri}
    fromHeaders: [{{name: x-jwt-assertion, prefix: "Token "}}]
    fromParams: [jwt]"""))
    assert mesh.call("httpbin", "/get", headers={"Authorization": f"Bearer {bad}"}).status_code == 200  # not looked at
    assert mesh.call("httpbin", "/get", headers={"x-jwt-assertion": f"Token {bad}"}).status_code == 401
    assert mesh.call("httpbin", f"/get?jwt={bad}").status_code == 401
    seen = mesh.call("httpbin", "/headers", headers={"x-jwt-assertion": f"Token {token}"}).json()["headers"]
    assert "x-jwt-assertion" not in seen


def test_request_principal_and_claims_reach_authorization(jwt_mesh: tuple[Mesh, Issuer, Clock]) -> None:
    mesh, issuer, _ = jwt_mesh
    mesh.apply(require_jwt("admins", ", when: [{key: 'request.auth.claims[org][role]', values: [admin]}]")
               .replace("['*']", f"['{ISS}/*']"))
    admin = issuer.token("alice", aud="httpbin", claims={"org": {"role": "admin"}})
    user = issuer.token("bob", aud="httpbin", claims={"org": {"role": "user"}})
    assert mesh.call("httpbin", "/get", headers={"Authorization": f"Bearer {admin}"}).status_code == 200
    assert mesh.call("httpbin", "/get", headers={"Authorization": f"Bearer {user}"}).status_code == 403
    assert mesh.call("httpbin", "/get").status_code == 403


def test_time_passes_on_the_mesh_clock(jwt_mesh: tuple[Mesh, Issuer, Clock]) -> None:
    mesh, issuer, clock = jwt_mesh
    headers = {"Authorization": f"Bearer {issuer.token('alice', aud='httpbin', exp_in=300)}"}
    assert mesh.call("httpbin", "/get", headers=headers).status_code == 200
    clock.t += 300 + 61
    r = mesh.call("httpbin", "/get", headers=headers)
    assert (r.status_code, r.text) == (401, EXPIRED)


def test_policy_in_another_namespace_or_for_another_workload_does_not_apply(
        jwt_mesh: tuple[Mesh, Issuer, Clock]) -> None:
    mesh, issuer, _ = jwt_mesh
    mesh.delete("RequestAuthentication", "jwt")
    mesh.apply(request_authn("elsewhere", f"  - issuer: {ISS}\n    jwksUri: {issuer.jwks_uri}", namespace="foo")
               + request_authn("other-app", f"  - issuer: {ISS}\n    jwksUri: {issuer.jwks_uri}",
                               selector="{matchLabels: {app: reviews}}"))
    headers = {"Authorization": f"Bearer {issuer.forge('bad_signature')}"}
    assert mesh.call("httpbin", "/get", headers=headers).status_code == 200
    mesh.apply(request_authn("mesh-wide", f"  - issuer: {ISS}\n    jwksUri: {issuer.jwks_uri}",
                             selector="null", namespace="istio-system"))
    assert mesh.call("httpbin", "/get", headers=headers).status_code == 401


def test_jwt_issuer_is_registered_once_per_name(mesh: Mesh) -> None:
    a = mesh.jwt_issuer(ISS)
    assert mesh.jwt_issuer(ISS) is a
    assert mesh.jwt_issuer(ISS, key_type="ES256") is not a
    assert mesh.jwt_issuer("https://other.example").jwks_uri == "https://other.example/.well-known/jwks.json"


def test_space_delimited_claims_and_every_token_must_be_valid() -> None:
    clock = Clock()
    issuer = Issuer(ISS, clock=clock)
    [prov] = providers(request_authn("r", f"  - issuer: {ISS}\n    jwks: '{issuer.jwks_json()}'\n"
                                          "    spaceDelimitedClaims: [roles]"))
    token = issuer.token("alice", claims={"scope": "read write", "roles": "a b", "note": "x y"})
    claims = authenticate([prov], bearer(token), "/", clock.t).identity.claims  # type: ignore[union-attr]
    assert (claims["scope"], claims["roles"], claims["note"]) == (["read", "write"], ["a", "b"], "x y")
    # a good token in the header and a bad one in ?access_token=: the request is refused
    bad = issuer.forge("bad_signature")
    assert authenticate([prov], bearer(token), f"/?access_token={bad}", clock.t).status == VERIFICATION_FAILS


def test_cors_preflight_is_not_checked(jwt_mesh: tuple[Mesh, Issuer, Clock]) -> None:
    mesh, issuer, _ = jwt_mesh
    headers = {"Authorization": "Bearer nope", "Origin": "https://app.example",
               "Access-Control-Request-Method": "GET"}
    assert mesh.call("httpbin", "/anything", method="OPTIONS", headers=headers).status_code == 200
    assert mesh.call("httpbin", "/anything", method="OPTIONS", headers={"Authorization": "Bearer nope"}
                     ).status_code == 401


def test_issuer_serves_its_jwks_over_http(mesh: Mesh) -> None:
    import httpx

    issuer = mesh.jwt_issuer(ISS)
    address = mesh.external("auth.meshlab.dev", issuer.app())
    assert httpx.get(f"http://{address}/.well-known/jwks.json").json() == issuer.jwks()
    assert httpx.get(f"http://{address}/.well-known/openid-configuration").json()["jwks_uri"] == issuer.jwks_uri
