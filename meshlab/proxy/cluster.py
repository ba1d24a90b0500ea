"""Clusters and endpoints: where a routed request can go (Envoy's cluster manager, in small).

The control plane pushes *configuration* (``ClusterConfig``: the endpoints of a service or of
one subset, the load-balancing policy). Each sidecar keeps *state* per cluster (``Cluster``):
its load balancer and, per endpoint, a ``Host`` with this sidecar's counters (requests in
flight, totals). State outlives configuration pushes: when a new push arrives, hosts that are
still there keep their counters, new ones start at zero.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .circuit_breaker import CircuitBreaker, Limits
from .lb import LoadBalancer, make_lb
from .outlier import OutlierConfig, OutlierDetector

__all__ = ["EndpointConfig", "ClusterConfig", "Host", "Cluster", "cluster_name"]


def cluster_name(direction: str, port: int, subset: str, fqdn: str) -> str:
    """Istio's cluster naming: ``outbound|80|v1|reviews.default.svc.cluster.local``."""
    return f"{direction}|{port}|{subset}|{fqdn}"


@dataclass(frozen=True)
class EndpointConfig:
    """One endpoint as the control plane sees it: a replica's sidecar inbound address."""

    host: str
    port: int
    pod: str
    workload: str
    service: str
    namespace: str
    version: str
    labels: tuple[tuple[str, str], ...]
    healthy: bool = True
    #: the SPIFFE identity the endpoint's sidecar presents ("" for endpoints without a sidecar)
    principal: str = ""

    @property
    def address(self) -> str:
        """``host:port``."""
        return f"{self.host}:{self.port}"

    def label_dict(self) -> dict[str, str]:
        """The pod labels as a dict."""
        return dict(self.labels)


@dataclass(frozen=True)
class ClusterConfig:
    """One upstream cluster: a service (or one subset of it) and how to balance across it."""

    name: str
    service: str  # FQDN
    port: int
    subset: str
    endpoints: tuple[EndpointConfig, ...]
    lb_policy: str = "LEAST_REQUEST"
    #: consistent-hash key source: ("header", name) | ("cookie", name, ttl_s) | ("source_ip",) |
    #: ("query", name); None unless the DestinationRule asks for consistentHash
    hash_on: tuple[Any, ...] | None = None
    #: the effective DestinationRule trafficPolicy (a config model) or None
    policy: Any = field(default=None, compare=False)
    #: where the configuration came from (``destinationrule/default/reviews``), for proxy-config
    source: str = ""
    #: DestinationRule ``tls.mode``: ISTIO_MUTUAL, DISABLE, or AUTO (unset: auto mTLS)
    tls_mode: str = "AUTO"


class Host:
    """This sidecar's view of one endpoint of a cluster."""

    __slots__ = ("endpoint", "active_rq", "rq_total", "rq_error")

    def __init__(self, endpoint: EndpointConfig) -> None:
        self.endpoint = endpoint
        self.active_rq = 0
        self.rq_total = 0
        self.rq_error = 0

    @property
    def healthy(self) -> bool:
        """Healthy as far as the control plane knows (readiness)."""
        return self.endpoint.healthy

    def __repr__(self) -> str:
        return f"<Host {self.endpoint.pod} {self.endpoint.address} active={self.active_rq}>"


class Cluster:
    """A sidecar's state for one cluster: hosts with counters, the load balancer, the circuit
    breaker (connection-pool limits) and outlier detection."""

    def __init__(self, config: ClusterConfig, rng: random.Random,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rng = rng
        self.clock = clock
        self.config = config
        self.hosts: dict[str, Host] = {}
        self.lb: LoadBalancer = make_lb(config.lb_policy, rng)
        self.limits = Limits.from_policy(config.policy)
        self.breaker = CircuitBreaker(self.limits)
        oc = OutlierConfig.from_policy(config.policy)
        self.outlier: OutlierDetector | None = OutlierDetector(oc, config.name, clock) if oc else None
        self.update(config)

    def _update_policy(self, config: ClusterConfig) -> None:
        limits = Limits.from_policy(config.policy)
        if limits != self.limits:
            old, self.limits = self.breaker, limits
            self.breaker = CircuitBreaker(limits)
            self.breaker.connections, self.breaker.requests = old.connections, old.requests
            self.breaker.pending, self.breaker.retries, self.breaker.stats = old.pending, old.retries, old.stats
        oc = OutlierConfig.from_policy(config.policy)
        if oc is None:
            self.outlier = None
        elif self.outlier is None or self.outlier.config != oc:
            previous = self.outlier
            self.outlier = OutlierDetector(oc, config.name, self.clock)
            if previous is not None:
                self.outlier.state, self.outlier.events = previous.state, previous.events

    def update(self, config: ClusterConfig) -> None:
        """Apply a pushed configuration, keeping the counters of hosts still present."""
        if config.lb_policy != self.config.lb_policy:
            self.lb = make_lb(config.lb_policy, self.rng)
        if config.policy is not self.config.policy:
            self._update_policy(config)
        old = self.hosts
        self.hosts = {}
        for ep in config.endpoints:
            host = old.get(ep.address)
            if host is None:
                host = Host(ep)
            else:
                host.endpoint = ep
            self.hosts[ep.address] = host
        self.config = config

    def healthy_hosts(self) -> list[Host]:
        """Hosts a request may go to now: ready, and not ejected by outlier detection."""
        hosts = [h for h in self.hosts.values() if h.healthy]
        if self.outlier is not None:
            hosts = self.outlier.available(hosts)
        return hosts

    def report(self, host: Host, status: int) -> None:
        """Tell outlier detection how a request to ``host`` ended."""
        if self.outlier is not None:
            self.outlier.report(host, status, [h for h in self.hosts.values() if h.healthy])

    def choose(self, key: str | None = None, exclude: set[str] | None = None) -> Host | None:
        """Pick a host with the load balancer; None when no host is healthy (flag UH)."""
        hosts = self.healthy_hosts()
        if exclude:
            preferred = [h for h in hosts if h.endpoint.address not in exclude]
            hosts = preferred or hosts
        if not hosts:
            return None
        return self.lb.pick(hosts, key)
