"""Pilot: the part of istiod that turns the service registry (and Istio configuration) into
each sidecar's configuration and pushes it.

The result of one build is a ``Snapshot`` (routes and clusters, with endpoints) stamped with a
version. A sidecar reads ``pilot.snapshot`` once at the start of each request and uses that
object until the request ends, so a push never changes a request already in flight: it
finishes on the configuration it started with, as in Envoy.

Builds are lazy: a change only marks the snapshot stale, and the next reader rebuilds it. Many
changes in a row (deploying 500 replicas) cost one build, which is what istiod's push debouncing
achieves too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from ..proxy.cluster import ClusterConfig, cluster_name
from ..proxy.route import Route, Snapshot, VirtualHost, WeightedCluster
from .registry import Registry, Service

__all__ = ["Pilot", "Draft", "SnapshotHook"]

@dataclass
class Draft:
    """A snapshot being built: build steps (hooks) change it in place."""

    virtual_hosts: dict[str, VirtualHost] = field(default_factory=dict)
    clusters: dict[str, ClusterConfig] = field(default_factory=dict)
    #: per Gateway ("namespace/name"): the virtual hosts of the VirtualServices bound to it
    gateways: dict[str, dict[str, VirtualHost]] = field(default_factory=dict)
    #: per Gateway: (selector labels, hosts its servers expose)
    gateway_servers: dict[str, tuple[dict[str, str], tuple[str, ...]]] = field(default_factory=dict)
    #: compiled security policies and anything else a build step adds (by name)
    extra: dict[str, Any] = field(default_factory=dict)


#: A build step: refines a draft (Istio configuration applied over the registry's defaults).
SnapshotHook = Callable[["Pilot", Draft], None]


class Pilot:
    """Builds and serves versioned sidecar configuration from the registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.version = 0
        self._snapshot: Snapshot | None = None
        self.pushes = 0
        self.hooks: list[SnapshotHook] = []
        registry.subscribe(self.invalidate)

    def invalidate(self) -> None:
        """Mark the configuration stale (the registry or Istio config changed)."""
        self._snapshot = None

    @property
    def snapshot(self) -> Snapshot:
        """The current configuration, rebuilt if stale."""
        snap = self._snapshot
        if snap is None:
            snap = self._snapshot = self.build()
        return snap

    def default_clusters(self, svc: Service) -> ClusterConfig:
        """The cluster for a whole service (all versions): ``outbound|80||<fqdn>``."""
        return ClusterConfig(
            name=cluster_name("outbound", svc.port, "", svc.fqdn), service=svc.fqdn, port=svc.port, subset="",
            endpoints=self.registry.endpoints(svc),
        )

    def build(self) -> Snapshot:
        """Compile services into virtual hosts and clusters (one default route per service)."""
        draft = Draft()
        vhosts, clusters = draft.virtual_hosts, draft.clusters
        for svc in self.registry.services.values():
            cluster = self.default_clusters(svc)
            clusters[cluster.name] = cluster
            vhosts[svc.fqdn] = VirtualHost(
                name=f"{svc.fqdn}:{svc.port}", routes=(Route("default", (WeightedCluster(cluster.name, 100),)),)
            )
        for hook in self.hooks:  # Istio configuration (VirtualService, DestinationRule, ...) refines these
            hook(self, draft)
        self.version += 1
        self.pushes += 1
        return Snapshot(self.version, vhosts, clusters, draft.gateways, draft.gateway_servers, draft.extra)
