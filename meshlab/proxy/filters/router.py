"""The router filters: the last filter of each chain, the one that actually forwards.

Outbound (``Router``, in the client's sidecar)::

    authority --virtual host--> route (first match) --weights--> cluster --load balancer--> host

then the request is sent to the host (the destination replica's sidecar) through the keep-alive
pool. What can go wrong maps onto Envoy's response flags: no virtual host or no matching route
-> 404 NR; no healthy host -> 503 UH; cannot connect -> 503 UF; connection dropped before a
complete response -> 503 UC.

Inbound (``InboundRouter``, in the server's sidecar): forwards to the local app; an app that does
not answer (crashed) -> 503 UF.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING

from ...config.duration import parse_duration
from ...security.peer_authentication import effective_mode
from ...timers import sleep_at_least
from .. import flags as F
from ..http1 import Headers, Request, Response, local_reply
from ..pool import ConnectFailure, UpstreamReset
from ..retry import Outcome, RetryPolicy
from . import actions

if TYPE_CHECKING:
    from ..cluster import Cluster, EndpointConfig
    from ..route import Route, VirtualHost
    from ..stream import Stream
    from . import Next

__all__ = ["Router", "InboundRouter", "PEER_HEADER", "pick_weighted", "resolve_route", "route_policies"]

#: Carries the caller's identity from the client sidecar to the server sidecar (Istio's
#: metadata exchange uses x-envoy-peer-metadata[-id] for the same purpose on plaintext HTTP).
PEER_HEADER = "x-envoy-peer-metadata-id"

CONNECT_FAILURE = "upstream connect error or disconnect/reset before headers. reset reason: connection failure"
CONNECTION_TERMINATION = (
    "upstream connect error or disconnect/reset before headers. reset reason: connection termination"
)


def pick_weighted(choices, rng):  # type: ignore[no-untyped-def]
    """A weighted draw among ``WeightedCluster``s (weights 0-100)."""
    if len(choices) == 1:
        return choices[0]
    total = sum(c.weight for c in choices)
    if total <= 0:
        return choices[0]
    x = rng.random() * total
    for c in choices:
        x -= c.weight
        if x < 0:
            return c
    return choices[-1]


async def send_upstream(stream: Stream, host_addr: tuple[str, int], req: Request,
                        options: dict[str, float] | None = None) -> Response:
    """Send ``req`` to ``host_addr`` through the sidecar's pools, mapping failures to flags."""
    t0 = time.perf_counter()
    try:
        resp = await stream.sidecar.pools.send(host_addr[0], host_addr[1], req, req.path, options)
    except ConnectFailure:
        stream.flag(F.UF)
        stream.details = "upstream_reset_before_response_started{connection_failure}"
        return local_reply(503, CONNECT_FAILURE)
    except UpstreamReset:
        stream.flag(F.UC)
        stream.details = "upstream_reset_before_response_started{connection_termination}"
        return local_reply(503, CONNECTION_TERMINATION)
    finally:
        stream.upstream_time_ms = (time.perf_counter() - t0) * 1000.0
    stream.details = stream.details or "via_upstream"
    return resp


def resolve_route(stream: Stream, table: dict[str, VirtualHost] | None = None) -> Response | None:
    """Pick the route for a request (Envoy's connection manager does this before the filters
    run, so the fault filter can read the route). Returns a 404 NR reply when nothing matches."""
    vhost = stream.snapshot.virtual_host(stream.authority, stream.sidecar.namespace, table)
    if vhost is None:
        stream.flag(F.NR)
        stream.details = "route_not_found"
        return local_reply(404, f"no route: {stream.authority!r} is not a service in the mesh\n")
    route = vhost.select(stream.request, stream)
    if route is None:
        stream.flag(F.NR)
        stream.details = "route_not_found"
        return local_reply(404, f"no route: no route of {vhost.name} matches {stream.path}\n")
    stream.route = route
    return None


#: flags that describe one try; cleared before the next try
PER_TRY_FLAGS = frozenset({F.UF, F.UC, F.UT, F.UH, F.UO})


