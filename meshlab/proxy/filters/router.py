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

import time
from typing import TYPE_CHECKING

from .. import flags as F
from ..http1 import Headers, Request, Response, local_reply
from ..pool import ConnectFailure, UpstreamReset
from . import actions

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..stream import Stream
    from . import Next

__all__ = ["Router", "InboundRouter", "PEER_HEADER", "pick_weighted"]

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


async def send_upstream(stream: Stream, host_addr: tuple[str, int], req: Request) -> Response:
    """Send ``req`` to ``host_addr`` through the sidecar's pools, mapping failures to flags."""
    t0 = time.perf_counter()
    try:
        resp = await stream.sidecar.pools.send(host_addr[0], host_addr[1], req, req.path)
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


class Router:
    """Outbound router: route, pick a cluster and a host, forward (see module docstring).

    Route actions from a VirtualService, in Envoy's order: ``redirect`` or ``directResponse``
    answer at once; otherwise ``rewrite`` and request ``headers`` operations change the request,
    a weighted destination is drawn, ``mirror`` copies are sent (fire and forget, responses
    ignored), the request is forwarded and response ``headers`` operations apply."""

    name = "envoy.filters.http.router"

    def route_table(self, stream: Stream):  # type: ignore[no-untyped-def]
        """The virtual hosts this proxy routes with (a gateway overrides this)."""
        return None

    async def __call__(self, stream: Stream, next: Next) -> Response:
        sidecar = stream.sidecar
        vhost = stream.snapshot.virtual_host(stream.authority, sidecar.namespace, self.route_table(stream))
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
        """Send to the cluster (the resilience chapter wraps this with timeouts and retries)."""
        return await self.forward(stream, cluster)

    async def forward(self, stream: Stream, cluster: Cluster, exclude: set[str] | None = None) -> Response:
        """One attempt: choose a host of ``cluster`` and send the request there."""
        key = actions.hash_key(stream, cluster) if cluster.config.hash_on else None
        host = cluster.choose(key, exclude=exclude)
        if host is None:
            stream.flag(F.UH)
            stream.details = "no_healthy_upstream"
            return local_reply(503, "no healthy upstream")
        stream.host = host
        req = stream.request
        req.headers.set(PEER_HEADER, stream.sidecar.identity.header_value())
        ep = host.endpoint
        host.active_rq += 1
        host.rq_total += 1
        try:
            resp = await send_upstream(stream, (ep.host, ep.port), req)
        finally:
            host.active_rq -= 1
        if resp.status >= 500:
            host.rq_error += 1
        cookie = stream.extra.get("set_cookie")
        if cookie:
            resp.headers.add("set-cookie", cookie)
        return resp


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
