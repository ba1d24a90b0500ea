"""Routes: how a sidecar decides where a request goes (Envoy's route configuration).

The control plane compiles the mesh's services (and, later, VirtualServices) into a
``RouteTable``: one ``VirtualHost`` per destination host, each an ordered list of ``Route``s.
The router takes the first route whose match accepts the request (routes are tried in order;
*first match wins*); its ``clusters`` say where to send it, by weight.

Host names are resolved as Kubernetes DNS does for a pod in namespace ``ns``: ``cart``,
``cart.ns``, ``cart.ns.svc`` and ``cart.ns.svc.cluster.local`` all name the same service; a
``:port`` suffix is ignored.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cluster import ClusterConfig
    from .http1 import Request

__all__ = ["WeightedCluster", "Route", "VirtualHost", "Snapshot", "fqdn", "config_fqdn", "candidates", "strip_port"]

CLUSTER_DOMAIN = "svc.cluster.local"


def strip_port(authority: str) -> str:
    """``cart:80`` -> ``cart``."""
    if authority.startswith("["):
        return authority.split("]")[0] + "]"
    return authority.rsplit(":", 1)[0] if ":" in authority else authority


def config_fqdn(host: str, namespace: str) -> str:
    """A host as written in Istio configuration: a short name (no dot) is expanded with the
    resource's namespace (``reviews`` -> ``reviews.default.svc.cluster.local``); names with a dot
    and wildcards are taken as written."""
    host = host.lower()
    if "." in host or host.startswith("*"):
        return host
    return f"{host}.{namespace}.{CLUSTER_DOMAIN}"


def candidates(authority: str, namespace: str) -> list[str]:
    """The names a request's authority may mean, in DNS search-path order for a pod in
    ``namespace`` (``cart`` -> ``cart.ns.svc.cluster.local``; ``cart.ns`` -> ``cart.ns.svc...``)."""
    host = strip_port(authority).lower().rstrip(".")
    return [host, f"{host}.{namespace}.{CLUSTER_DOMAIN}", f"{host}.{CLUSTER_DOMAIN}", f"{host}.cluster.local"]


def fqdn(host: str, namespace: str) -> str:
    """The fully qualified service name a short name means from ``namespace``."""
    host = strip_port(host).lower().rstrip(".")
    parts = host.split(".")
    if len(parts) == 1:
        return f"{host}.{namespace}.{CLUSTER_DOMAIN}"
    if len(parts) == 2:
        return f"{host}.{CLUSTER_DOMAIN}"
    if len(parts) == 3 and parts[2] == "svc":
        return f"{host}.cluster.local"
    return host


@dataclass(frozen=True)
class WeightedCluster:
    """One destination of a route and its weight (0-100)."""

    cluster: str
    weight: int = 100


Matcher = Callable[["Request", Any], bool]


@dataclass(frozen=True)
class Route:
    """One HTTP route: match conditions (ORed; empty = match everything) and an action.

    ``action`` holds what later filters read (timeout, retries, fault, rewrite, redirect,
    mirror, header operations) under their Istio field names."""

    name: str
    clusters: tuple[WeightedCluster, ...]
    matches: tuple[Matcher, ...] = ()
    action: dict[str, Any] = field(default_factory=dict, compare=False)

    def matches_request(self, req: Request, stream: Any) -> bool:
        """Whether this route takes ``req`` (records which match block did, for ``rewrite``)."""
        if not self.matches:
            return True
        for i, m in enumerate(self.matches):
            if m(req, stream):
                stream.extra["match_index"] = i
                return True
        return False


@dataclass(frozen=True)
class VirtualHost:
    """The routes for one destination host (a service FQDN)."""

    name: str
    routes: tuple[Route, ...]

    def select(self, req: Request, stream: Any) -> Route | None:
        """The first route that matches, or None (Envoy flag NR)."""
        for route in self.routes:
            if route.matches_request(req, stream):
                return route
        return None


@dataclass(frozen=True)
class Snapshot:
    """Everything a sidecar needs, as pushed by the control plane at one version."""

    version: int
    virtual_hosts: dict[str, VirtualHost]
    clusters: dict[str, ClusterConfig]

    gateways: dict[str, dict[str, VirtualHost]] = field(default_factory=dict)
    gateway_servers: dict[str, tuple[dict[str, str], tuple[str, ...]]] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)

    def virtual_host(self, authority: str, namespace: str, table: dict[str, VirtualHost] | None = None
                     ) -> VirtualHost | None:
        """The virtual host for a request's authority, as seen from ``namespace``: exact names in
        DNS search order first, then the longest matching wildcard (``*.example.com``, ``*``)."""
        vhosts = self.virtual_hosts if table is None else table
        names = candidates(authority, namespace)
        for name in names:
            vh = vhosts.get(name)
            if vh is not None:
                return vh
        host = names[0]
        best: tuple[int, VirtualHost] | None = None
        for key, vh in vhosts.items():
            if key.startswith("*") and host.endswith(key[1:]) and (best is None or len(key) > best[0]):
                best = (len(key), vh)
        return best[1] if best else None