class Router:
    """Outbound router: route, pick a cluster and a host, forward (see module docstring).

    Route actions from a VirtualService, in Envoy's order: ``redirect`` or ``directResponse``
    answer at once; otherwise ``rewrite`` and request ``headers`` operations change the request,
    a weighted destination is drawn, ``mirror`` copies are sent (fire and forget, responses
    ignored), the request is forwarded and response ``headers`` operations apply."""

    name = "envoy.filters.http.router"

    async def __call__(self, stream: Stream, next: Next) -> Response:
        sidecar = stream.sidecar
        route = stream.route
        if route is None:
            no_route = resolve_route(stream, stream.sidecar.route_table(stream))
            if no_route is not None:
                return no_route
            route = stream.route
            assert route is not None
        http = route.action.get("http")
        if http is not None:
            if http.redirect is not None:
                stream.details = "direct_response"
                return actions.redirect(stream, http.redirect)
            if http.directResponse is not None:
                stream.details = "direct_response"
                return actions.direct_response(http.directResponse)
            actions.rewrite(stream, http.rewrite, route)
            actions.request_headers(stream.request.headers, http.headers)
        direct = route.action.get("direct")
        if direct is not None:  # e.g. REGISTRY_ONLY: a host outside the registry is black-holed
            stream.cluster = direct[1]
            stream.details = "direct_response"
            return Response(direct[0], Headers(), b"")
        if not route.clusters:
            stream.flag(F.NR)
            return local_reply(404, "route has no destination\n")
        choice = pick_weighted(route.clusters, sidecar.rng)
        if http is not None:
            actions.request_headers(stream.request.headers, route.action["dest_headers"].get(choice.cluster))
            for mirror_cluster, percent in route.action["mirrors"]:
                actions.mirror(stream, mirror_cluster, percent)
        cluster = sidecar.cluster(stream.snapshot, choice.cluster)
        if cluster is None:
            stream.flag(F.NC)
            stream.details = "cluster_not_found"
            stream.cluster = choice.cluster
            return local_reply(503, f"no cluster {choice.cluster} (is the subset defined in a DestinationRule?)\n")
        stream.cluster = cluster.config.name
        resp = await self.upstream(stream, cluster)
        if http is not None:
            actions.response_headers(resp.headers, http.headers)
            actions.response_headers(resp.headers, route.action["dest_headers"].get(choice.cluster))
        return resp

    async def upstream(self, stream: Stream, cluster: Cluster) -> Response:
        """Send to the cluster under the route's timeout and retry policy.

        The route ``timeout`` (off unless set) spans every try: when it expires the request is
        cancelled upstream and answered 504 UT. Tries follow the retry policy; a route with a
        ``fault`` gets neither timeout nor retries (Istio's rule)."""
        timeout, policy = self.policies(stream)
        if timeout is None:
            return await self.tries(stream, cluster, policy)
        try:
            return await asyncio.wait_for(self.tries(stream, cluster, policy), timeout)
        except TimeoutError:
            stream.flags[:] = [f for f in stream.flags if f not in PER_TRY_FLAGS]
            stream.flag(F.UT)
            stream.details = "upstream_response_timeout"
            stream.sidecar.stats[f"cluster.{cluster.config.name}.upstream_rq_timeout"] += 1
            if stream.host is not None:  # a hanging host counts as failing (Envoy reports a 504)
                cluster.report(stream.host, 504)
            return local_reply(504, "upstream request timeout")

    @staticmethod
    def policies(stream: Stream) -> tuple[float | None, RetryPolicy]:
        """(route timeout, retry policy) of the stream's route."""
        return route_policies(stream.route)


    async def tries(self, stream: Stream, cluster: Cluster, policy: RetryPolicy) -> Response:
        """The first try and the retries the policy allows (preferring hosts not yet tried)."""
        stats = stream.sidecar.stats
        prefix = f"cluster.{cluster.config.name}"
        tried: set[str] = set()
        n = 0
        holds_budget = False  # a retry holds one unit of the maxRetries budget until it answers
        try:
            while True:
                n += 1
                stream.attempts = n
                stream.flags[:] = [f for f in stream.flags if f not in PER_TRY_FLAGS]
                resp, outcome = await self.one_try(stream, cluster, policy.per_try_timeout, tried)
                if holds_budget:
                    cluster.breaker.retry_done()
                    holds_budget = False
                if not policy.retriable(outcome):
                    if n > 1:
                        stats[f"{prefix}.upstream_rq_retry_success"] += 1
                    return resp
                if n > policy.attempts:
                    if policy.attempts:
                        stream.flag(F.URX)
                        stats[f"{prefix}.upstream_rq_retry_limit_exceeded"] += 1
                    return resp
                if not cluster.breaker.try_retry():
                    stream.flag(F.UO)
                    stats[f"{prefix}.upstream_rq_retry_overflow"] += 1
                    return resp
                holds_budget = True
                stats[f"{prefix}.upstream_rq_retry"] += 1
                await sleep_at_least(policy.backoff(n, stream.sidecar.rng))
        finally:
            if holds_budget:
                cluster.breaker.retry_done()

    async def one_try(self, stream: Stream, cluster: Cluster, per_try_timeout: float | None,
                      tried: set[str]) -> tuple[Response, Outcome]:
        """One try: a host, a connection slot from the circuit breaker, the request."""
        if per_try_timeout is None:
            return await self.forward(stream, cluster, tried)
        try:
            return await asyncio.wait_for(self.forward(stream, cluster, tried), per_try_timeout)
        except TimeoutError:
            stream.flag(F.UT)
            stream.details = "upstream_per_try_timeout"
            if stream.host is not None:
                cluster.report(stream.host, 504)
            return local_reply(504, "upstream request timeout"), Outcome(0, "timeout")

    async def forward(self, stream: Stream, cluster: Cluster,
                      tried: set[str] | None = None) -> tuple[Response, Outcome]:
        """Choose a host of ``cluster`` and send the request there."""
        key = actions.hash_key(stream, cluster) if cluster.config.hash_on else None
        host = cluster.choose(key, exclude=tried)
        if host is None:
            stream.flag(F.UH)
            stream.details = "no_healthy_upstream"
            return local_reply(503, "no healthy upstream"), Outcome(503, "no-host")
        overflow = await cluster.breaker.acquire()
        if overflow is not None:
            stream.flag(F.UO)
            stream.details = "upstream_overflow"
            stream.sidecar.stats[f"cluster.{cluster.config.name}.{overflow}"] += 1
            return local_reply(503, "upstream connect error or disconnect/reset before headers. reset reason: "
                                    "overflow"), Outcome(503, "overflow")
        stream.host = host
        ep = host.endpoint
        if tried is not None:
            tried.add(ep.address)
        req = stream.request
        req.headers.set(PEER_HEADER, stream.sidecar.identity.header_value())
        req.headers.set("x-envoy-attempt-count", str(stream.attempts or 1))
        host.active_rq += 1
        host.rq_total += 1
        options = cluster.limits.pool_options(sidecar_peer=bool(ep.principal))
        if use_mtls(stream, cluster, ep):
            ctx = stream.sidecar.client_context()
            if ctx is not None:
                options = {**options, "ssl": ctx, "expect_principal": ep.principal}
                stream.extra["upstream_mtls"] = True
        try:
            resp = await send_upstream(stream, (ep.host, ep.port), req, options)
        finally:
            host.active_rq -= 1
            cluster.breaker.release()
        if resp.status >= 500:
            host.rq_error += 1
        cluster.report(host, resp.status)
        cookie = stream.extra.get("set_cookie")
        if cookie:
            resp.headers.add("set-cookie", cookie)
        failure = "connect-failure" if F.UF in stream.flags else ("reset" if F.UC in stream.flags else "")
        return resp, Outcome(0 if failure else resp.status, failure, resp.headers.get("grpc-status"))


