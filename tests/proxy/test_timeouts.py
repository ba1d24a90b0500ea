"""Route timeouts (VirtualService ``http[].timeout``) and per-try timeouts (``retries.perTryTimeout``):
off unless set; on expiry the caller gets 504 with flag UT and the upstream request is cancelled
(the server's sidecar logs DC, the caller went away)."""

from __future__ import annotations

import asyncio
import time

import pytest
from fastapi import FastAPI, Request

from meshlab import Mesh
from meshlab.apps.httpbin import make_app

PLAINTEXT = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin}
spec:
  host: httpbin
  trafficPolicy: {tls: {mode: DISABLE}}
"""


def vs(route: str) -> str:
    body = "\n".join("    " + line for line in route.strip().splitlines())
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin}}
spec:
  hosts: [httpbin]
  http:
  - route: [{{destination: {{host: httpbin}}}}]
{body}
"""


@pytest.fixture
def httpbin(mesh: Mesh) -> Mesh:
    mesh.deploy("httpbin", make_app(), replicas=1)
    return mesh


def flags(resp) -> set[str]:  # type: ignore[no-untyped-def]
    return set((resp.headers.get("x-meshlab-response-flags") or "-").split(","))


def destination_log(mesh: Mesh, n: int, timeout: float = 3.0):  # type: ignore[no-untyped-def]
    """The server-side access log once it has ``n`` entries (an entry is written when the
    server's sidecar finishes the request)."""
    end = time.monotonic() + timeout
    while True:
        log = mesh.access_log(reporter="destination")
        if len(log) >= n or time.monotonic() > end:
            return log
        time.sleep(0.02)


def test_no_timeout_unless_set(httpbin: Mesh) -> None:
    assert httpbin.call("httpbin", "/delay/0.3").status_code == 200  # no VirtualService
    httpbin.apply(vs("retries: {attempts: 1}"))
    r = httpbin.call("httpbin", "/delay/0.3")
    assert r.status_code == 200 and flags(r) == {"-"}


def test_route_timeout_answers_504_ut(httpbin: Mesh) -> None:
    httpbin.apply(vs("timeout: 0.1s"))
    r = httpbin.call("httpbin", "/delay/0.5")
    assert r.status_code == 504
    assert r.text == "upstream request timeout"
    assert flags(r) == {"UT"}
    assert "x-meshlab-attempts" not in r.headers  # a timeout is not retried by default
    src = httpbin.access_log(reporter="source").iloc[-1]
    assert (src.response_code, src.response_flags, src.response_code_details) == (
        504, "UT", "upstream_response_timeout")
    stats = httpbin.stats(pod="curl", contains="upstream_rq_timeout")
    assert stats.value.tolist() == [1]
    assert httpbin.call("httpbin", "/delay/0.01").status_code == 200  # a fast answer is unaffected


