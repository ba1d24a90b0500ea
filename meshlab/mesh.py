"""``Mesh``: the one object a notebook works with.

It owns a runtime (the background loop thread), the service registry, the control plane, and
every replica with its sidecar. Its methods are synchronous, safe to call from any cell;
``acall`` / ``aload`` are the ``await``-able variants.

Deploying a service (``deploy``) is what ``kubectl apply`` of a Deployment plus Istio's sidecar
injection does: each replica gets its app (served by uvicorn on its own port) *and* a sidecar,
and joins the registry under the pod labels ``app=<name>``, ``version=<version>``. The mesh
also runs a client workload with its own sidecar (Istio's ``curl`` sample pod): ``call`` and
``load`` send from there, so every request crosses two sidecars as in a real mesh.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import httpx
import pandas as pd

from .client import build_request, to_httpx
from .config import ConfigStore, Resource, load
from .control.admin import AdminAPI
from .control.analyze import Analysis, analyze
from .control.ca import CertificateAuthority, spiffe_id
from .control.networking import NetworkingCompiler
from .control.pilot import Pilot
from .control.proxy_config import proxy_view as _proxy_view
from .control.registry import Registry, RegistryError
from .control.security import SecurityCompiler
from .load import LoadProgress, LoadResult, generate, plan, samples_frame
from .proxy.gateway import IngressGateway
from .proxy.pool import PoolSet
from .proxy.sidecar import Sidecar
from .proxy.stream import Peer
from .runtime import AppServer, Runtime
from .security.agent import IstioAgent
from .telemetry.accesslog import FIELDS as ACCESS_LOG_FIELDS
from .telemetry.prometheus import Prometheus
from .telemetry.tracing import Tracing
from .workload import Replica, Work

__all__ = ["Mesh", "MeshError"]

class MeshError(RuntimeError):
    """A mesh operation that cannot be done (unknown service, bad arguments, not started)."""


class Mesh:
    """A service mesh inside this Python process (see the module docstring).

    ``seed`` makes every random choice reproducible (weights, faults, load balancing, work
    model). ``probe_period`` is how long a crashed replica keeps receiving traffic before its
    readiness probe fails and it leaves the endpoints (Kubernetes: 10 s period x 3 failures;
    scaled down here). ``clock`` returns wall time for logs (inject a fake one in tests).
    ``cert_ttl`` is the lifetime of workload certificates in seconds (Istio: 24 h); they are
    renewed at half their life. ``trace_sampling`` is the percentage of new traces sampled
    (Istio's default: 1 %; the tracing notebook uses 100); None turns tracing off.
    ``scrape_interval`` is how often the built-in Prometheus scrapes the sidecars (Prometheus'
    usual 15 s, scaled down). ``outbound_traffic_policy`` is Istio's
    ``meshConfig.outboundTrafficPolicy.mode`` for hosts outside the registry: ``ALLOW_ANY``
    (default: passed through) or ``REGISTRY_ONLY`` (502 unless a ServiceEntry names them).
    """

    def __init__(self, seed: int = 0, namespace: str = "default", probe_period: float = 0.5,
                 clock: Callable[[], float] = time.time, cert_ttl: float = 24 * 3600.0,
                 trace_sampling: float | None = 1.0, scrape_interval: float = 0.5,
                 outbound_traffic_policy: str = "ALLOW_ANY") -> None:
        self.seed = seed
        self.namespace = namespace
        self._dns: dict[str, tuple[str, int]] = {}
        self._t0 = time.monotonic()
        self.probe_period = probe_period
        #: how long a removed replica may finish its requests (Kubernetes: 30 s)
        self.termination_grace = 5.0
        self.clock = clock
        self.cert_ttl = cert_ttl
        self.trace_sampling = trace_sampling
        self.scrape_interval = scrape_interval
        self.outbound_traffic_policy = outbound_traffic_policy
        self.runtime = Runtime(f"meshlab-{id(self):x}")
        self._reset_state()

    def _reset_state(self) -> None:
        self.registry = Registry()
        self.pilot = Pilot(self.registry)
        self.config_store = ConfigStore()
        self.networking = NetworkingCompiler(self.config_store, self._dns, self.outbound_traffic_policy)
        self.pilot.hooks.append(self.networking)
        self.pilot.hooks.append(SecurityCompiler(self.config_store, self.networking.created))
        self.config_store.subscribe(lambda _store: self.pilot.invalidate())
        self.ca = CertificateAuthority(workload_ttl=self.cert_ttl)
        self.tracing = Tracing(self._rng("trace-ids"), self.trace_sampling) if self.trace_sampling is not None else None
        self.client_sidecar: Sidecar | None = None
        self.ingress: IngressGateway | None = None
        self._externals: dict[str, AppServer] = {}
        self.admin: AdminAPI | None = None
        self.prometheus = Prometheus(self, self.scrape_interval)
        self._pools = PoolSet()
        self._pods: dict[str, Replica] = {}
        self._next_index: dict[tuple[str, str, str], int] = {}
        self._specs: dict[tuple[str, str, str], tuple[Any, Work, dict[str, str]]] = {}
        self._accounts: dict[tuple[str, str, str], str] = {}
        self._timers: set[asyncio.TimerHandle] = set()
        self._lock = threading.RLock()

    # -- lifecycle ----------------------------------------------------------------------------
    @property
    def running(self) -> bool:
        """Whether the mesh is started."""
        return self.runtime.running

    def start(self) -> Mesh:
        """Start the mesh (idempotent): the runtime thread and the client workload."""
        if self.running:
            return self
        self.runtime.start()
        self._t0 = time.monotonic()
        self.runtime.add_closer(self._close_all)
        self.runtime.run(self._start_client())
        return self

    async def _start_client(self) -> None:
        ns = self.namespace
        peer = Peer("curl", ns, "curl", "unknown", spiffe_id(ns, "curl"), "curl")
        sc = Sidecar(self.pilot, peer, ns, self._rng("sidecar", "curl"), clock=self.clock)
        self._attach_agent(sc)
        await sc.start()
        self.client_sidecar = sc
        self.prometheus.start()
        gw_peer = Peer("istio-ingressgateway", "istio-system", "istio-ingressgateway", "unknown",
                       spiffe_id("istio-system", "istio-ingressgateway-service-account"), "istio-ingressgateway")
        self.ingress = IngressGateway(self.pilot, gw_peer, "istio-system", self._rng("sidecar", "ingress"),
                                      clock=self.clock)
        self._attach_agent(self.ingress)
        await self.ingress.start()

    async def _close_all(self) -> None:
        self.prometheus.stop()
        for timer in list(self._timers):
            timer.cancel()
        self._pools.close()
        for replica in list(self._pods.values()):
            await self._close_replica(replica)
        if self.client_sidecar is not None:
            await self.client_sidecar.close()
        if self.ingress is not None:
            await self.ingress.close()
        for server in self._externals.values():
            await server.close()
        if self.admin is not None:
            await self.admin.close()

    def stop(self) -> None:
        """Stop everything: servers, sidecars, connections, the runtime thread (idempotent).
        A stopped mesh can be started again, empty."""
        if not self.running:
            return
        self.runtime.stop()
        if self.tracing is not None:
            self.tracing.shutdown()
        self._reset_state()

    def __enter__(self) -> Mesh:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, coro: Any, timeout: float | None = None) -> Any:
        if not self.running:
            coro.close()
            raise MeshError("the mesh is not started: call mesh.start() (or use `with Mesh() as mesh:`)")
        return self.runtime.run(coro, timeout)

    def _rng(self, *parts: object) -> random.Random:
        """A random source derived from the mesh seed and a name (independent of call order)."""
        return random.Random(":".join(map(str, (self.seed, *parts))))

    # -- workloads ----------------------------------------------------------------------------
    def deploy(self, name: str, app: Any, replicas: int = 1, version: str = "v1",
               labels: dict[str, str] | None = None, work: Work | None = None,
               namespace: str | None = None, port: int = 80, service_account: str | None = None) -> list[Replica]:
        """Deploy ``app`` (any ASGI app, e.g. FastAPI) as service ``name`` at ``version`` with
        ``replicas`` pods, each with its sidecar. Deploying another version of the same service
        adds a second Deployment behind the same Service. ``port`` is the Service's port (what
        ``destination.port.number`` in a VirtualService refers to; Bookinfo uses 9080).
        ``service_account`` (default: the service name) is the pod's identity:
        ``spiffe://cluster.local/ns/<namespace>/sa/<service_account>``."""
        _check_name(name, "service name")
        _check_name(version, "version")
        if replicas < 0:
            raise MeshError("deploy: replicas must be >= 0")
        ns = namespace or self.namespace
        if any(r.service == name and r.version == version and r.namespace == ns for r in self._pods.values()):
            raise MeshError(f"deploy: {name} {version} is already deployed in {ns}; use mesh.scale() or "
                            f"mesh.restart({name!r}, app=...) to change it")
        pod_labels = {"app": name, "version": version, **(labels or {})}
        spec = (app, work or Work(), pod_labels)
        self._accounts[(ns, name, version)] = service_account or name
        existing = self.registry.services.get((ns, name))
        if existing is not None and existing.port != port:
            raise MeshError(f"deploy: service {name} already has port {existing.port}; all versions share it")
        self.registry.ensure_service(name, ns, port)
        self._specs[(ns, name, version)] = spec
        return self._run(self._add_replicas(ns, name, version, replicas))

    async def _add_replicas(self, ns: str, name: str, version: str, n: int) -> list[Replica]:
        app, work, labels = self._specs[(ns, name, version)]
        self.registry.ensure_service(name, ns)
        new = []
        for _ in range(n):
            key = (ns, name, version)
            index = self._next_index.get(key, 0)
            self._next_index[key] = index + 1
            replica = Replica(self, name, version, index, app, work, dict(labels), ns,
                              self._rng("replica", ns, name, version, index),
                              self._accounts.get((ns, name, version)))
            replica.server = AppServer(replica, name=replica.name)
            sa = replica.service_account
            peer = Peer(replica.workload, ns, name, version, spiffe_id(ns, sa), replica.name)
            replica.sidecar = Sidecar(self.pilot, peer, ns, self._rng("sidecar", ns, replica.name), replica,
                                      clock=self.clock)
            replica.sidecar.port = self.registry.service(name, ns).port
            self._attach_agent(replica.sidecar)
            await replica.server.start()
            await replica.sidecar.start()
            self._pods[replica.name if ns == self.namespace else f"{ns}/{replica.name}"] = replica
            new.append(replica)
        self.registry.service(name, ns).replicas.extend(new)
        self.registry.changed()
        return new

    async def _close_replica(self, replica: Replica) -> None:
        replica.alive = False
        if replica.server is not None:
            await replica.server.close()
        if replica.sidecar is not None:
            await replica.sidecar.close()

    def replicas(self, name: str, version: str | None = None, namespace: str | None = None) -> list[Replica]:
        """The replicas of a service (optionally of one version), in creation order."""
        svc = self._service(name, namespace)
        return [r for r in svc.replicas if version is None or r.version == version]

    def _service(self, name: str, namespace: str | None = None):  # type: ignore[no-untyped-def]
        try:
            return self.registry.service(name, namespace or self.namespace)
        except RegistryError as exc:
            raise MeshError(str(exc)) from None

    @property
    def services(self) -> list[str]:
        """Names of the services deployed (all namespaces)."""
        return sorted(n for (_, n) in self.registry.services)

    def _versions(self, name: str, namespace: str | None = None) -> list[str]:
        """The versions of a service deployed in ``namespace``, in deployment order (also those
        scaled to 0 replicas); MeshError if there is no such service."""
        ns = namespace or self.namespace
        self._service(name, ns)
        return [v for (n_, s, v) in self._specs if n_ == ns and s == name]

    def scale(self, name: str, replicas: int, version: str | None = None, namespace: str | None = None) -> None:
        """Set the number of replicas of a service's version (the only version if there is one)."""
        ns = namespace or self.namespace
        versions = self._service(name, ns).versions or self._versions(name, ns)  # running ones first
        if version is None:
            if len(versions) != 1:
                raise MeshError(f"scale: {name} has versions {versions}; say which with version=")
            version = versions[0]
        if replicas < 0:
            raise MeshError("scale: replicas must be >= 0")
        self._run(self._scale(ns, name, version, replicas))

    async def _scale(self, ns: str, name: str, version: str, replicas: int) -> None:
        svc = self.registry.service(name, ns)
        current = [r for r in svc.replicas if r.version == version]
        if replicas > len(current):
            await self._add_replicas(ns, name, version, replicas - len(current))
        elif replicas < len(current):
            for r in current[replicas:][::-1]:
                await self._remove_replica(r)

    async def _remove_replica(self, replica: Replica, grace: float | None = None) -> None:
        """Take a replica out of the endpoints, let the requests it is serving finish (up to
        ``grace`` seconds, Kubernetes' terminationGracePeriodSeconds: 30 s, here 5 s), stop it."""
        svc = self.registry.service(replica.service, replica.namespace)
        replica.ready = False
        svc.replicas.remove(replica)
        self.registry.changed()
        deadline = time.monotonic() + (self.termination_grace if grace is None else grace)
        sc = replica.sidecar
        while time.monotonic() < deadline and (
                replica.in_flight or replica.queued or (sc is not None and sc.active_inbound)):
            await asyncio.sleep(0.01)
        await self._close_replica(replica)
        self._pods = {k: v for k, v in self._pods.items() if v is not replica}

    def kill(self, name: str, replica: int = 0, version: str | None = None,
             restart_after: float | None = None, namespace: str | None = None) -> Replica:
        """Crash one replica (``replica`` counts within ``version`` when given): its app stops
        answering (connections refused). It stays in the endpoints until its readiness probe
        notices (``probe_period``); with ``restart_after`` (seconds) it comes back by itself."""
        target = self._replica("kill", name, replica, version, namespace)
        self._run(self._acrash(target, restart_after))
        return target

    def _replica(self, verb: str, name: str, replica: int, version: str | None,
                 namespace: str | None) -> Replica:
        """Replica number ``replica`` of a service (of one version), or a MeshError saying which exist."""
        deployed = self._versions(name, namespace)
        if version is not None and version not in deployed:
            raise MeshError(f"{verb}: {name} has no version {version!r} (deployed: {', '.join(deployed)})")
        reps = self.replicas(name, version, namespace)
        which = f"{name} {version}" if version else name
        if not reps:
            raise MeshError(f"{verb}: {which} has no replicas (scale it up first)")
        if not 0 <= replica < len(reps):
            raise MeshError(f"{verb}: {which} has {len(reps)} replica(s), numbered 0 to {len(reps) - 1}; "
                            f"no replica {replica}")
        return reps[replica]

    def _crash(self, replica: Replica, restart_after: float | None) -> None:
        """Crash ``replica`` from app code (loop thread) or from a cell."""
        if self.runtime.in_loop_thread():
            asyncio.get_running_loop().create_task(self._acrash(replica, restart_after))
        else:
            self._run(self._acrash(replica, restart_after))

    async def _acrash(self, replica: Replica, restart_after: float | None) -> None:
        if not replica.alive:
            return
        replica.alive = False
        assert replica.server is not None
        await replica.server.close()
        loop = asyncio.get_running_loop()
        self._later(self.probe_period, self._mark_unready, replica)
        if restart_after is not None:
            self._later(restart_after, lambda r: loop.create_task(self._arestart_pod(r)), replica)

    def _attach_agent(self, sc: Sidecar) -> None:
        """Give a proxy its istio-agent (certificates are issued on first use) and the tracer."""
        sc.tracing = self.tracing
        sc.agent = IstioAgent(self.ca, sc.identity.principal, sc.name, ttl=self.cert_ttl,
                              schedule=lambda delay, fn: self._later(delay, fn))

    def certificates(self) -> pd.DataFrame:
        """Every workload certificate the mesh CA issued: pod, identity, serial, when it was issued,
        its validity (``not_before`` is back-dated 1 s for clock skew, as CAs do) and the lifetime
        asked for (``ttl_s``)."""
        rows = [{"pod": c.pod, "identity": c.identity, "serial": f"{c.serial:x}"[:16], "issued_at": c.issued_at,
                 "not_before": c.not_before, "not_after": c.not_after, "ttl_s": c.ttl_s}
                for c in list(self.ca.issued)]
        return pd.DataFrame(rows, columns=["pod", "identity", "serial", "issued_at", "not_before", "not_after",
                                           "ttl_s"])

    def rotate_certificate(self, name: str, replica: int = 0) -> Any:
        """Have a proxy's agent get a new certificate now (``name``: service, pod, ``curl`` or
        ``istio-ingressgateway``); returns the new ``WorkloadCert``."""
        sc = self._proxy_named(name, replica)

        async def rotate() -> Any:
            return sc.agent.rotate()  # type: ignore[union-attr]

        return self._run(rotate())

    def certificate(self, name: str, replica: int = 0) -> Any:
        """The current workload certificate of a proxy (a ``WorkloadCert``; issued now if the
        proxy has none yet). ``name``: service, pod, ``curl`` or ``istio-ingressgateway``."""
        sc = self._proxy_named(name, replica)

        async def get() -> Any:
            return sc.agent.certificate()  # type: ignore[union-attr]

        return self._run(get())

    def jwt_issuer(self, name: str = "https://auth.meshlab.dev", key_type: str = "RS256") -> Any:
        """A JWT issuer for this mesh (a ``meshlab.security.jwt.Issuer`` on the mesh clock),
        registered with the control plane: a RequestAuthentication whose ``jwksUri`` is
        ``issuer.jwks_uri`` (``<name>/.well-known/jwks.json``), or that names only the issuer,
        gets its keys at compile time as istiod inlines fetched JWKS; no network is used. The
        same ``name`` returns the same issuer (a new one if ``key_type`` changes)."""
        from .security.jwt import Issuer

        compiler = next(h for h in self.pilot.hooks if isinstance(h, SecurityCompiler))
        issuer = compiler.jwks.issuers.get(name)
        if issuer is None or issuer.key_type != key_type:
            issuer = Issuer(name, key_type=key_type, clock=self.clock)

            async def register() -> None:  # on the loop thread, where pilot builds snapshots
                compiler.jwks.register(issuer)
                self.pilot.invalidate()

            if self.running:
                self._run(register())
            else:
                compiler.jwks.register(issuer)
                self.pilot.invalidate()
        return issuer

    def _proxy_named(self, name: str, replica: int = 0) -> Sidecar:
        """A proxy by name: ``curl``, ``istio-ingressgateway``, a pod or a service (its replica)."""
        if name == "curl":
            return self._client()
        if name in ("istio-ingressgateway", "ingress"):
            if self.ingress is None:
                raise MeshError("the mesh is not started: call mesh.start() first")
            return self.ingress
        return self.sidecar(name, replica)

    def _later(self, delay: float, fn: Callable[..., Any], *args: Any) -> None:
        loop = asyncio.get_running_loop()

        def fire() -> None:
            self._timers.discard(handle)
            fn(*args)

        handle = loop.call_later(delay, fire)
        self._timers.add(handle)

    def _mark_unready(self, replica: Replica) -> None:
        if not replica.alive and replica.ready:
            replica.ready = False
            self.registry.changed()

    async def _arestart_pod(self, replica: Replica) -> None:
        if replica.alive or replica.server is None:
            return
        await replica.server.start()
        replica.alive = True
        replica.restarts += 1
        if not replica.ready:
            replica.ready = True
        self.registry.changed()

    def revive(self, name: str, replica: int = 0, version: str | None = None,
               namespace: str | None = None) -> Replica:
        """Restart a crashed replica now (the container restarting)."""
        target = self._replica("revive", name, replica, version, namespace)
        self._run(self._arestart_pod(target))
        return target

    def restart(self, name: str, version: str | None = None, app: Any = None, work: Work | None = None,
                grace: float | None = None, namespace: str | None = None) -> None:
        """Rolling redeploy (Kubernetes RollingUpdate, maxSurge 1, maxUnavailable 0): each
        replica is replaced by a new one, optionally running a new ``app`` (deploying a fix)."""
        ns = namespace or self.namespace
        deployed = self._versions(name, ns)
        if version is not None and version not in deployed:
            raise MeshError(f"restart: {name} has no version {version!r} (deployed: {', '.join(deployed)})")
        versions = [version] if version else self._service(name, ns).versions
        for v in versions:
            old_app, old_work, labels = self._specs[(ns, name, v)]
            self._specs[(ns, name, v)] = (app or old_app, work or old_work, labels)
        self._run(self._rolling(ns, name, versions, grace))

    async def _rolling(self, ns: str, name: str, versions: list[str], grace: float | None) -> None:
        svc = self.registry.service(name, ns)
        for v in versions:
            for old in [r for r in svc.replicas if r.version == v]:
                await self._add_replicas(ns, name, v, 1)
                await self._remove_replica(old, grace)

    def endpoints(self, name: str, namespace: str | None = None) -> pd.DataFrame:
        """Per replica: pod, version, the sidecar's inbound ``host:port``, labels, health."""
        rows = []
        for r in self.replicas(name, namespace=namespace):
            rows.append({"pod": r.name, "version": r.version,
                         "address": r.sidecar.inbound.address if r.sidecar else "",
                         "labels": dict(r.labels), "healthy": r.ready, "alive": r.alive,
                         "restarts": r.restarts})
        return pd.DataFrame(rows, columns=["pod", "version", "address", "labels", "healthy", "alive", "restarts"])

    def sidecar(self, name: str, replica: int = 0, version: str | None = None) -> Sidecar:
        """The sidecar of one replica (``name`` may also be a pod name like ``cart-v1-0``)."""
        if name in self._pods:
            sc = self._pods[name].sidecar
        else:
            reps = self.replicas(name, version)
            if not 0 <= replica < len(reps):
                raise MeshError(f"sidecar: {name} has {len(reps)} replicas; no replica {replica}")
            sc = reps[replica].sidecar
        assert sc is not None
        return sc

    def pod(self, pod_name: str) -> Replica | None:
        """The replica called ``pod_name`` (e.g. ``reviews-v2-0``), or None."""
        return self._pods.get(pod_name)

    def all_sidecars(self) -> Iterator[Sidecar]:
        """Every proxy of the mesh: the client workload's, the ingress gateway, then the sidecars."""
        if self.client_sidecar is not None:
            yield self.client_sidecar
        if self.ingress is not None:
            yield self.ingress
        for r in list(self._pods.values()):
            if r.sidecar is not None:
                yield r.sidecar

    # -- traffic ------------------------------------------------------------------------------
    def _client(self) -> Sidecar:
        if self.client_sidecar is None:
            raise MeshError("the mesh is not started: call mesh.start() first")
        return self.client_sidecar

    async def _call(self, service: str, path: str, method: str, headers: dict[str, str] | None,
                    json: Any, content: bytes | str | None, sidecar: bool = True,
                    source: str | None = None) -> httpx.Response:
        sc = self._client() if source is None else self._proxy_named(source)
        url = f"http://{service}{path if path.startswith('/') else '/' + path}"
        req = build_request(method, url, headers, json, content)
        if sidecar:
            pools = self._pools if source is None else sc.app_pools
            resp = await pools.send(sc.outbound.host, sc.outbound.port, req)
            return to_httpx(req.method, url, resp.status, resp.headers, resp.body)
        # A client without a sidecar: plaintext, straight to one replica's inbound listener.
        parts = service.split(":")[0].split(".")
        ns = parts[1] if len(parts) > 1 else self.namespace
        reps = [r for r in self.registry.service(parts[0], ns).replicas if r.ready]
        if not reps or reps[0].sidecar is None:
            raise MeshError(f"call: no ready replica of {service}")
        inbound = reps[0].sidecar.inbound
        req.target = req.path
        try:
            resp = await self._pools.send(inbound.host, inbound.port, req)
        except ConnectionError as exc:
            raise ConnectionError(f"{service} refused a plaintext connection (is its PeerAuthentication STRICT?): "
                                  f"{exc}") from None
        return to_httpx(req.method, url, resp.status, resp.headers, resp.body)

    def call(self, service: str, path: str = "/", method: str = "GET", headers: dict[str, str] | None = None,
             json: Any = None, content: bytes | str | None = None, timeout: float | None = 60.0,
             sidecar: bool = True, source: str | None = None) -> httpx.Response:
        """One request to ``service`` (``name`` or ``name.namespace``), from the client workload
        through its sidecar, or from ``source`` (a pod such as ``reviews-v2-0``, through that pod's
        sidecar, like ``kubectl exec <pod> -- curl``). With ``sidecar=False`` the request comes
        from a workload *without* a sidecar: plaintext, straight to a replica (what a STRICT
        PeerAuthentication refuses)."""
        return self._run(self._call(service, path, method, headers, json, content, sidecar, source), timeout)

    async def acall(self, service: str, path: str = "/", method: str = "GET",
                    headers: dict[str, str] | None = None, json: Any = None,
                    content: bytes | str | None = None) -> httpx.Response:
        """``call`` for ``await``."""
        return await self.runtime.arun(self._call(service, path, method, headers, json, content))


    async def _load(self, service: str, path: str, method: str, headers: dict[str, str] | None,
                    body: bytes | None, rate: float | None, concurrency: int | None, requests: int | None,
                    duration: float | None, progress: LoadProgress) -> LoadResult:
        sc = self._client()
        host, port = sc.outbound.host, sc.outbound.port
        url = f"http://{service}{path if path.startswith('/') else '/' + path}"
        template = build_request(method, url, headers, None, body)
        pools = self._pools

        async def send(i: int) -> tuple[int, str, str, int]:
            req = build_request(method, url, None, None, template.body)
            req.headers = template.headers.copy()
            resp = await pools.send(host, port, req)
            h = resp.headers
            return (resp.status, h.get("x-meshlab-response-flags") or "", h.get("x-meshlab-upstream") or "",
                    int(h.get("x-meshlab-attempts") or 1))

        samples, elapsed = await generate(send, rate=rate, concurrency=concurrency, requests=requests,
                                          duration=duration, progress=progress)
        versions = {r.name: r.version for r in self._pods.values()}
        df = samples_frame(samples, service, path, lambda pod: versions.get(pod, ""))
        return LoadResult(df, elapsed, rate, concurrency, {"method": method})

    def load(self, service: str, path: str = "/", *, rate: float | None = None, concurrency: int | None = None,
             requests: int | None = None, duration: float | None = None, method: str = "GET",
             headers: dict[str, str] | None = None, body: bytes | None = None, progress: bool = True,
             background: bool = False) -> LoadResult | LoadRun:
        """Send traffic to ``service`` from the client workload: open loop at ``rate`` requests/s
        or closed loop with ``concurrency`` clients, for ``requests`` or ``duration`` seconds.
        Shows a progress bar for runs over a second. With ``background=True`` returns at once a
        ``LoadRun`` (call ``.result()`` later) so cells can change the mesh while it runs."""
        plan(rate, concurrency, requests, duration)
        prog = LoadProgress(total=requests if requests is not None else (
            int(rate * duration) if rate is not None and duration is not None else None))
        fut = self.runtime.submit(self._load(service, path, method, headers, body, rate, concurrency,
                                             requests, duration, prog)) if self.running else None
        if fut is None:
            raise MeshError("the mesh is not started: call mesh.start() first")
        run = LoadRun(fut, prog, _expected_seconds(rate, concurrency, requests, duration) if progress else 0.0,
                      f"load {service}{path}")
        return run if background else run.result()

    async def aload(self, service: str, path: str = "/", **kw: Any) -> LoadResult:
        """``load`` for ``await`` (no progress bar)."""
        kw.pop("background", None)
        kw.pop("progress", None)
        plan(kw.get("rate"), kw.get("concurrency"), kw.get("requests"), kw.get("duration"))
        prog = LoadProgress()
        return await self.runtime.arun(self._load(
            service, path, kw.get("method", "GET"), kw.get("headers"), kw.get("body"), kw.get("rate"),
            kw.get("concurrency"), kw.get("requests"), kw.get("duration"), prog))

    # -- telemetry ----------------------------------------------------------------------------
    def metrics(self, buckets: bool = False) -> pd.DataFrame:
        """Istio's standard metrics from every sidecar, one row per sample (Prometheus style):
        name, the Istio labels, pod (the reporting sidecar), value."""

        async def collect() -> list[dict[str, object]]:
            rows = []
            for sc in self.all_sidecars():
                for row in sc.metrics.rows(buckets):
                    row["pod"] = sc.name
                    rows.append(row)
            return rows

        rows = self._run(collect())
        from .telemetry.metrics import LABELS

        cols = ["name", *LABELS, *(["le"] if buckets else []), "pod", "value"]
        return pd.DataFrame(rows, columns=cols)

    def access_log(self, service: str | None = None, since: float | None = None, reporter: str | None = None,
                   last: int | None = None, pod: str | None = None) -> pd.DataFrame:
        """Access-log entries of every sidecar as a DataFrame sorted by start time. Filters:
        ``service`` (destination service: short name or host), ``since`` (wall-clock timestamp),
        ``reporter`` ("source" = client side, "destination" = server side), ``pod`` (the proxy
        that wrote the entry, e.g. ``istio-ingressgateway``), ``last`` rows."""

        async def collect() -> list[Any]:
            out = []
            for sc in self.all_sidecars():
                out.extend(sc.access_log.entries)
            return out

        entries = self._run(collect())
        rows = [tuple(getattr(e, f) for f in ACCESS_LOG_FIELDS) for e in entries]
        df = pd.DataFrame(rows, columns=ACCESS_LOG_FIELDS)
        if service is not None:
            dest = df["destination_service"]
            df = df[(dest.str.split(".").str[0] == service) | (dest == service)]
        if pod is not None:
            df = df[df["pod"] == pod]
        if since is not None:
            df = df[df["start_time"] >= since]
        if reporter is not None:
            df = df[df["reporter"] == reporter]
        df = df.sort_values("start_time", kind="stable").reset_index(drop=True)
        if last is not None:
            df = df.tail(last).reset_index(drop=True)
        return df

    def stats(self, pod: str | None = None, contains: str = "") -> pd.DataFrame:
        """Envoy-style counters of every proxy (or of one ``pod``), like ``/stats`` on each
        sidecar's admin port: one row per (pod, stat, value); ``contains`` filters stat names."""

        async def collect() -> list[tuple[str, str, int]]:
            rows = []
            for sc in self.all_sidecars():
                if pod is not None and sc.name != pod:
                    continue
                rows.extend((sc.name, k, v) for k, v in sorted(sc.envoy_stats().items()) if contains in k)
            return rows

        return pd.DataFrame(self._run(collect()), columns=["pod", "stat", "value"])

    def dashboard(self, window: float = 2.0, by: str = "destination_workload",
                  reporter: str = "destination") -> pd.DataFrame:
        """What Istio's Grafana dashboards plot, from the built-in Prometheus: per ``by`` group
        and scrape time, request rate (req/s), error rate and p50/p90/p99 latency (ms) over the
        trailing ``window`` seconds."""

        async def query() -> pd.DataFrame:
            self.prometheus.scrape()
            return self.prometheus.dashboard(window, by, reporter)

        return self._run(query())

    def service_summary(self, window: float | None = None, by: str = "destination_workload",
                        reporter: str = "destination") -> pd.DataFrame:
        """One row per ``by`` group: requests, rate, error rate, p50/p90/p99 latency over the last
        ``window`` seconds (default: since the mesh started), computed from the metrics."""

        async def query() -> pd.DataFrame:
            self.prometheus.scrape()
            return self.prometheus.summary(window, by, reporter)

        return self._run(query())

    def traces(self) -> pd.DataFrame:
        """Every span collected (one row each): trace_id, span_id, parent_id, name, workload, pod,
        kind (client/server), start_ms, duration_ms, status, response_flags, request_id."""
        if self.tracing is None:
            raise MeshError("tracing is off: create the mesh with Mesh(trace_sampling=100)")

        async def collect() -> pd.DataFrame:
            return self.tracing.frame()  # type: ignore[union-attr]

        return self._run(collect())

    def outlier_events(self) -> pd.DataFrame:
        """Every ejection and return decided by outlier detection, in every client sidecar:
        time (s since the mesh started), reporting pod, cluster, ejected pod, action, reason."""

        async def collect() -> list[dict[str, Any]]:
            rows = []
            for sc in self.all_sidecars():
                for cl in sc.clusters.values():
                    if cl.outlier is None:
                        continue
                    for ev in cl.outlier.events:
                        rows.append({"t": ev.t - self._t0, "reporter": sc.name, "cluster": ev.cluster,
                                     "pod": ev.pod, "action": ev.action, "times_ejected": ev.times_ejected,
                                     "ejection_s": ev.ejection_s, "reason": ev.reason})
            return rows

        cols = ["t", "reporter", "cluster", "pod", "action", "times_ejected", "ejection_s", "reason"]
        return pd.DataFrame(self._run(collect()), columns=cols).sort_values("t", kind="stable").reset_index(drop=True)

    def access_log_text(self, pod: str, last: int | None = 10, encoding: str = "TEXT") -> str:
        """One proxy's access log as ``kubectl logs <pod> -c istio-proxy`` shows it, in Istio's
        ``TEXT`` (default) or ``JSON`` encoding (``meshConfig.accessLogEncoding``); ``pod`` may be
        ``istio-ingressgateway`` or ``curl``."""
        if encoding not in ("TEXT", "JSON"):
            raise MeshError(f"access_log_text: encoding must be TEXT or JSON (meshConfig.accessLogEncoding), "
                            f"not {encoding!r}")

        async def text() -> str:
            for sc in self.all_sidecars():
                if sc.name == pod:
                    return sc.access_log.text(last, encoding)
            raise MeshError(f"access_log_text: no proxy named {pod!r}")

        return self._run(text())

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no request is in flight anywhere in the mesh (apps, sidecars, mirrors);
        True if it got idle within ``timeout`` seconds."""

        async def idle() -> bool:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                busy = any(r.in_flight or r.queued for r in self._pods.values()) or any(
                    sc.active_inbound or sc._tasks for sc in self.all_sidecars())
                if not busy:
                    return True
                await asyncio.sleep(0.01)
            return False

        return self._run(idle())

    def set_work(self, pod: str, work: Work) -> None:
        """Change one replica's work model now (make one pod slow, or failing)."""
        replica = self._pods.get(pod)
        if replica is None:
            raise MeshError(f"set_work: no pod {pod!r} (pods: {', '.join(sorted(self._pods))})")

        async def change() -> None:
            replica.set_work(work)

        self._run(change())

    # -- configuration ------------------------------------------------------------------------
    def apply(self, source: str | Path | dict[str, Any] | list[Any]) -> ApplyResult:
        """Apply Istio configuration: YAML text, a file or folder, dicts. All or nothing: if any
        document is invalid, ``ConfigError`` says where and why and nothing changes."""
        resources = load(source, default_namespace=self.namespace)

        async def commit() -> ApplyResult:
            return self.apply_resources(resources)

        return self._run(commit()) if self.running else self.apply_resources(resources)

    def apply_resources(self, resources: list[Resource]) -> ApplyResult:
        """Apply validated resources now (on the mesh loop, or before the mesh starts) and push
        the new configuration; the report says what was created, configured or unchanged."""
        previous = {r.key: r.to_dict() for r in self.config_store.list()}
        applied = self.config_store.apply(resources)
        if self.running:
            self.pilot.snapshot  # noqa: B018 - istiod pushes at once: build the new snapshot now
        lines = []
        for r in applied:
            old = previous.get(r.key)
            verb = "created" if old is None else ("unchanged" if old == r.to_dict() else "configured")
            lines.append(f"{r.kind.lower()}.{r.api_version.split('/')[0]}/{r.name} {verb}")
        return ApplyResult(applied, lines)

    def delete(self, kind: str, name: str, namespace: str | None = None) -> None:
        """Delete one Istio resource (``mesh.delete("VirtualService", "reviews")``)."""
        ns = namespace or self.namespace

        async def remove() -> None:
            self.config_store.delete(kind, name, ns)

        self._run(remove()) if self.running else self.config_store.delete(kind, name, ns)

    def get(self, kind: str, name: str, namespace: str | None = None) -> Resource:
        """One applied Istio resource (its ``spec`` model, ``to_dict()`` for YAML)."""
        return self.config_store.get(kind, name, namespace or self.namespace)

    def config(self, kind: str | None = None) -> pd.DataFrame:
        """The Istio resources applied, one row each (like ``kubectl get`` across kinds)."""
        rows = [{"kind": r.kind, "namespace": r.namespace, "name": r.name, "apiVersion": r.api_version,
                 "warnings": len(r.warnings)} for r in self.config_store.list(kind)]
        return pd.DataFrame(rows, columns=["kind", "namespace", "name", "apiVersion", "warnings"])

    def analyze(self) -> Analysis:
        """Problems in the applied configuration, against the services running (``istioctl analyze``)."""
        services: dict[str, dict[str, set[str]]] = {}
        for svc in self.registry.services.values():
            labels: dict[str, set[str]] = {}
            for r in svc.replicas:
                for k, v in r.labels.items():
                    labels.setdefault(k, set()).add(v)
            services[svc.fqdn] = labels
        return analyze(self.config_store.list(), services)

    def proxy_config(self, workload: str, what: str = "routes") -> pd.DataFrame:
        """One proxy's view of the configuration, like ``istioctl proxy-config``: ``routes``,
        ``clusters`` or ``endpoints``. ``workload`` is a pod (``reviews-v1-0``), a service (its
        first replica), ``curl`` (the client workload) or ``istio-ingressgateway``."""
        return self._run(_proxy_view(self._proxy_named(workload), what))

    def serve_admin(self, port: int = 0, write_context: bool = True) -> str:
        """Serve the control plane's admin API on 127.0.0.1 (``port`` 0: any free port) so the
        ``meshlab`` command (``meshlab apply -f``, ``get``, ``proxy-config``...) can reach this
        mesh; records the address in ``~/.meshlab/current.json``. Returns ``host:port``."""
        if self.admin is None:
            admin = AdminAPI(self, port)

            async def up() -> None:
                await admin.start(write_context)

            self._run(up())
            self.admin = admin
        return self.admin.address

    def export_k8s(self, path: str | Path, image: Any = None) -> list[Path]:
        """Write this mesh as it runs now as Kubernetes + Istio manifests into the folder ``path``
        (see ``meshlab.export``): Namespace, ServiceAccounts, Services, Deployments, Istio v1
        resources and a README with the commands. ``image``: a template such as
        ``"registry/{service}:{version}"`` or a mapping ``{"reviews": "..."}``; placeholders if None."""
        from .export import write_manifests

        return write_manifests(self, path, image)

    @property
    def ingress_url(self) -> str:
        """Base URL of the ingress gateway (for calls from outside the mesh: cells, curl)."""
        if self.ingress is None:
            raise MeshError("the mesh is not started: call mesh.start() first")
        return self.ingress.url

    def external(self, host: str, app: Any) -> str:
        """Run ``app`` *outside* the mesh (no sidecar) under the DNS name ``host``, e.g. an
        external API reached through a ServiceEntry. Returns its ``host:port``."""
        server = AppServer(app, name=host)

        async def up() -> None:
            await server.start()

        self._run(up())
        self._externals[host] = server
        self._dns[host] = (server.host, server.port)
        self.pilot.invalidate()
        return server.address


