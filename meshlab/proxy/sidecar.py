"""The sidecar proxy: one per replica, intercepting everything that goes in or out of its app.

Theory of operation
-------------------
A sidecar owns three listeners on 127.0.0.1 (ports chosen by the OS):

* **outbound**: the app's HTTP proxy. An app (through ``meshlab.client()``) sends every call
  here, naming the destination service in the URL (``http://cart/items``) or the Host header.
  The outbound filter chain ends in the ``Router``: route -> cluster -> host -> forward to the
  destination replica's *inbound* listener.
* **inbound**: what the rest of the mesh calls. Its filter chain ends in the ``InboundRouter``,
  which forwards to the local app.
* **admin**: Envoy's admin port in small: ``/stats``, ``/stats/prometheus``, ``/clusters``,
  ``/config_dump``, ``/ready``.

Each request becomes a ``Stream``; when it ends, the sidecar writes one access-log entry and
records Istio's metrics for it: as ``reporter="source"`` on the outbound side and as
``reporter="destination"`` on the inbound side. Every request gets an ``x-request-id`` if it has
none. Configuration comes from the control plane (``pilot.snapshot``), read once per request.
"""

from __future__ import annotations

import asyncio
import json
import random
import ssl
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from ..security.peer_authentication import effective_mode
from ..telemetry.accesslog import AccessLog, AccessLogEntry
from ..telemetry.metrics import IstioMetrics
from . import flags as F
from .cluster import Cluster
from .filters import HttpFilter, run_chain
from .filters.authn import AuthnFilter
from .filters.authz import AuthzFilter
from .filters.fault import FaultFilter
from .filters.router import InboundRouter, Router, resolve_route, strip_mesh_headers
from .http1 import Headers, Listener, Request, Response, ServerConnection, local_reply
from .pool import PoolSet
from .route import Snapshot, VirtualHost
from .stream import UNKNOWN_PEER, Peer, Stream
from .tls import SniffingConnection

if TYPE_CHECKING:
    from ..control.pilot import Pilot
    from ..runtime import AppServer
    from ..security.agent import IstioAgent
    from ..telemetry.tracing import Tracing
    from ..workload import Replica

__all__ = ["Sidecar"]