def test_timeout_is_per_route(httpbin: Mesh) -> None:
    httpbin.apply("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - match: [{headers: {x-hurry: {exact: "yes"}}}]
    timeout: 0.1s
    route: [{destination: {host: httpbin}}]
  - route: [{destination: {host: httpbin}}]
""")
    assert httpbin.call("httpbin", "/delay/0.3", headers={"x-hurry": "yes"}).status_code == 504
    assert httpbin.call("httpbin", "/delay/0.3").status_code == 200


def test_timeout_cancels_the_upstream_request(httpbin: Mesh) -> None:
    httpbin.apply(PLAINTEXT)
    httpbin.apply(vs("timeout: 0.1s"))
    assert httpbin.call("httpbin", "/delay/2").status_code == 504
    dst = destination_log(httpbin, 1, timeout=1.0)  # long before the app's 2 s are over
    assert len(dst) == 1
    entry = dst.iloc[0]
    assert "DC" in entry.response_flags.split(",")
    assert entry.response_code == 0
    assert entry.response_code_details == "downstream_remote_disconnect"


def test_timeout_cancels_the_upstream_request_over_mtls(httpbin: Mesh) -> None:
    httpbin.apply(vs("timeout: 0.1s"))
    assert httpbin.call("httpbin", "/delay/1").status_code == 504
    dst = destination_log(httpbin, 1, timeout=0.6)
    assert len(dst) == 1 and "DC" in dst.iloc[0].response_flags.split(",")


def test_per_try_timeout_with_retries_then_route_timeout_not_reached(httpbin: Mesh) -> None:
    httpbin.apply(PLAINTEXT)
    httpbin.apply(vs("""
timeout: 1s
retries: {attempts: 2, perTryTimeout: 0.1s, retryOn: "gateway-error,connect-failure,refused-stream"}
"""))
    r = httpbin.call("httpbin", "/delay/0.3")
    assert r.status_code == 504
    assert r.headers["x-meshlab-attempts"] == "3"
    assert flags(r) == {"UT", "URX"}
    src = httpbin.access_log(reporter="source").iloc[-1]
    assert set(src.response_flags.split(",")) == {"UT", "URX"}
    assert src.response_code_details == "upstream_per_try_timeout"
    dst = destination_log(httpbin, 3)
    assert len(dst) == 3 and all("DC" in f for f in dst.response_flags)  # each try was cancelled
    stats = httpbin.stats(pod="curl", contains="retry")
    assert dict(zip(stats.stat.str.rsplit(".", n=1).str[-1], stats.value, strict=True)) == {
        "upstream_rq_retry": 2, "upstream_rq_retry_limit_exceeded": 1}


def test_route_timeout_shorter_than_the_tries_wins(httpbin: Mesh) -> None:
    httpbin.apply(vs("""
timeout: 0.25s
retries: {attempts: 5, perTryTimeout: 0.1s, retryOn: 5xx}
"""))
    r = httpbin.call("httpbin", "/delay/0.3")
    assert r.status_code == 504
    assert flags(r) == {"UT"}  # the route timeout, not the retry limit
    assert 2 <= int(r.headers["x-meshlab-attempts"]) <= 3
    src = httpbin.access_log(reporter="source").iloc[-1]
    assert src.response_code_details == "upstream_response_timeout"
    assert httpbin.stats(pod="curl", contains="retry_limit_exceeded").empty


def test_per_try_timeout_is_not_retried_by_the_default_conditions(httpbin: Mesh) -> None:
    # Istio's default retryOn (connect-failure,refused-stream,unavailable,cancelled,
    # retriable-status-codes) does not cover a timed-out try: Envoy retries those only on
    # 5xx, gateway-error or reset.
    httpbin.apply(vs("retries: {attempts: 2, perTryTimeout: 0.1s}"))
    r = httpbin.call("httpbin", "/delay/0.3")
    assert r.status_code == 504
    assert flags(r) == {"UT"}
    assert "x-meshlab-attempts" not in r.headers


def slow_first_try() -> FastAPI:
    """Slow on the first try of a request, fast on the retries (Envoy tells the upstream which
    try it is in ``x-envoy-attempt-count``; Istio turns that header on)."""
    app = FastAPI()

    @app.get("/")
    async def root(request: Request) -> dict[str, str]:
        attempt = request.headers.get("x-envoy-attempt-count", "")
        if attempt == "1":
            await asyncio.sleep(0.5)
        return {"attempt": attempt}

    return app


def test_a_timed_out_try_is_retried_and_the_retry_succeeds(mesh: Mesh) -> None:
    mesh.deploy("httpbin", slow_first_try(), replicas=1)
    mesh.apply(vs("retries: {attempts: 2, perTryTimeout: 0.1s, retryOn: 5xx}"))
    r = mesh.call("httpbin", "/")
    assert r.status_code == 200
    assert r.json() == {"attempt": "2"}
    assert r.headers["x-meshlab-attempts"] == "2"
    assert flags(r) == {"-"}
    stats = mesh.stats(pod="curl", contains="retry")
    assert dict(zip(stats.stat.str.rsplit(".", n=1).str[-1], stats.value, strict=True)) == {
        "upstream_rq_retry": 1, "upstream_rq_retry_success": 1}