NO_RETRIES = RetryPolicy(attempts=0)


def route_policies(route: Route | None) -> tuple[float | None, RetryPolicy]:
    """(timeout, retry policy) of a route, compiled once per route."""
    if route is None:
        return None, NO_RETRIES
    cached = route.action.get("_policies")
    if cached is None:
        http = route.action.get("http")
        if http is None:
            cached = (None, RetryPolicy())
        else:
            # A route's fault does not remove its timeout and retries (Istio sets both on the
            # route regardless); the fault filter runs first, so an injected abort is never
            # retried and an injected delay never counts against the timeout.
            timeout = parse_duration(http.timeout) if http.timeout else None
            cached = (timeout, RetryPolicy.from_istio(http.retries, timeout))
        route.action["_policies"] = cached
    return cached


def use_mtls(stream: Stream, cluster: Cluster, ep: EndpointConfig) -> bool:
    """Whether to originate mutual TLS to ``ep``: DestinationRule ``tls.mode`` ISTIO_MUTUAL
    always, DISABLE never; unset (Istio's *auto mTLS*): whenever the endpoint has a sidecar and
    its PeerAuthentication does not DISABLE mTLS."""
    mode = cluster.config.tls_mode
    if mode == "DISABLE" or not ep.principal:
        return False
    if mode == "ISTIO_MUTUAL":
        return True
    cache = stream.snapshot.extra.setdefault("_auto_mtls", {})
    key = (ep.address, cluster.config.port)
    decision = cache.get(key)
    if decision is None:
        policies = stream.snapshot.extra.get("peer_auth", [])
        decision = cache[key] = (not policies or effective_mode(policies, ep.namespace, ep.label_dict(),
                                                                cluster.config.port) != "DISABLE")
    return decision


class InboundRouter:
    """Inbound router: hand the request to the local app."""

    name = "envoy.filters.http.router"

    async def __call__(self, stream: Stream, next: Next) -> Response:
        server = stream.sidecar.app_server
        if server is None or not server.serving:
            stream.flag(F.UF)
            stream.details = "upstream_reset_before_response_started{connection_failure}"
            return local_reply(503, CONNECT_FAILURE)
        stream.cluster = f"inbound|{server.port}||"
        return await send_upstream(stream, (server.host, server.port), stream.request)


def strip_mesh_headers(headers: Headers) -> None:
    """Remove the headers only sidecars exchange, before a request reaches an app."""
    headers.remove(PEER_HEADER)
