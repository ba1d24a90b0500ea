"""Circuit breaking: DestinationRule ``trafficPolicy.connectionPool`` limits (Envoy's circuit
breakers), first on ``CircuitBreaker`` itself with asyncio, then end to end: requests over the
limits are answered 503 with flag UO and never reach the service."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import pytest

from meshlab import Mesh
from meshlab.apps.httpbin import make_app
from meshlab.config.destination_rule import ConnectionPoolSettings
from meshlab.proxy.circuit_breaker import (
    APP_IDLE_TIMEOUT,
    ENVOY_IDLE_TIMEOUT,
    UNLIMITED,
    CircuitBreaker,
    Limits,
)


def limits(**pool: Any) -> Limits:
    return Limits.from_policy(SimpleNamespace(connectionPool=ConnectionPoolSettings(**pool)))


# -- configuration ---------------------------------------------------------------------------
def test_istio_defaults_are_unlimited() -> None:
    lim = Limits.from_policy(None)
    assert (lim.max_connections, lim.max_pending, lim.max_requests, lim.max_retries) == (UNLIMITED,) * 4
    assert UNLIMITED == 2**32 - 1
    assert lim.max_requests_per_connection == 0
    assert Limits.from_policy(SimpleNamespace(connectionPool=None)) == lim


def test_limits_from_connection_pool() -> None:
    lim = limits(tcp={"maxConnections": 1, "connectTimeout": "30ms"},
                 http={"http1MaxPendingRequests": 2, "http2MaxRequests": 3, "maxRetries": 4,
                       "maxRequestsPerConnection": 5})
    assert (lim.max_connections, lim.max_pending, lim.max_requests, lim.max_retries,
            lim.max_requests_per_connection, lim.connect_timeout) == (1, 2, 3, 4, 5, 0.03)


def test_idle_timeout_envoys_hour_to_sidecars_and_short_to_plain_servers() -> None:
    default = Limits.from_policy(None)
    assert default.pool_options(sidecar_peer=True)["idle_timeout"] == ENVOY_IDLE_TIMEOUT == 3600.0
    assert default.pool_options(sidecar_peer=False)["idle_timeout"] == APP_IDLE_TIMEOUT == 2.0
    set_30s = limits(http={"idleTimeout": "30s"})
    assert set_30s.pool_options(sidecar_peer=True)["idle_timeout"] == 30.0
    assert set_30s.pool_options(sidecar_peer=False)["idle_timeout"] == APP_IDLE_TIMEOUT
    set_short = limits(http={"idleTimeout": "500ms"})
    assert set_short.pool_options(sidecar_peer=True)["idle_timeout"] == 0.5
    assert set_short.pool_options(sidecar_peer=False)["idle_timeout"] == 0.5


def test_zero_means_unset() -> None:
    # Istio only sets a threshold when the value is > 0.
    lim = limits(tcp={"maxConnections": 0}, http={"http1MaxPendingRequests": 0, "maxRetries": 0})
    assert (lim.max_connections, lim.max_pending, lim.max_retries) == (UNLIMITED,) * 3


# -- the breaker -------------------------------------------------------------------------------
def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_acquire_and_release_under_the_limit() -> None:
    async def go() -> None:
        cb = CircuitBreaker(Limits(max_connections=2))
        assert await cb.acquire() is None
        assert await cb.acquire() is None
        assert (cb.connections, cb.requests) == (2, 2)
        cb.release()
        cb.release()
        assert (cb.connections, cb.requests, len(cb.pending)) == (0, 0, 0)
        assert not cb.stats

    run(go())


def test_pending_queue_then_pending_overflow() -> None:
    async def go() -> None:
        cb = CircuitBreaker(Limits(max_connections=1, max_pending=1))
        assert await cb.acquire() is None
        waiter = asyncio.create_task(cb.acquire())
        await asyncio.sleep(0)
        assert not waiter.done() and len(cb.pending) == 1
        assert cb.open
        assert await cb.acquire() == "upstream_rq_pending_overflow"
        assert cb.stats["upstream_rq_pending_overflow"] == 1
        assert cb.stats["upstream_rq_pending_total"] == 1
        assert cb.stats["upstream_cx_overflow"] == 2
        cb.release()  # the connection goes straight to the pending request
        assert await waiter is None
        assert (cb.connections, cb.requests, len(cb.pending)) == (1, 1, 0)
        cb.release()
        assert (cb.connections, cb.requests) == (0, 0)
        assert not cb.open

    run(go())


def test_pending_requests_are_served_in_order() -> None:
    async def go() -> None:
        cb = CircuitBreaker(Limits(max_connections=1, max_pending=5))
        await cb.acquire()
        order: list[int] = []

        async def one(i: int) -> None:
            await cb.acquire()
            order.append(i)

        tasks = [asyncio.create_task(one(i)) for i in range(3)]
        await asyncio.sleep(0)
        for _ in range(3):
            cb.release()
            await asyncio.sleep(0)
        await asyncio.gather(*tasks)
        assert order == [0, 1, 2]
        cb.release()
        assert (cb.connections, cb.requests) == (0, 0)

    run(go())


def test_cancel_while_pending_leaves_the_queue() -> None:
    async def go() -> None:
        cb = CircuitBreaker(Limits(max_connections=1, max_pending=1))
        await cb.acquire()
        waiter = asyncio.create_task(cb.acquire())
        await asyncio.sleep(0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert (cb.connections, cb.requests, len(cb.pending)) == (1, 1, 0)
        # the slot in the queue is free again
        other = asyncio.create_task(cb.acquire())
        await asyncio.sleep(0)
        assert len(cb.pending) == 1
        cb.release()
        assert await other is None
        cb.release()
        assert (cb.connections, cb.requests) == (0, 0)

    run(go())


def test_cancel_just_after_being_handed_the_connection_passes_it_on() -> None:
    async def go() -> None:
        cb = CircuitBreaker(Limits(max_connections=1, max_pending=2))
        await cb.acquire()
        first = asyncio.create_task(cb.acquire())
        second = asyncio.create_task(cb.acquire())
        await asyncio.sleep(0)
        cb.release()  # hands the connection to `first`...
        first.cancel()  # ...which gives up before it could use it
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await second is None  # the connection went on to the next in line
        assert (cb.connections, cb.requests, len(cb.pending)) == (1, 1, 0)
        cb.release()
        assert (cb.connections, cb.requests) == (0, 0)

    run(go())


def test_cancel_after_the_queue_was_swept_by_a_release() -> None:
    async def go() -> None:
        cb = CircuitBreaker(Limits(max_connections=1, max_pending=1))
        await cb.acquire()
        waiter = asyncio.create_task(cb.acquire())
        await asyncio.sleep(0)
        waiter.cancel()  # cancelled, but its task has not run yet...
        cb.release()  # ...when a release skips (and drops) its cancelled place in the queue
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert (cb.connections, cb.requests, len(cb.pending)) == (0, 0, 0)

    run(go())


def test_max_requests_overflow() -> None:
    async def go() -> None:
        cb = CircuitBreaker(Limits(max_requests=2))
        assert await cb.acquire() is None
        assert await cb.acquire() is None
        assert await cb.acquire() == "upstream_rq_overflow"
        assert cb.stats["upstream_rq_overflow"] == 1
        cb.release()
        assert await cb.acquire() is None

    run(go())


def test_retry_budget() -> None:
    cb = CircuitBreaker(Limits(max_retries=1))
    assert cb.try_retry()
    assert not cb.try_retry()
    assert cb.stats["upstream_rq_retry_overflow"] == 1
    cb.retry_done()
    assert cb.try_retry()


# -- end to end --------------------------------------------------------------------------------
def dr(pool: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: httpbin}}
spec:
  host: httpbin
  trafficPolicy:
    connectionPool: {pool}
"""


