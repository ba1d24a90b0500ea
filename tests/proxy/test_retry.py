"""Retries (VirtualService ``http[].retries``): Istio's default policy, ``retryOn`` conditions as
Istio hands them to Envoy, attempts, back-off, host choice, counters, flag URX and the
``connectionPool.http.maxRetries`` budget."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from typing import Any

import pytest
from fastapi import FastAPI, Request, Response

from meshlab import Mesh
from meshlab.apps.httpbin import make_app
from meshlab.config.virtual_service import HTTPRetry
from meshlab.proxy.retry import DEFAULT_RETRY_ON, Outcome, RetryPolicy
from meshlab.workload import current_replica


def policy(route_timeout: float | None = None, **retries: Any) -> RetryPolicy:
    return RetryPolicy.from_istio(HTTPRetry(**retries), route_timeout)


# -- the policy Istio gives Envoy ----------------------------------------------------------------
def test_default_policy_when_retries_is_unset() -> None:
    p = RetryPolicy.from_istio(None, None)
    assert p.attempts == 2
    assert p.conditions == {"connect-failure", "refused-stream", "unavailable", "cancelled",
                            "retriable-status-codes"}
    assert DEFAULT_RETRY_ON == "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    assert p.status_codes == {503}
    assert p.per_try_timeout is None and p.backoff_base == 0.025
    assert RetryPolicy.from_istio(None, 2.0).per_try_timeout == 2.0  # defaults to the route timeout


def test_attempts_zero_disables_and_unset_attempts_too() -> None:
    assert policy(attempts=0).attempts == 0
    # Istio: `if in.Attempts <= 0 { return nil }`; an unset integer is 0 (Istio warns about it)
    assert policy(perTryTimeout="1s").attempts == 0
    assert policy(retryOn="5xx").attempts == 0


def test_attempts_without_retry_on_keep_the_default_conditions() -> None:
    p = policy(attempts=5, perTryTimeout="2s")
    assert (p.attempts, p.per_try_timeout) == (5, 2.0)
    assert p.conditions == set(DEFAULT_RETRY_ON.split(",")) and p.status_codes == {503}


@pytest.mark.parametrize(("retry_on", "conditions", "codes"), [
    ("5xx", {"5xx"}, set()),
    ("gateway-error,connect-failure,refused-stream", {"gateway-error", "connect-failure", "refused-stream"}, set()),
    # numbers are status codes; Istio adds retriable-status-codes for them
    ("500,retriable-status-codes", {"retriable-status-codes"}, {500}),
    ("gateway-error,503", {"gateway-error", "retriable-status-codes"}, {503}),
    ("some,fake,5xx,404,conditions,503", {"some", "fake", "5xx", "conditions", "retriable-status-codes"},
     {404, 503}),
    # retryOn replaces the default codes too: no number, no retriable status
    ("retriable-status-codes", {"retriable-status-codes"}, set()),
    # not an HTTP status: kept as a (meaningless) condition, as Istio does
    ("some,fake,conditions,1000", {"some", "fake", "conditions", "1000"}, set()),
    (" 5xx,\t, reset ,,", {"5xx", "reset"}, set()),
    ("cancelled,deadline-exceeded,internal,resource-exhausted,unavailable",
     {"cancelled", "deadline-exceeded", "internal", "resource-exhausted", "unavailable"}, set()),
])
def test_retry_on_parsing(retry_on: str, conditions: set[str], codes: set[int]) -> None:
    p = policy(attempts=2, retryOn=retry_on)
    assert (p.conditions, p.status_codes) == (conditions, codes)


def test_per_try_timeout_and_backoff_fields() -> None:
    p = policy(3.0, attempts=1, perTryTimeout="0.5s", backoff="0.1s")
    assert (p.per_try_timeout, p.backoff_base) == (0.5, 0.1)
    assert policy(3.0, attempts=1).per_try_timeout == 3.0


R = Outcome


@pytest.mark.parametrize(("retry_on", "outcome", "expected"), [
    # Istio's default conditions
    (None, R(503), True), (None, R(500), False), (None, R(502), False), (None, R(504), False),
    (None, R(0, "connect-failure"), True), (None, R(0, "timeout"), False), (None, R(0, "reset"), False),
    (None, R(200, grpc_status="14"), True), (None, R(200, grpc_status="1"), True),
    (None, R(200, grpc_status="13"), False),
    ("5xx", R(500), True), ("5xx", R(503), True), ("5xx", R(599), True), ("5xx", R(404), False),
    ("5xx", R(0, "reset"), True), ("5xx", R(0, "timeout"), True), ("5xx", R(0, "connect-failure"), True),
    ("gateway-error", R(502), True), ("gateway-error", R(503), True), ("gateway-error", R(504), True),
    ("gateway-error", R(500), False), ("gateway-error", R(0, "timeout"), True),
    ("reset", R(0, "reset"), True), ("reset", R(0, "timeout"), True), ("reset", R(503), False),
    ("connect-failure", R(0, "connect-failure"), True), ("connect-failure", R(503), False),
    ("connect-failure", R(0, "reset"), False),
    ("retriable-4xx", R(409), True), ("retriable-4xx", R(404), False), ("retriable-4xx", R(429), False),
    ("500,retriable-status-codes", R(500), True), ("500,retriable-status-codes", R(503), False),
    ("retriable-status-codes", R(503), False),
    ("internal", R(200, grpc_status="13"), True), ("deadline-exceeded", R(200, grpc_status="4"), True),
    ("resource-exhausted", R(200, grpc_status="8"), True), ("unavailable", R(200, grpc_status="13"), False),
    # answered locally, nothing reached the service: never retried (Envoy never retries overflow)
    ("5xx", R(503, "overflow"), False), ("5xx", R(503, "no-host"), False), (None, R(503, "overflow"), False),
])
def test_retriable(retry_on: str | None, outcome: Outcome, expected: bool) -> None:
    p = RetryPolicy() if retry_on is None else policy(attempts=2, retryOn=retry_on)
    assert p.retriable(outcome) is expected


def test_backoff_is_jittered_from_25ms_and_capped() -> None:
    p = RetryPolicy()
    rng = random.Random(0)
    first = [p.backoff(1, rng) for _ in range(500)]
    second = [p.backoff(2, rng) for _ in range(500)]
    late = [p.backoff(8, rng) for _ in range(500)]
    assert 0.025 <= min(first) and max(first) < 0.050
    assert 0.025 <= min(second) and max(second) < 0.100 and max(second) > 0.050
    assert max(late) <= 0.250 and min(late) >= 0.025
    assert len({round(x, 6) for x in first}) > 400  # jittered
    custom = RetryPolicy(backoff_base=0.1)
    assert all(0.1 <= custom.backoff(1, rng) < 0.2 for _ in range(100))


# -- end to end ------------------------------------------------------------------------------
def vs(retries: str | None) -> str:
    line = f"\n    retries: {retries}" if retries else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin}}
spec:
  hosts: [httpbin]
  http:
  - route: [{{destination: {{host: httpbin}}}}]{line}
"""


