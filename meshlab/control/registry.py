"""The service registry: which services exist and where their replicas are (Kubernetes'
Services and Endpoints, as Istio's control plane watches them).

A *service* is a name in a namespace (``cart.default.svc.cluster.local``) with a port. Its
*endpoints* are its replicas, each reachable at its sidecar's inbound listener and carrying the
pod labels ``app`` and ``version`` that DestinationRule subsets select on. A replica that is not
ready (crashed, starting) stays listed but is marked unhealthy, as Kubernetes moves it to
``notReadyAddresses``.

Every change bumps ``version`` and notifies subscribers (the control plane), which rebuild and
push the sidecars' configuration.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from ..proxy.cluster import EndpointConfig
from ..proxy.route import CLUSTER_DOMAIN

if TYPE_CHECKING:
    from ..workload import Replica

__all__ = ["Service", "Registry", "RegistryError"]


class RegistryError(LookupError):
    """A service or replica that does not exist."""


@dataclass
class Service:
    """A Kubernetes-like Service: name, namespace, port, and the replicas behind it."""

    name: str
    namespace: str = "default"
    port: int = 80
    replicas: list[Replica] = field(default_factory=list)

    @property
    def fqdn(self) -> str:
        """``name.namespace.svc.cluster.local``."""
        return f"{self.name}.{self.namespace}.{CLUSTER_DOMAIN}"

    @property
    def versions(self) -> list[str]:
        """The versions deployed, in deployment order."""
        seen: dict[str, None] = {}
        for r in self.replicas:
            seen.setdefault(r.version, None)
        return list(seen)


class Registry:
    """Services and their endpoints; notifies subscribers on every change."""

    def __init__(self) -> None:
        self.services: dict[tuple[str, str], Service] = {}
        self.version = 0
        self._subscribers: list[Callable[[], None]] = []

    def subscribe(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` after every change."""
        self._subscribers.append(callback)

    def changed(self) -> None:
        """Record a change (bump the version, notify subscribers)."""
        self.version += 1
        for cb in self._subscribers:
            cb()

    def service(self, name: str, namespace: str = "default") -> Service:
        """The service ``name`` in ``namespace`` (RegistryError if unknown)."""
        try:
            return self.services[(namespace, name)]
        except KeyError:
            known = ", ".join(sorted(n for (ns, n) in self.services if ns == namespace)) or "none"
            raise RegistryError(f"no service {name!r} in namespace {namespace!r} (services: {known})") from None

    def ensure_service(self, name: str, namespace: str = "default", port: int = 80) -> Service:
        """The service, created if new."""
        svc = self.services.get((namespace, name))
        if svc is None:
            svc = self.services[(namespace, name)] = Service(name, namespace, port)
        return svc

    def add(self, replica: Replica) -> None:
        """Register a replica as an endpoint of its service."""
        self.ensure_service(replica.service, replica.namespace).replicas.append(replica)
        self.changed()

    def remove(self, replica: Replica) -> None:
        """Remove a replica; a service left with no replicas keeps existing (as a k8s Service)."""
        svc = self.service(replica.service, replica.namespace)
        svc.replicas.remove(replica)
        self.changed()

    def endpoints(self, svc: Service) -> tuple[EndpointConfig, ...]:
        """The endpoint configs of a service's replicas (those with a sidecar)."""
        out = []
        for r in svc.replicas:
            if r.sidecar is None:
                continue
            lst = r.sidecar.inbound
            out.append(EndpointConfig(
                host=lst.host, port=lst.port, pod=r.name, workload=r.workload, service=svc.fqdn,
                namespace=r.namespace, version=r.version, labels=tuple(sorted(r.labels.items())),
                healthy=r.ready, principal=r.sidecar.identity.principal,
            ))
        return tuple(out)