def client_stat(mesh: Mesh, name: str) -> int:
    s = mesh.stats(pod="curl", contains="httpbin")
    return int(s[s.stat.str.endswith("." + name)].value.sum())


@pytest.fixture
def httpbin(mesh: Mesh) -> Mesh:
    mesh.deploy("httpbin", make_app(), replicas=1)
    return mesh


def test_one_connection_one_pending(httpbin: Mesh) -> None:
    mesh = httpbin
    mesh.apply(dr("{tcp: {maxConnections: 1}, http: {http1MaxPendingRequests: 1}}"))
    for concurrency in (1, 2):  # one on the connection, one waiting: nobody is refused
        res = mesh.load("httpbin", "/delay/0.005", concurrency=concurrency, requests=40, progress=False)
        assert set(res.df.status) == {200} and set(res.df.response_flags) == {"-"}
    assert client_stat(mesh, "upstream_rq_pending_overflow") == 0
    res = mesh.load("httpbin", "/delay/0.005", concurrency=4, requests=80, progress=False)
    refused = res.df[res.df.status == 503]
    assert len(refused) > 0
    assert set(refused.response_flags) == {"UO"}
    assert set(res.df.status) == {200, 503}
    assert set(res.df[res.df.status == 200].response_flags) == {"-"}
    assert client_stat(mesh, "upstream_rq_pending_overflow") == len(refused)
    # refused requests never reach the service, and are not retried
    served = mesh.access_log(reporter="destination")
    assert len(served) == 40 + 40 + (80 - len(refused))
    uo = mesh.access_log(reporter="source")
    uo = uo[uo.response_flags == "UO"]
    assert len(uo) == len(refused) and set(uo.response_code) == {503}
    assert set(uo.response_code_details) == {"upstream_overflow"}


