"""Compiling Istio's networking configuration into sidecar routes and clusters (pilot's job).

Theory of operation
-------------------
Start from what the registry alone gives (pilot.build): per service, one cluster with every
endpoint (``outbound|80||reviews.default.svc.cluster.local``) and one virtual host whose single
route sends everything there. Then:

1. **DestinationRule** (what happens *after* routing): its ``trafficPolicy`` sets the load
   balancer (simple, or consistentHash) of the service's cluster; each ``subset`` becomes one more
   cluster (``outbound|80|v1|reviews...``) holding only the endpoints whose pod labels match the
   subset's labels, with the subset's own trafficPolicy merged over the rule's.
2. **VirtualService** (how requests are *routed*): for each host it names, its ``http`` routes
   replace the default route, in order (first match wins). A route's destinations become weighted
   clusters: the subset's cluster when a subset is named, else the service's. A VirtualService
   whose ``gateways`` list omits ``mesh`` does not apply to sidecars; the ones bound to a gateway
   are compiled into that gateway's own table (``Snapshot.gateways``), restricted to the hosts
   the Gateway's servers expose.
3. **ServiceEntry**: hosts outside the registry (``api.example.com``) become routable, with
   endpoints from the entry (STATIC addresses, or DNS names meshlab resolves for services it
   runs "outside" the mesh).

A route to a subset no DestinationRule defines points at a cluster that does not exist: the
router answers 503 with flag NC, as Envoy does, and ``mesh.analyze()`` reports it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ..config import Resource
from ..config.duration import parse_duration
from ..proxy.cluster import ClusterConfig, EndpointConfig, cluster_name
from ..proxy.match import compile_match
from ..proxy.route import Route, VirtualHost, WeightedCluster, config_fqdn

if TYPE_CHECKING:
    from ..config import ConfigStore
    from .pilot import Draft, Pilot

__all__ = ["NetworkingCompiler", "merge_policy", "hash_source"]

MESH = "mesh"


def merge_policy(base: Any, override: Any) -> Any:
    """A subset's trafficPolicy over its rule's: fields set in the subset win, field by field
    (top-level sections such as loadBalancer or connectionPool are replaced whole, as in Istio)."""
    if base is None:
        return override
    if override is None:
        return base
    data = base.model_dump(exclude_none=True, by_alias=True)
    data.update(override.model_dump(exclude_none=True, by_alias=True))
    return type(base).model_validate(data)


def hash_source(lb: Any) -> tuple[Any, ...] | None:
    """What a consistentHash load balancer hashes on, from ``trafficPolicy.loadBalancer``."""
    ch = getattr(lb, "consistentHash", None) if lb is not None else None
    if ch is None:
        return None
    if ch.httpHeaderName:
        return ("header", ch.httpHeaderName.lower())
    if ch.httpCookie is not None:
        ttl = parse_duration(ch.httpCookie.ttl) if ch.httpCookie.ttl else 0.0
        return ("cookie", ch.httpCookie.name, ttl)
    if ch.useSourceIp:
        return ("source_ip",)
    if ch.httpQueryParameterName:
        return ("query", ch.httpQueryParameterName)
    return None


def lb_policy(policy: Any) -> tuple[str, tuple[Any, ...] | None]:
    """(balancer name, hash source) from an effective trafficPolicy."""
    lb = getattr(policy, "loadBalancer", None) if policy is not None else None
    if lb is None:
        return "LEAST_REQUEST", None
    src = hash_source(lb)
    if src is not None:
        maglev = getattr(lb.consistentHash, "maglev", None) is not None
        return ("MAGLEV" if maglev else "RING_HASH"), src
    return (lb.simple or "LEAST_REQUEST"), None


class NetworkingCompiler:
    """The pilot hook that applies VirtualServices, DestinationRules, Gateways, ServiceEntries."""

    def __init__(self, store: ConfigStore, dns: dict[str, tuple[str, int]] | None = None,
                 outbound_traffic_policy: str = "ALLOW_ANY") -> None:
        self.store = store
        #: meshConfig.outboundTrafficPolicy.mode: what happens to requests for hosts outside the
        #: registry (no Service, no ServiceEntry): ALLOW_ANY passes them through to the address
        #: the app resolved (PassthroughCluster), REGISTRY_ONLY answers 502 (BlackHoleCluster)
        if outbound_traffic_policy not in ("ALLOW_ANY", "REGISTRY_ONLY"):
            raise ValueError("outbound_traffic_policy must be 'ALLOW_ANY' or 'REGISTRY_ONLY'")
        self.outbound_traffic_policy = outbound_traffic_policy
        #: creation order of resources, by key (Istio resolves conflicts in favour of the oldest).
        #: Kept by ``track_creation`` on every store change: a deleted resource is forgotten, so
        #: re-creating it makes it the youngest (Kubernetes gives it a new creationTimestamp).
        self.created: dict[tuple[str, str, str], int] = {}
        self._next_rank = 0
        #: names meshlab resolves for ServiceEntries (services it runs outside the mesh)
        self.dns = dns if dns is not None else {}
        self.track_creation(store)
        store.subscribe(self.track_creation)

    def track_creation(self, store: ConfigStore) -> None:
        """Rank new resources after every existing one; forget deleted ones. Resources created by
        one apply share a Kubernetes timestamp (seconds), and Istio then orders them by name, then
        namespace."""
        present = store.list()
        keys = {r.key for r in present}
        for key in [k for k in self.created if k not in keys]:
            del self.created[key]
        for r in sorted((r for r in present if r.key not in self.created), key=lambda r: (r.name, r.namespace)):
            self.created[r.key] = self._next_rank
            self._next_rank += 1

    def __call__(self, pilot: Pilot, draft: Draft) -> None:
        vhosts, clusters = draft.virtual_hosts, draft.clusters
        self.service_entries(clusters, vhosts)
        self.destination_rules(clusters)
        for gw in self.store.list("Gateway"):
            hosts = tuple(h for server in gw.spec.servers for h in server.hosts)
            draft.gateway_servers[f"{gw.namespace}/{gw.name}"] = (dict(gw.spec.selector or {}), hosts)
        vss = sorted(self.store.list("VirtualService"), key=lambda r: self.created.get(r.key, 0))
        for vs in vss:
            self.virtual_service(vs, vhosts, clusters, draft.gateways)
        self.unregistered_hosts(vhosts, clusters)

    def unregistered_hosts(self, vhosts: dict[str, VirtualHost], clusters: dict[str, ClusterConfig]) -> None:
        """Hosts meshlab resolves (services run outside the mesh) that no Service or ServiceEntry
        names: passed through (ALLOW_ANY) or black-holed (REGISTRY_ONLY)."""
        for host, (addr, port) in self.dns.items():
            if host in vhosts:
                continue
            if self.outbound_traffic_policy == "REGISTRY_ONLY":
                vhosts[host] = VirtualHost("block_all", (Route("block_all", (), action={"direct": (502, "BlackHoleCluster")}),))
                continue
            name = f"PassthroughCluster|{host}"
            ep = EndpointConfig(addr, port, pod=f"{host} (external)", workload=host, service=host, namespace="external",
                                version="unknown", labels=(), healthy=True)
            clusters[name] = ClusterConfig(name, host, port, "", (ep,), "RANDOM", source="outboundTrafficPolicy ALLOW_ANY")
            vhosts[host] = VirtualHost("allow_any", (Route("allow_any", (WeightedCluster(name),)),))

    # -- DestinationRule --------------------------------------------------------------------
    def destination_rules(self, clusters: dict[str, ClusterConfig]) -> None:
        """Apply each rule's policy to its host's cluster and add one cluster per subset."""
        by_service = {c.service: c for c in clusters.values() if c.subset == ""}
        done: set[str] = set()
        for dr in sorted(self.store.list("DestinationRule"), key=lambda r: self.created.get(r.key, 0)):
            host = config_fqdn(dr.spec.host, dr.namespace)
            base = by_service.get(host)
            if base is None or host in done:
                continue  # no service (reported by analyze()), or an older rule owns the host
            done.add(host)
            source = f"destinationrule/{dr.namespace}/{dr.name}"
            policy = dr.spec.trafficPolicy
            name, src = lb_policy(policy)
            clusters[base.name] = ClusterConfig(base.name, base.service, base.port, "", base.endpoints, name, src,
                                                policy, source, _tls_mode(policy))
            for subset in dr.spec.subsets or []:
                labels = dict(subset.labels or {})
                eps = tuple(e for e in base.endpoints if _selects(labels, e))
                eff = merge_policy(policy, subset.trafficPolicy)
                name, src = lb_policy(eff)
                cname = cluster_name("outbound", base.port, subset.name, base.service)
                clusters[cname] = ClusterConfig(cname, base.service, base.port, subset.name, eps, name, src, eff,
                                                source, _tls_mode(eff))

    # -- ServiceEntry -----------------------------------------------------------------------
    def service_entries(self, clusters: dict[str, ClusterConfig], vhosts: dict[str, VirtualHost]) -> None:
        """Make the hosts of each ServiceEntry routable (one cluster per host)."""
        for se in self.store.list("ServiceEntry"):
            port = se.spec.ports[0].number if se.spec.ports else 80
            for host in se.spec.hosts:
                host = host.lower()
                eps = tuple(self._entry_endpoints(se, host))
                cname = cluster_name("outbound", port, "", host)
                clusters[cname] = ClusterConfig(cname, host, port, "", eps, source=f"serviceentry/{se.namespace}/{se.name}")
                vhosts.setdefault(host, VirtualHost(f"{host}:{port}", (Route("default", (WeightedCluster(cname),)),)))

    def _entry_endpoints(self, se: Resource, host: str) -> Iterable[EndpointConfig]:
        spec = se.spec
        targets: list[tuple[str, int]] = []
        if spec.endpoints:
            for ep in spec.endpoints:
                addr = ep.address or ""
                port = (ep.ports or {}).get(spec.ports[0].name) if spec.ports else None
                resolved = self.dns.get(addr)
                if resolved is not None:
                    targets.append(resolved)
                elif addr:
                    targets.append((addr, port or (spec.ports[0].targetPort or spec.ports[0].number)))
        elif host in self.dns:
            targets.append(self.dns[host])
        for h, p in targets:
            yield EndpointConfig(h, p, pod=f"{host} (external)", workload=host, service=host,
                                 namespace="external", version="unknown", labels=(), healthy=True)

    # -- VirtualService ---------------------------------------------------------------------
    def virtual_service(self, vs: Resource, vhosts: dict[str, VirtualHost], clusters: dict[str, ClusterConfig],
                        gateways: dict[str, dict[str, VirtualHost]]) -> None:
        """Compile one VirtualService into the mesh table and/or its gateways' tables."""
        bound = [_gateway_key(g, vs.namespace) for g in (vs.spec.gateways or [MESH])]
        for context in bound:
            routes = tuple(self._routes(vs, context, clusters))
            for host in vs.spec.hosts:
                key = config_fqdn(host, vs.namespace)
                table = vhosts if context == MESH else gateways.setdefault(context, {})
                existing = table.get(key)
                if existing is not None and existing.name.startswith("virtualservice/"):
                    continue  # an older VirtualService already owns this host (Istio: oldest wins)
                table[key] = VirtualHost(f"virtualservice/{vs.namespace}/{vs.name}:{key}", routes)

    def _routes(self, vs: Resource, context: str, clusters: dict[str, ClusterConfig]) -> Iterable[Route]:
        for i, http in enumerate(vs.spec.http or []):
            matches, raw = [], []
            if http.match:
                for m in http.match:
                    if m.gateways and context not in {_gateway_key(g, vs.namespace) for g in m.gateways}:
                        continue
                    matches.append(compile_match(m))
                    raw.append(m)
                if not matches:
                    continue  # every match block is for another gateway
            dests = []
            dest_headers: dict[str, Any] = {}
            for d in http.route or []:
                cname = self._destination_cluster(d.destination, vs.namespace, clusters)
                weight = 100 if d.weight is None and len(http.route or []) == 1 else (d.weight or 0)
                dests.append(WeightedCluster(cname, weight))
                if d.headers is not None:
                    dest_headers[cname] = d.headers
            mirrors = []
            if http.mirror is not None:
                pct = _mirror_percent(http)
                mirrors.append((self._destination_cluster(http.mirror, vs.namespace, clusters), pct))
            for mp in http.mirrors or []:
                pct = mp.percentage.value if mp.percentage is not None and mp.percentage.value is not None else 100.0
                mirrors.append((self._destination_cluster(mp.destination, vs.namespace, clusters), pct))
            action = {"http": http, "dest_headers": dest_headers, "mirrors": mirrors, "raw_matches": tuple(raw),
                      "source": f"virtualservice/{vs.namespace}/{vs.name}", "index": i}
            yield Route(http.name or f"{vs.name}-{i}", tuple(dests), tuple(matches), action)

    def _destination_cluster(self, dest: Any, namespace: str, clusters: dict[str, ClusterConfig]) -> str:
        host = config_fqdn(dest.host, namespace)
        port = dest.port.number if dest.port is not None and dest.port.number else None
        if port is None:
            port = next((c.port for c in clusters.values() if c.service == host), 80)
        return cluster_name("outbound", port, dest.subset or "", host)


def _tls_mode(policy: Any) -> str:
    """DestinationRule ``tls.mode`` for the client side: ISTIO_MUTUAL, DISABLE or AUTO (unset).
    SIMPLE and MUTUAL (TLS with your own certificates) are accepted but not simulated: AUTO."""
    tls = getattr(policy, "tls", None) if policy is not None else None
    mode = getattr(tls, "mode", None) if tls is not None else None
    return mode if mode in ("ISTIO_MUTUAL", "DISABLE") else "AUTO"


def _selects(labels: dict[str, str], ep: EndpointConfig) -> bool:
    pod = ep.label_dict()
    return all(pod.get(k) == v for k, v in labels.items())


def _gateway_key(name: str, namespace: str) -> str:
    if name == MESH:
        return MESH
    return name if "/" in name else f"{namespace}/{name}"


def _mirror_percent(http: Any) -> float:
    if http.mirrorPercentage is not None and http.mirrorPercentage.value is not None:
        return float(http.mirrorPercentage.value)
    for legacy in (http.mirrorPercent, http.mirror_percent):
        if legacy is not None:
            return float(legacy)
    return 100.0
