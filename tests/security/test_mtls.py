"""Mutual TLS between sidecars: PeerAuthentication modes and scopes, and clients that try to get
in without the right certificate (plaintext, a foreign CA, an expired certificate, an identity
no policy allows).

The attackers are raw clients built with ``ssl``: they connect straight to a replica's inbound
listener (``mesh.sidecar(name).inbound``), as a pod without a sidecar, or with a stolen or
home-made certificate, would.
"""

from __future__ import annotations

import datetime as dt
import socket
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from meshlab import Mesh
from meshlab.apps.httpbin import make_app
from meshlab.control.ca import CertificateAuthority, make_csr, new_key
from meshlab.security.agent import build_contexts

CURL_ID = "spiffe://cluster.local/ns/default/sa/curl"


def peer_authentication(name: str, namespace: str, mode: str | None = None, selector: str | None = None,
                        ports: str | None = None) -> str:
    spec = []
    if selector:
        spec.append(f"  selector: {{matchLabels: {selector}}}")
    if mode:
        spec.append(f"  mtls: {{mode: {mode}}}")
    if ports:
        spec.append(f"  portLevelMtls: {ports}")
    return (f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
            f"metadata: {{name: {name}, namespace: {namespace}}}\nspec:\n" + "\n".join(spec) + "\n---\n")


def client_context(ca: CertificateAuthority, identity: str, trust_bundle: str,
                   ttl: float | None = None) -> tuple[ssl.SSLContext, x509.Certificate]:
    """A TLS client context presenting a certificate for ``identity`` signed by ``ca``, trusting
    ``trust_bundle`` (so it can check the server)."""
    key = new_key()
    chain = ca.sign(make_csr(key, identity), identity, ttl=ttl)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return build_contexts(chain, key_pem, trust_bundle)[1], x509.load_pem_x509_certificates(chain)[0]