class ApplyResult(list):  # type: ignore[type-arg]
    """The resources ``Mesh.apply`` applied; shown like ``kubectl apply`` output."""

    def __init__(self, resources: list[Resource], lines: list[str]) -> None:
        super().__init__(resources)
        self.lines = lines

    @property
    def warnings(self) -> list[str]:
        """Warnings of every resource (fields valid in Istio but not simulated here)."""
        return [f"{r.kind}/{r.name}: {w}" for r in self for w in r.warnings]

    def __repr__(self) -> str:
        return "\n".join(self.lines + [f"Warning: {w}" for w in self.warnings])

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(repr(self))


class LoadRun:
    """A load run in progress (``Mesh.load(..., background=True)``)."""

    def __init__(self, future: Future[LoadResult], progress: LoadProgress, expected_s: float | None,
                 label: str) -> None:
        self.future = future
        self.progress = progress
        self.expected_s = expected_s  # None: not known in advance (closed loop with requests=N)
        self.label = label
        self.started = time.monotonic()

    def done(self) -> bool:
        """Whether the run finished."""
        return self.future.done()

    def stop(self) -> LoadResult:
        """Ask the run to stop early and return what it saw."""
        self.progress.stop = True
        return self.result()

    def result(self, timeout: float | None = None) -> LoadResult:
        """Wait for the run and return it, with a progress bar for runs over ~1 s: from the start
        when the length is known (``duration``, or ``requests`` at a ``rate``) and over 1 s; when
        it is not (a closed loop of ``requests``), once the run has lasted 1 s."""
        if self.expected_s is None and not self.future.done():
            from concurrent.futures import wait

            wait([self.future], timeout=max(0.0, self.started + 1.0 - time.monotonic()))
            show = not self.future.done()
        else:
            show = self.expected_s is not None and self.expected_s > 1.0 and not self.future.done()
        if show:
            from tqdm import tqdm

            with tqdm(total=self.progress.total, desc=self.label, unit="req", leave=True, mininterval=0.5,
                      initial=self.progress.done) as bar:
                while not self.future.done():
                    try:
                        self.future.result(0.2)
                    except TimeoutError:
                        pass
                    except Exception:
                        break
                    bar.n = self.progress.done
                    bar.refresh()
                bar.n = self.progress.done
                bar.refresh()
        return self.future.result(timeout)


def _expected_seconds(rate: float | None, concurrency: int | None, requests: int | None,
                      duration: float | None) -> float | None:
    """How long a run will last, when that is known before it starts; None for a closed loop of
    ``requests`` (it lasts as long as the service takes to answer them)."""
    if duration is not None:
        return duration
    if rate is not None and requests is not None:
        return requests / rate
    return None


def _check_name(value: str, what: str) -> None:
    import re

    if not isinstance(value, str) or not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value or ""):
        raise MeshError(f"{what} {value!r} is not a valid Kubernetes name (lowercase letters, digits, '-')")