@pytest.fixture
def httpbin(mesh: Mesh) -> Mesh:
    mesh.deploy("httpbin", make_app(), replicas=1)
    return mesh


def tries(mesh: Mesh, path: str) -> int:
    """How many tries of the last request to ``path`` reached the service."""
    src = mesh.access_log(reporter="source")
    rid = src[src.path == path].request_id.iloc[-1]
    dst = mesh.access_log(reporter="destination")
    return int((dst.request_id == rid).sum())


def flags(resp) -> set[str]:  # type: ignore[no-untyped-def]
    return set((resp.headers.get("x-meshlab-response-flags") or "-").split(","))


def retry_stats(mesh: Mesh) -> dict[str, int]:
    s = mesh.stats(pod="curl", contains="retry")
    return {k.rsplit(".", 1)[-1]: int(v) for k, v in zip(s.stat, s.value, strict=True) if v}


def test_default_policy_retries_503_twice_and_never_500(httpbin: Mesh) -> None:
    r = httpbin.call("httpbin", "/status/503")
    assert r.status_code == 503
    assert r.headers["x-meshlab-attempts"] == "3"
    assert flags(r) == {"URX"}
    assert tries(httpbin, "/status/503") == 3
    src = httpbin.access_log(reporter="source").iloc[-1]
    assert (src.response_code, src.response_flags) == (503, "URX")
    r = httpbin.call("httpbin", "/status/500")
    assert r.status_code == 500 and "x-meshlab-attempts" not in r.headers and flags(r) == {"-"}
    assert tries(httpbin, "/status/500") == 1
    assert retry_stats(httpbin) == {"upstream_rq_retry": 2, "upstream_rq_retry_limit_exceeded": 1}