class Sidecar:
    """One sidecar proxy (see the module docstring)."""

    def __init__(self, pilot: Pilot, identity: Peer, namespace: str, rng: random.Random,
                 replica: Replica | None = None, clock: Callable[[], float] = time.time) -> None:
        self.pilot = pilot
        self.identity = identity
        self.namespace = namespace
        self.rng = rng
        self.replica = replica
        self.clock = clock
        self.name = identity.pod or identity.workload
        self.inbound = Listener(f"{self.name} inbound", self._handle_inbound)
        self.outbound = Listener(f"{self.name} outbound", self._handle_outbound)
        self.admin = Listener(f"{self.name} admin", self._handle_admin)
        self.pools = PoolSet()
        self.app_pools = PoolSet()  # the local app's connections to this outbound listener
        self.clusters: dict[str, Cluster] = {}
        self.outbound_filters: list[HttpFilter] = [FaultFilter(), Router()]
        self.inbound_filters: list[HttpFilter] = [AuthnFilter(), AuthzFilter(), InboundRouter()]
        self.metrics = IstioMetrics()
        self.access_log = AccessLog()
        self.stats: Counter[str] = Counter()
        self.config_version = 0
        #: True for a gateway: requests on its outbound listener come from outside the mesh
        self.edge = False
        #: inbound requests being handled now (a replica being removed waits for these)
        self.active_inbound = 0
        #: the clock outlier detection uses (replace it in tests to move time by hand)
        self.monotonic: Callable[[], float] = time.monotonic
        self.labels: dict[str, str] = dict(replica.labels) if replica is not None else {"app": identity.app}
        self._tasks: set[asyncio.Task[None]] = set()
        #: the mesh's tracer (None: tracing off)
        self.tracing: Tracing | None = None
        #: istio-agent: this proxy's certificate (set by the mesh; None: no mTLS possible)
        self.agent: IstioAgent | None = None
        #: the service port the inbound listener stands for (PeerAuthentication portLevelMtls)
        self.port = 80
        self.inbound.protocol_factory = lambda: SniffingConnection(
            self._handle_inbound, self.inbound, self.mtls_mode, self._server_context, self._refused)

    def spawn(self, coro: Any) -> None:
        """Run a background task owned by this sidecar (mirrored requests); cancelled on close."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # -- lifecycle ----------------------------------------------------------------------------
    async def start(self) -> None:
        """Start the three listeners."""
        await self.inbound.start()
        await self.outbound.start()
        await self.admin.start()

    async def close(self) -> None:
        """Close listeners and upstream connections."""
        await self.inbound.close()
        await self.outbound.close()
        await self.admin.close()
        for task in list(self._tasks):
            task.cancel()
        self.pools.close()
        self.app_pools.close()

    @property
    def app_server(self) -> AppServer | None:
        """The local app's server (None for a sidecar without an app)."""
        return self.replica.server if self.replica is not None else None

    @property
    def admin_url(self) -> str:
        """Base URL of the admin listener (Envoy's admin port)."""
        return f"http://{self.admin.address}"

    @property
    def outbound_url(self) -> str:
        """Base URL of the outbound listener (the app's HTTP proxy)."""
        return f"http://{self.outbound.address}"

    # -- configuration ------------------------------------------------------------------------
    def cluster(self, snapshot: Snapshot, name: str) -> Cluster | None:
        """This sidecar's state for cluster ``name`` at ``snapshot`` (created or updated)."""
        config = snapshot.clusters.get(name)
        if config is None:
            return None
        state = self.clusters.get(name)
        if state is None:
            state = self.clusters[name] = Cluster(config, self.rng, self.monotonic)
        elif state.config is not config:
            state.update(config)
        self.config_version = snapshot.version
        return state

    # -- data path ----------------------------------------------------------------------------
    # -- mutual TLS ---------------------------------------------------------------------------
    def mtls_mode(self) -> str:
        """The PeerAuthentication mode this workload's inbound port enforces now."""
        policies = self.pilot.snapshot.extra.get("peer_auth", [])
        return effective_mode(policies, self.namespace, self.labels, self.port) if policies else "PERMISSIVE"

    def _server_context(self) -> ssl.SSLContext:
        if self.agent is None:
            raise RuntimeError(f"{self.name} has no certificate agent")
        return self.agent.certificate().server_context

    def client_context(self) -> ssl.SSLContext | None:
        """The TLS context for mTLS connections this proxy originates (None without an agent)."""
        return self.agent.certificate().client_context if self.agent is not None else None

    def _refused(self, why: str) -> None:
        self.stats[f"inbound.downstream_cx_refused.{why.split(':')[0]}"] += 1

    def route_table(self, stream: Stream) -> dict[str, VirtualHost] | None:
        """The virtual hosts this proxy routes with (None: the mesh's; a gateway has its own)."""
        return None

    async def _handle_outbound(self, req: Request, conn: ServerConnection) -> Response:
        stream = Stream(self, "outbound", req, self.pilot.snapshot, _addr(conn.peer))
        stream.source = self.identity
        if self.edge:  # a gateway's callers come from outside the mesh: no identity
            stream.extra["downstream_peer"] = UNKNOWN_PEER
        # Route selection happens before the filters run (Envoy's connection manager), so that
        # filters such as fault injection can read the route's configuration.
        no_route = None if self.edge else resolve_route(stream, self.route_table(stream))  # edge: after authn
        return await self._run(stream, self.outbound_filters if no_route is None else [], "source", no_route)

    async def _handle_inbound(self, req: Request, conn: ServerConnection) -> Response:
        self.active_inbound += 1
        try:
            return await self._inbound(req, conn)
        finally:
            self.active_inbound -= 1

    async def _inbound(self, req: Request, conn: ServerConnection) -> Response:
        stream = Stream(self, "inbound", req, self.pilot.snapshot, _addr(conn.peer))
        peer = Peer.from_header(req.headers.get("x-envoy-peer-metadata-id"))
        # The caller's principal is what its certificate proves, never what a header says.
        principal = conn.transport.get_extra_info("peer_principal") if conn.transport is not None else None
        stream.source = replace(peer, principal=principal or "unknown")
        stream.extra["mtls"] = principal is not None
        stream.destination = self.identity
        strip_mesh_headers(req.headers)
        return await self._run(stream, self.inbound_filters, "destination")

    async def _run(self, stream: Stream, filters: list[HttpFilter], reporter: str,
                   reply: Response | None = None) -> Response:
        req = stream.request
        if "x-request-id" not in req.headers:
            req.headers.add("x-request-id", str(uuid.UUID(int=self.rng.getrandbits(128), version=4)))
        span = self.tracing.start(stream) if self.tracing is not None else None
        try:
            resp = reply if reply is not None else await run_chain(filters, stream)
        except asyncio.CancelledError:
            stream.flag(F.DC)
            stream.details = "downstream_remote_disconnect"
            self._finish(stream, 0, reporter, len(req.body), 0)
            if span is not None:
                self.tracing.end(span, stream, 0)  # type: ignore[union-attr]
            raise
        if stream.upstream_time_ms is not None:
            resp.headers.set("x-envoy-upstream-service-time", str(round(stream.upstream_time_ms)))
        if stream.direction == "outbound":
            if stream.host is not None:
                resp.headers.set("x-meshlab-upstream", stream.host.endpoint.pod)
            if stream.flags:
                resp.headers.set("x-meshlab-response-flags", stream.response_flags)
            if stream.attempts > 1:
                resp.headers.set("x-meshlab-attempts", str(stream.attempts))
        stream.response = resp
        self._finish(stream, resp.status, reporter, len(req.body), len(resp.body))
        if span is not None:
            self.tracing.end(span, stream, resp.status)  # type: ignore[union-attr]
        return resp

    def _finish(self, stream: Stream, status: int, reporter: str, req_bytes: int, resp_bytes: int) -> None:
        """Write the access log entry and the metrics of one finished stream."""
        duration_ms = (time.perf_counter() - stream.start) * 1000.0
        req = stream.request
        src = stream.source
        if stream.direction == "outbound":
            ep = stream.host.endpoint if stream.host is not None else None
            dst_workload = ep.workload if ep else "unknown"
            dst_ns = ep.namespace if ep else "unknown"
            dst_version = ep.version if ep else "unknown"
            dst_app = ep.service.split(".")[0] if ep else "unknown"
            dst_pod = ep.pod if ep else ""
            cfg = self.clusters.get(stream.cluster)
            dst_service = cfg.config.service if cfg else _service_of(stream)
            upstream_host = ep.address if ep else ""
        else:
            me = self.identity
            dst_workload, dst_ns, dst_version, dst_app, dst_pod = (
                me.workload, me.namespace, me.version, me.app, me.pod)
            dst_service = f"{me.app}.{me.namespace}.svc.cluster.local"
            server = self.app_server
            upstream_host = server.address if server is not None else ""
        flags = stream.response_flags
        code = str(status)
        dst_principal = self.identity.principal if reporter == "destination" else "unknown"
        if reporter == "destination":
            csp = "mutual_tls" if stream.extra.get("mtls") else "none"
        else:
            csp = "unknown"
        self.metrics.record(
            (reporter, src.workload, src.namespace, src.principal, src.app, src.version, dst_workload, dst_ns,
             dst_principal, dst_app, dst_version, dst_service, dst_service.split(".")[0],
             dst_ns if dst_ns != "unknown" else "unknown", "http", code, "-", flags, csp),
            duration_ms, req_bytes, resp_bytes,
        )
        self.stats[f"{stream.direction}.rq_total"] += 1
        self.stats[f"{stream.direction}.rq_{code[0]}xx"] += 1
        if stream.cluster:
            self.stats[f"cluster.{stream.cluster}.upstream_rq_total"] += 1
        self.access_log.write(AccessLogEntry(
            start_time=stream.start_wall, reporter=reporter, workload=self.identity.workload, pod=self.name,
            method=req.method, path=stream.path, protocol="HTTP/1.1", response_code=status, response_flags=flags,
            response_code_details=stream.details, bytes_received=req_bytes, bytes_sent=resp_bytes,
            duration_ms=duration_ms, upstream_service_time_ms=stream.upstream_time_ms,
            x_forwarded_for=req.headers.get("x-forwarded-for") or "", user_agent=req.headers.get("user-agent") or "",
            request_id=req.headers.get("x-request-id") or "", authority=stream.authority,
            upstream_host=upstream_host, upstream_cluster=stream.cluster,
            downstream_local_address=(self.outbound if stream.direction == "outbound" else self.inbound).address,
            downstream_remote_address=stream.downstream_remote,
            route_name=stream.route.name if stream.route is not None else "",
            source_workload=src.workload, destination_workload=dst_workload, destination_service=dst_service,
            destination_version=dst_version, upstream_pod=dst_pod,
        ))

    # -- admin --------------------------------------------------------------------------------
    async def _handle_admin(self, req: Request, conn: ServerConnection) -> Response:
        path = req.path.split("?", 1)[0]
        if path == "/stats/prometheus":
            return Response(200, Headers([("content-type", "text/plain; version=0.0.4")]),
                            self.metrics.prometheus_text())
        if path == "/stats":
            lines = [f"{k}: {v}" for k, v in sorted(self.envoy_stats().items())]
            return local_reply(200, "\n".join(lines) + "\n")
        if path == "/clusters":
            return _json(self.clusters_view())
        if path == "/config_dump":
            return _json(self.config_dump())
        if path == "/ready":
            return local_reply(200, "LIVE\n")
        return local_reply(404, "admin endpoints: /stats /stats/prometheus /clusters /config_dump /ready\n")

    def envoy_stats(self) -> dict[str, int]:
        """Envoy-style counters and gauges of this proxy (what ``/stats`` on the admin port lists):
        request counts, per-cluster retries, timeouts, circuit-breaker overflows, outlier
        ejections, and per host the requests active and total."""
        out: dict[str, int] = dict(self.stats)
        for name, cl in self.clusters.items():
            for k, v in cl.breaker.stats.items():
                out[f"cluster.{name}.{k}"] = v
            out[f"cluster.{name}.circuit_breakers.default.rq_pending_open"] = int(cl.breaker.open)
            out[f"cluster.{name}.upstream_rq_pending_active"] = len(cl.breaker.pending)
            if cl.outlier is not None:
                for k, v in cl.outlier.stats.items():
                    out[f"cluster.{name}.outlier_detection.{k}"] = v
                out[f"cluster.{name}.outlier_detection.ejections_active"] = cl.outlier.ejected_count
            for addr, h in cl.hosts.items():
                out[f"cluster.{name}.{addr}.rq_active"] = h.active_rq
                out[f"cluster.{name}.{addr}.rq_total"] = h.rq_total
                out[f"cluster.{name}.{addr}.rq_error"] = h.rq_error
        return out

    def clusters_view(self) -> list[dict[str, object]]:
        """Per cluster and host: address, health, counters (Envoy admin /clusters)."""
        snap = self.pilot.snapshot
        out = []
        for name in sorted(snap.clusters):
            cl = self.cluster(snap, name)
            assert cl is not None
            for addr, h in cl.hosts.items():
                ejected = cl.outlier is not None and cl.outlier.ejected(h)
                out.append({"cluster": name, "address": addr, "pod": h.endpoint.pod, "healthy": h.healthy,
                             "ejected": ejected, "rq_active": h.active_rq, "rq_total": h.rq_total,
                             "rq_error": h.rq_error})
        return out

    def config_dump(self) -> dict[str, object]:
        """The configuration this sidecar runs with (Envoy admin /config_dump, simplified)."""
        snap = self.pilot.snapshot
        return {
            "version": snap.version,
            "listeners": {"inbound": self.inbound.address, "outbound": self.outbound.address,
                          "admin": self.admin.address},
            "routes": {host: [r.name for r in vh.routes] for host, vh in sorted(snap.virtual_hosts.items())},
            "clusters": {name: {"lb_policy": c.lb_policy, "endpoints": [e.address for e in c.endpoints]}
                         for name, c in sorted(snap.clusters.items())},
        }


def _json(obj: object) -> Response:
    return Response(200, Headers([("content-type", "application/json")]), json.dumps(obj, indent=1).encode())


def _addr(peer: tuple[str, int] | None) -> str:
    return f"{peer[0]}:{peer[1]}" if peer else ""


def _service_of(stream: Stream) -> str:
    from .route import fqdn

    return fqdn(stream.authority, stream.sidecar.namespace) if stream.authority else "unknown"