def test_http2_max_requests_overflow(httpbin: Mesh) -> None:
    mesh = httpbin
    mesh.apply(dr("{http: {http2MaxRequests: 1}}"))
    res = mesh.load("httpbin", "/delay/0.005", concurrency=3, requests=60, progress=False)
    refused = res.df[res.df.response_flags == "UO"]
    assert len(refused) > 0 and set(refused.status) == {503}
    assert client_stat(mesh, "upstream_rq_overflow") == len(refused)
    assert client_stat(mesh, "upstream_rq_pending_overflow") == 0


def opened(mesh: Mesh) -> tuple[int, int]:
    """(connections opened, requests on reused connections) from the client sidecar to httpbin."""
    port = mesh.replicas("httpbin")[0].sidecar.inbound.port  # type: ignore[union-attr]

    async def count() -> tuple[int, int]:
        pools = [p for p in mesh.client_sidecar.pools.pools.values() if p.port == port]  # type: ignore[union-attr]
        return sum(p.opened for p in pools), sum(p.reused for p in pools)

    return mesh._run(count())


def test_max_requests_per_connection_one_opens_a_connection_per_request(httpbin: Mesh) -> None:
    mesh = httpbin
    mesh.apply(dr("{http: {http2MaxRequests: 100}}"))  # a rule without the per-connection limit
    for _ in range(10):
        assert mesh.call("httpbin", "/get").status_code == 200
    before = opened(mesh)
    assert before[0] <= 2 and before[1] >= 8  # keep-alive: connections are reused
    mesh.apply(dr("{http: {maxRequestsPerConnection: 1}}"))
    for _ in range(10):
        assert mesh.call("httpbin", "/get").status_code == 200
    after = opened(mesh)
    assert after[0] - before[0] == 10
    assert after[1] == before[1]


def test_a_pause_keeps_the_sidecar_to_sidecar_connection_unless_idle_timeout_says_otherwise(httpbin: Mesh) -> None:
    """Envoy keeps idle upstream connections for an hour: a pause between calls (longer than the
    2 s a pool keeps connections to a plain app server) costs no new connection, nor a new mTLS
    handshake; a DestinationRule's ``http.idleTimeout`` shortens it."""
    import time

    mesh = httpbin
    assert mesh.call("httpbin", "/get").status_code == 200
    first = opened(mesh)
    time.sleep(APP_IDLE_TIMEOUT + 0.3)
    assert mesh.call("httpbin", "/get").status_code == 200
    assert opened(mesh)[0] == first[0]
    mesh.apply(dr("{http: {idleTimeout: 0.2s}}"))
    assert mesh.call("httpbin", "/get").status_code == 200
    before = opened(mesh)
    time.sleep(0.4)
    assert mesh.call("httpbin", "/get").status_code == 200
    assert opened(mesh)[0] == before[0] + 1