def test_attempts_zero_disables_retries(httpbin: Mesh) -> None:
    httpbin.apply(vs("{attempts: 0}"))
    r = httpbin.call("httpbin", "/status/503")
    assert r.status_code == 503 and flags(r) == {"-"} and "x-meshlab-attempts" not in r.headers
    assert tries(httpbin, "/status/503") == 1
    assert retry_stats(httpbin) == {}


def test_retries_then_success_counts_retry_success(httpbin: Mesh) -> None:
    httpbin.apply(vs("{attempts: 3, retryOn: 5xx}"))
    r = httpbin.call("httpbin", "/flaky/fail/2")
    assert r.status_code == 200 and r.headers["x-meshlab-attempts"] == "3" and flags(r) == {"-"}
    assert r.json()["attempt"] == 3
    assert retry_stats(httpbin) == {"upstream_rq_retry": 2, "upstream_rq_retry_success": 1}


@pytest.mark.parametrize(("retry_on", "path", "expected_tries"), [
    ("5xx", "/status/500", 4),
    ("5xx", "/status/404", 1),
    ("gateway-error", "/status/502", 4),
    ("gateway-error", "/status/504", 4),
    ("gateway-error", "/status/500", 1),
    ("retriable-4xx", "/status/409", 4),
    ("retriable-4xx", "/status/404", 1),
    ("500,retriable-status-codes", "/status/500", 4),
    ("500,retriable-status-codes", "/status/503", 1),  # only the listed codes
    ("500", "/status/500", 4),  # a bare number works too: Istio adds retriable-status-codes
    ("retriable-status-codes", "/status/503", 1),  # no code listed: nothing to retry
    ("connect-failure,refused-stream", "/status/503", 1),
])
def test_retry_on_end_to_end(httpbin: Mesh, retry_on: str, path: str, expected_tries: int) -> None:
    httpbin.apply(vs(f'{{attempts: 3, retryOn: "{retry_on}"}}'))
    r = httpbin.call("httpbin", path)
    assert r.status_code == int(path.rsplit("/", 1)[1])
    assert tries(httpbin, path) == expected_tries
    assert r.headers.get("x-meshlab-attempts", "1") == str(expected_tries)
    assert ("URX" in flags(r)) is (expected_tries == 4)


def test_backoff_between_tries_is_at_least_25ms(httpbin: Mesh) -> None:
    httpbin.apply(vs("{attempts: 4, retryOn: 5xx}"))
    httpbin.call("httpbin", "/status/500")
    dst = httpbin.access_log(reporter="destination")
    starts = sorted(dst.start_time)
    assert len(starts) == 5
    gaps = [b - a for a, b in zip(starts, starts[1:], strict=False)]
    assert all(g >= 0.025 for g in gaps), gaps
    assert all(g < 5.0 for g in gaps), gaps  # sanity only


def picky() -> FastAPI:
    """Replica 0 of each version answers 503; the others answer 200."""
    app = FastAPI()

    @app.get("/")
    async def root() -> Response:
        rep = current_replica()
        return Response(status_code=503 if rep is not None and rep.index == 0 else 200)

    return app