def raw_get(address: tuple[str, int], ctx: ssl.SSLContext | None = None, path: str = "/get") -> bytes | str:
    """One request on a fresh connection: the response bytes, or the error (as text) when the
    connection is refused, reset or the TLS handshake fails."""
    sock = socket.create_connection(address, timeout=10)
    try:
        conn = ctx.wrap_socket(sock) if ctx is not None else sock
        conn.sendall(f"GET {path} HTTP/1.1\r\nhost: httpbin\r\nconnection: close\r\n\r\n".encode())
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
        return data or "closed without a response"
    except (ssl.SSLError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"
    finally:
        sock.close()


def inbound(mesh: Mesh, name: str) -> tuple[str, int]:
    listener = mesh.sidecar(name).inbound
    return listener.host, listener.port


def refused(mesh: Mesh, pod: str) -> dict[str, int]:
    stats = mesh.stats(pod, contains="downstream_cx_refused")
    return {k.rsplit(".", 1)[1]: v for k, v in zip(stats["stat"], stats["value"], strict=True)}


def request_metrics(mesh: Mesh) -> list[tuple[str, str, str]]:
    m = mesh.metrics()
    m = m[(m["name"] == "istio_requests_total") & (m["reporter"] == "destination")]
    return sorted(zip(m["source_principal"], m["connection_security_policy"], m["response_code"], strict=True))


def test_permissive_accepts_mtls_and_plaintext(mesh: Mesh) -> None:
    mesh.deploy("httpbin", make_app())
    assert mesh.call("httpbin", "/get").status_code == 200
    assert mesh.call("httpbin", "/get", sidecar=False).status_code == 200
    assert raw_get(inbound(mesh, "httpbin")).startswith(b"HTTP/1.1 200")  # type: ignore[union-attr]
    assert request_metrics(mesh) == [("spiffe://cluster.local/ns/default/sa/curl", "mutual_tls", "200"),
                                     ("unknown", "none", "200")]


def test_strict_refuses_plaintext_every_time(mesh: Mesh) -> None:
    mesh.deploy("httpbin", make_app())
    mesh.apply(peer_authentication("default", "istio-system", "STRICT"))
    attempts = 25
    answers = [raw_get(inbound(mesh, "httpbin")) for _ in range(attempts)]
    assert [a for a in answers if isinstance(a, bytes)] == []  # not one HTTP answer
    assert refused(mesh, "httpbin-v1-0") == {"plaintext": attempts}
    with pytest.raises(ConnectionError, match="refused a plaintext connection"):
        mesh.call("httpbin", "/get", sidecar=False)
    assert mesh.call("httpbin", "/get").status_code == 200  # sidecar to sidecar: mTLS
    assert [csp for _, csp, _ in request_metrics(mesh)] == ["mutual_tls"]


def test_disable_refuses_tls_and_auto_mtls_follows(mesh: Mesh) -> None:
    mesh.deploy("httpbin", make_app())
    mesh.apply(peer_authentication("httpbin", "default", "DISABLE", selector="{app: httpbin}"))
    ctx, _ = client_context(mesh.ca, CURL_ID, mesh.ca.trust_bundle)
    answer = raw_get(inbound(mesh, "httpbin"), ctx)
    assert isinstance(answer, str), answer
    assert refused(mesh, "httpbin-v1-0") == {"tls": 1}
    assert raw_get(inbound(mesh, "httpbin")).startswith(b"HTTP/1.1 200")  # type: ignore[union-attr]
    assert mesh.call("httpbin", "/get").status_code == 200  # the client sidecar sends plaintext
    assert [csp for _, csp, _ in request_metrics(mesh)] == ["none", "none"]


def test_workload_beats_namespace_beats_mesh(mesh: Mesh) -> None:
    mesh.deploy("httpbin", make_app())
    mesh.deploy("sleep", make_app("sleep"))
    mesh.deploy("other", make_app("other"), namespace="foo")

    def accepts_plaintext() -> dict[str, bool]:
        return {name: isinstance(raw_get(inbound(mesh, name)), bytes)
                for name in ("httpbin-v1-0", "sleep-v1-0", "foo/other-v1-0")}

    mesh.apply(peer_authentication("default", "istio-system", "STRICT"))
    assert accepts_plaintext() == {"httpbin-v1-0": False, "sleep-v1-0": False, "foo/other-v1-0": False}
    mesh.apply(peer_authentication("default", "default", "PERMISSIVE"))
    assert accepts_plaintext() == {"httpbin-v1-0": True, "sleep-v1-0": True, "foo/other-v1-0": False}
    mesh.apply(peer_authentication("httpbin", "default", "STRICT", selector="{app: httpbin}"))
    assert accepts_plaintext() == {"httpbin-v1-0": False, "sleep-v1-0": True, "foo/other-v1-0": False}
    # UNSET inherits: the workload policy without a mode falls back to the namespace's
    mesh.apply(peer_authentication("httpbin", "default", "UNSET", selector="{app: httpbin}"))
    assert accepts_plaintext() == {"httpbin-v1-0": True, "sleep-v1-0": True, "foo/other-v1-0": False}
    assert [mesh.call(s, "/get").status_code for s in ("httpbin", "sleep")] == [200, 200]


def test_port_level_mtls(mesh: Mesh) -> None:
    mesh.deploy("web", make_app("web"), labels={"tier": "front"})
    mesh.deploy("api", make_app("api"), labels={"tier": "front"}, port=9080)
    mesh.apply(peer_authentication("front", "default", "STRICT", selector="{tier: front}",
                                   ports="{'9080': {mode: PERMISSIVE}}"))
    assert isinstance(raw_get(inbound(mesh, "web")), str)  # port 80: the policy's STRICT
    assert isinstance(raw_get(inbound(mesh, "api")), bytes)  # port 9080: PERMISSIVE
    assert [mesh.call(s, "/get").status_code for s in ("web", "api")] == [200, 200]


def test_client_certificate_from_a_foreign_ca_is_refused(mesh: Mesh) -> None:
    mesh.deploy("httpbin", make_app())
    rogue = CertificateAuthority()  # same trust domain, same names, different root key
    ctx, cert = client_context(rogue, CURL_ID, mesh.ca.trust_bundle)
    assert cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value.get_values_for_type(
        x509.UniformResourceIdentifier) == [CURL_ID]  # it claims to be the client workload
    for _ in range(3):
        answer = raw_get(inbound(mesh, "httpbin"), ctx)
        assert isinstance(answer, str), answer
    assert refused(mesh, "httpbin-v1-0") == {"tls_handshake": 3}
    assert mesh.call("httpbin", "/get").status_code == 200


def test_expired_client_certificate_is_refused(mesh: Mesh) -> None:
    mesh.deploy("httpbin", make_app())
    ctx, cert = client_context(mesh.ca, CURL_ID, mesh.ca.trust_bundle, ttl=1)
    assert isinstance(raw_get(inbound(mesh, "httpbin"), ctx), bytes)  # still valid: accepted
    wait = (cert.not_valid_after_utc - dt.datetime.now(dt.UTC)).total_seconds() + 0.3
    time.sleep(max(wait, 0.0))
    answer = raw_get(inbound(mesh, "httpbin"), ctx)
    assert isinstance(answer, str), answer
    assert refused(mesh, "httpbin-v1-0") == {"tls_handshake": 1}


def test_valid_certificate_with_an_identity_no_policy_allows(mesh: Mesh) -> None:
    mesh.deploy("httpbin", make_app())
    mesh.apply("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\n"
               "metadata: {name: only-curl, namespace: default}\n"
               "spec: {rules: [{from: [{source: {principals: [cluster.local/ns/default/sa/curl]}}]}]}\n")
    intruder = "spiffe://cluster.local/ns/default/sa/intruder"
    ctx, _ = client_context(mesh.ca, intruder, mesh.ca.trust_bundle)
    answer = raw_get(inbound(mesh, "httpbin"), ctx)
    assert isinstance(answer, bytes) and answer.startswith(b"HTTP/1.1 403") and answer.endswith(
        b"RBAC: access denied")
    assert mesh.call("httpbin", "/get").status_code == 200
    # the principal the server saw is what each certificate proves
    assert request_metrics(mesh) == [("spiffe://cluster.local/ns/default/sa/curl", "mutual_tls", "200"),
                                     (intruder, "mutual_tls", "403")]
    log = mesh.access_log(service="httpbin", reporter="destination")
    assert list(log["response_code_details"]) == ["rbac_access_denied_matched_policy[none]", "via_upstream"]


def test_certificates_rotate_while_calls_keep_succeeding() -> None:
    # 2 s certificates, renewed at half their life. (X.509 times have whole seconds: a 1 s
    # lifetime can be cut to almost nothing by the truncation of notAfter.)
    with Mesh(seed=0, cert_ttl=2) as mesh:
        mesh.deploy("httpbin", make_app())
        codes = []
        for _ in range(15):
            codes.append(mesh.call("httpbin", "/get").status_code)
            time.sleep(0.2)
        assert codes == [200] * 15
        certs = mesh.certificates()
        per_pod = certs.groupby("pod").size().to_dict()
        assert per_pod["httpbin-v1-0"] >= 3 and per_pod["curl"] >= 3
        assert certs["serial"].is_unique
        assert set(certs.loc[certs["pod"] == "httpbin-v1-0", "identity"]) == {
            "spiffe://cluster.local/ns/default/sa/httpbin"}
        assert [csp for _, csp, _ in request_metrics(mesh)] == ["mutual_tls"]
