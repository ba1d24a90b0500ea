"""Circuit breaking: DestinationRule ``trafficPolicy.connectionPool`` limits, enforced per
upstream cluster in each client sidecar, as Envoy's circuit breakers are.

Theory of operation
-------------------
On HTTP/1.1 a request needs a connection of its own while it is in flight. So:

* ``tcp.maxConnections``: at most this many requests can be on connections to the cluster at
  once. A request that finds every connection busy waits in the *pending* queue...
* ``http.http1MaxPendingRequests``: ...of at most this many requests. A request that finds the
  queue full is refused at once: **503, response flag UO**, counter
  ``upstream_rq_pending_overflow``. Nothing reaches the service: the breaker protects it.
* ``http.http2MaxRequests``: at most this many requests in flight (queued or not) to the
  cluster; beyond, 503 UO and ``upstream_rq_overflow``.
* ``http.maxRetries``: at most this many retries outstanding across the cluster; a retry over
  the budget is not made (``upstream_rq_retry_overflow``).

When a request finishes, its connection goes straight to the first pending request. Istio's
defaults are effectively unlimited (2**32 - 1), so the breaker only trips when a rule sets a
limit. Envoy's real limits are checked with some slack across its worker threads; here they
are exact, so the numbers of the circuit-breaking task differ slightly (the notebook says so).
"""

from __future__ import annotations

import asyncio
from collections import Counter, deque
from dataclasses import dataclass
from typing import Any

from ..config.duration import parse_duration

__all__ = ["Limits", "CircuitBreaker", "UNLIMITED", "ENVOY_IDLE_TIMEOUT", "APP_IDLE_TIMEOUT"]

UNLIMITED = 2**32 - 1
#: Envoy's default idle timeout of upstream HTTP connections (Istio leaves it at one hour): a
#: sidecar keeps its connections to other sidecars (and their mTLS sessions) between bursts.
ENVOY_IDLE_TIMEOUT = 3600.0
#: Connections to a peer without a sidecar (an app server, a service outside the mesh) expire
#: sooner than that server's keep-alive (uvicorn: 5 s), so the pool never reuses one the server
#: is closing.
APP_IDLE_TIMEOUT = 2.0


@dataclass(frozen=True)
class Limits:
    """The connection-pool limits of one cluster (Istio's defaults: unlimited)."""

    max_connections: int = UNLIMITED
    max_pending: int = UNLIMITED
    max_requests: int = UNLIMITED
    max_retries: int = UNLIMITED
    max_requests_per_connection: int = 0
    connect_timeout: float = 10.0
    idle_timeout: float | None = None  # http.idleTimeout; None: Envoy's default (see pool_options)

    @classmethod
    def from_policy(cls, policy: Any) -> Limits:
        """Limits from an effective DestinationRule trafficPolicy (None: defaults)."""
        cp = getattr(policy, "connectionPool", None) if policy is not None else None
        if cp is None:
            return cls()
        tcp, http = cp.tcp, cp.http
        kw: dict[str, Any] = {}
        if tcp is not None:
            if tcp.maxConnections:
                kw["max_connections"] = tcp.maxConnections
            if tcp.connectTimeout:
                kw["connect_timeout"] = parse_duration(tcp.connectTimeout)
        if http is not None:
            if http.http1MaxPendingRequests:
                kw["max_pending"] = http.http1MaxPendingRequests
            if http.http2MaxRequests:
                kw["max_requests"] = http.http2MaxRequests
            if http.maxRetries:
                kw["max_retries"] = http.maxRetries
            if http.maxRequestsPerConnection:
                kw["max_requests_per_connection"] = http.maxRequestsPerConnection
            if http.idleTimeout:
                kw["idle_timeout"] = parse_duration(http.idleTimeout)
        return cls(**kw)

    def pool_options(self, sidecar_peer: bool = True) -> dict[str, float]:
        """Options for this cluster's connection pool to one endpoint: ``http.idleTimeout``
        (default one hour, as in Envoy) when the endpoint is another sidecar, which never closes
        an idle connection itself; at most ``APP_IDLE_TIMEOUT`` when it is a plain server."""
        idle = self.idle_timeout if self.idle_timeout is not None else ENVOY_IDLE_TIMEOUT
        if not sidecar_peer:
            idle = min(idle, APP_IDLE_TIMEOUT)
        return {"connect_timeout": self.connect_timeout, "idle_timeout": idle,
                "max_requests_per_connection": self.max_requests_per_connection}


class CircuitBreaker:
    """The live counters of one cluster's limits (see the module docstring)."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.connections = 0  # requests holding a connection
        self.requests = 0  # requests in flight, pending or on a connection
        self.retries = 0  # retries outstanding
        self.pending: deque[asyncio.Future[None]] = deque()
        self.stats: Counter[str] = Counter()

    async def acquire(self) -> str | None:
        """Wait for a connection; None when granted, else the overflow counter's name (the
        request must then be refused with 503 UO)."""
        lim = self.limits
        if self.requests >= lim.max_requests:
            self.stats["upstream_rq_overflow"] += 1
            return "upstream_rq_overflow"
        if self.connections < lim.max_connections:
            self.connections += 1
            self.requests += 1
            return None
        self.stats["upstream_cx_overflow"] += 1
        if len(self.pending) >= lim.max_pending:
            self.stats["upstream_rq_pending_overflow"] += 1
            return "upstream_rq_pending_overflow"
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.pending.append(fut)
        self.requests += 1
        self.stats["upstream_rq_pending_total"] += 1
        try:
            await fut  # release() hands us its connection
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                # We were handed a connection just as we gave up: release() both ends our
                # request and passes the connection on (decrementing here too would count
                # this request twice).
                self.release()
            else:
                self.requests -= 1
                try:
                    self.pending.remove(fut)
                except ValueError:  # a release() already dropped our cancelled place
                    pass
            raise
        return None

    def release(self) -> None:
        """A request finished: hand its connection to the first pending request, if any."""
        self.requests -= 1
        while self.pending:
            fut = self.pending.popleft()
            if not fut.done():
                fut.set_result(None)
                return
        self.connections -= 1

    def try_retry(self) -> bool:
        """Take one retry from the budget (False: over ``maxRetries``)."""
        if self.retries >= self.limits.max_retries:
            self.stats["upstream_rq_retry_overflow"] += 1
            return False
        self.retries += 1
        return True

    def retry_done(self) -> None:
        """A retry finished."""
        self.retries -= 1

    @property
    def open(self) -> bool:
        """Whether new requests would be refused right now."""
        lim = self.limits
        return self.requests >= lim.max_requests or (
            self.connections >= lim.max_connections and len(self.pending) >= lim.max_pending)