def test_retries_prefer_hosts_not_yet_tried(mesh: Mesh) -> None:
    app = picky()
    mesh.deploy("picky", app, replicas=2, version="v1")  # picky-v1-0 is broken
    mesh.deploy("picky", app, replicas=1, version="v2")  # picky-v2-0 is broken too
    results = [mesh.call("picky", "/") for _ in range(30)]
    # with 2 retries and 2 broken hosts of 3, every request still ends on the good one
    assert Counter(r.status_code for r in results) == {200: 30}
    dst = mesh.access_log(reporter="destination")
    per_request = dst.groupby("request_id").pod.apply(list)
    assert all(len(pods) == len(set(pods)) for pods in per_request), "a retry went back to a tried host"
    assert max(per_request.map(len)) == 3 and (per_request.map(len) == 2).any()
    assert {pods[-1] for pods in per_request} == {"picky-v1-1"}


def attempt_app(slow: float = 0.3, second: int = 200, retried: list[float] | None = None) -> FastAPI:
    """503 at once on a request's first try; later tries (noted in ``retried``) wait ``slow`` s
    and answer ``second``. Envoy tells the upstream which try it is in ``x-envoy-attempt-count``."""
    app = FastAPI()

    @app.get("/")
    async def root(request: Request) -> Response:
        if request.headers.get("x-envoy-attempt-count") == "1":
            return Response(status_code=503)
        if retried is not None:
            retried.append(time.monotonic())
        await asyncio.sleep(slow)
        return Response(status_code=second)

    return app


BUDGET = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: flappy}
spec:
  host: flappy
  trafficPolicy:
    connectionPool: {http: {maxRetries: 1}}
"""

# a long back-off, so that the retries of requests sent together are surely outstanding together
SLOW_BACKOFF = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: flappy}
spec:
  hosts: [flappy]
  http:
  - route: [{destination: {host: flappy}}]
    retries: {attempts: 2, retryOn: "503", backoff: 0.3s}
"""


def test_max_retries_budget_overflow(mesh: Mesh) -> None:
    mesh.deploy("flappy", attempt_app(), replicas=1)
    mesh.apply(BUDGET)
    mesh.apply(SLOW_BACKOFF)
    res = mesh.load("flappy", "/", concurrency=4, requests=4, progress=False)
    s = retry_stats(mesh)
    assert s.get("upstream_rq_retry_overflow", 0) > 0
    # a request whose retry was refused answers the first try's 503; the others were retried
    assert Counter(res.df.status) == {503: s["upstream_rq_retry_overflow"], 200: s["upstream_rq_retry"]}
    assert s["upstream_rq_retry"] + s["upstream_rq_retry_overflow"] == 4


def test_retry_budget_is_held_until_the_retry_answers(mesh: Mesh) -> None:
    retried: list[float] = []
    mesh.deploy("flappy", attempt_app(slow=0.5, retried=retried), replicas=1)
    mesh.apply(BUDGET)
    first = mesh.load("flappy", "/", concurrency=1, requests=1, progress=False, background=True)
    end = time.monotonic() + 5
    while not retried:  # wait until the first request's retry reached the service
        assert time.monotonic() < end
        time.sleep(0.01)
    second = mesh.call("flappy", "/")
    assert list(first.result().df.status) == [200]
    assert second.status_code == 503  # its retry is over the budget of 1
    assert retry_stats(mesh).get("upstream_rq_retry_overflow") == 1


def test_retry_refused_by_the_budget_has_flag_uo(mesh: Mesh) -> None:
    mesh.deploy("flappy", attempt_app(), replicas=1)
    mesh.apply(BUDGET)
    mesh.apply(SLOW_BACKOFF)
    res = mesh.load("flappy", "/", concurrency=4, requests=4, progress=False)
    assert set(res.df[res.df.status == 503].response_flags) == {"UO"}


def test_retry_success_counts_any_answer_not_retried_again(mesh: Mesh) -> None:
    mesh.deploy("flappy", attempt_app(slow=0.0, second=500), replicas=1)
    r = mesh.call("flappy", "/")  # default policy: the 503 is retried, the 500 is not
    assert r.status_code == 500 and r.headers["x-meshlab-attempts"] == "2"
    assert retry_stats(mesh) == {"upstream_rq_retry": 1, "upstream_rq_retry_success": 1}
