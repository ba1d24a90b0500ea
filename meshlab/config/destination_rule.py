"""DestinationRule (networking.istio.io): what happens to traffic after routing picked a service.

Subsets (versions), load balancing, connection-pool limits (circuit breaking), outlier detection and
client TLS. Class names follow Istio's API reference. Semantic rules live in ``check_destination_rule``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import Int32, IstioModel, PortSelector, UInt32, WorkloadSelector, between
from .duration import AnyDuration, Duration

__all__ = [
    "HTTPCookie",
    "RingHash",
    "MagLev",
    "ConsistentHashLB",
    "LocalityLoadBalancerSetting",
    "WarmupConfiguration",
    "BackendUtilization",
    "LoadBalancerSettings",
    "TcpKeepalive",
    "TCPSettings",
    "HTTP2KeepAlive",
    "HTTPSettings",
    "ConnectionPoolSettings",
    "OutlierDetection",
    "ClientTLSSettings",
    "PortTrafficPolicy",
    "TunnelSettings",
    "ProxyProtocol",
    "RetryBudget",
    "TrafficPolicy",
    "Subset",
    "DestinationRule",
]

SimpleLB = Literal["UNSPECIFIED", "LEAST_CONN", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST"]
TLSMode = Literal["DISABLE", "SIMPLE", "MUTUAL", "ISTIO_MUTUAL"]


class CookieAttribute(IstioModel):
    """An extra attribute of the generated cookie."""

    name: str
    value: str | None = None


class HTTPCookie(IstioModel):
    """Hash on a cookie; Envoy creates it (with ``ttl``) when it is missing."""

    name: str
    path: str | None = None
    ttl: AnyDuration | None = None
    attributes: list[CookieAttribute] | None = None


class RingHash(IstioModel):
    """Ring-hash (ketama) consistent hashing."""

    minimumRingSize: Annotated[int, Field(ge=0)] | None = None


class MagLev(IstioModel):
    """Maglev consistent hashing; ``tableSize`` must be a prime."""

    tableSize: Annotated[int, Field(ge=0)] | None = None


class ConsistentHashLB(IstioModel):
    """Session affinity: hash on a header, cookie, source IP or query parameter."""

    httpHeaderName: str | None = None
    httpCookie: HTTPCookie | None = None
    useSourceIp: bool | None = None
    httpQueryParameterName: str | None = None
    ringHash: RingHash | None = None
    maglev: MagLev | None = None
    minimumRingSize: Annotated[int, Field(ge=0)] | None = None


class LocalityDistribute(IstioModel):
    """Share of traffic from one locality to others (weights sum to 100)."""

    from_: str | None = Field(None, alias="from")
    to: dict[str, UInt32] | None = None


class LocalityFailover(IstioModel):
    """Where traffic of one region goes when it has no healthy endpoints."""

    from_: str | None = Field(None, alias="from")
    to: str | None = None


class LocalityLoadBalancerSetting(IstioModel):
    """Locality-aware load balancing: distribute, failover, failoverPriority."""

    distribute: list[LocalityDistribute] | None = None
    failover: list[LocalityFailover] | None = None
    failoverPriority: list[str] | None = None
    enabled: bool | None = None


class ZoneAwareLbSetting(IstioModel):
    """Envoy zone-aware routing settings."""

    enabled: bool | None = None
    failover: list[LocalityFailover] | None = None
    failoverPriority: list[str] | None = None
    minClusterSize: Annotated[int, Field(ge=1, le=4294967295)] | None = None


class WarmupConfiguration(IstioModel):
    """Slow start: new endpoints get a growing share of traffic during ``duration``."""

    duration: Duration
    minimumPercent: Annotated[float, between(0, 100)] | None = None
    aggression: Annotated[float, Field(ge=0)] | None = None


class BackendUtilization(IstioModel):
    """Client-side weighted round robin from backend-reported utilization (ORCA)."""

    errorUtilizationPenaltyPercent: UInt32 | None = None
    metricNamesForComputingUtilization: list[str] | None = None
    weightExpirationPeriod: AnyDuration | None = None
    weightStabilizationPeriod: AnyDuration | None = None
    weightUpdatePeriod: AnyDuration | None = None


class LoadBalancerSettings(IstioModel):
    """Load balancing policy: ``simple`` (LEAST_REQUEST by default), ``consistentHash`` or others."""

    simple: SimpleLB | None = None
    consistentHash: ConsistentHashLB | None = None
    backendUtilization: BackendUtilization | None = None
    localityLbSetting: LocalityLoadBalancerSetting | None = None
    zoneAwareLbSetting: ZoneAwareLbSetting | None = None
    warmupDurationSecs: Duration | None = None
    warmup: WarmupConfiguration | None = None


class TcpKeepalive(IstioModel):
    """TCP keepalive probes."""

    probes: UInt32 | None = None
    time: Duration | None = None
    interval: Duration | None = None


class TCPSettings(IstioModel):
    """Limits on TCP connections to each upstream host."""

    maxConnections: Int32 | None = None
    connectTimeout: Duration | None = None
    tcpKeepalive: TcpKeepalive | None = None
    maxConnectionDuration: Duration | None = None
    idleTimeout: AnyDuration | None = None


class HTTP2KeepAlive(IstioModel):
    """HTTP/2 PING keepalive."""

    interval: Duration | None = None
    timeout: Duration | None = None


class HTTPSettings(IstioModel):
    """Limits on HTTP requests (circuit breaking): pending requests, concurrent requests, retries."""

    http1MaxPendingRequests: Int32 | None = None
    http2MaxRequests: Int32 | None = None
    maxRequestsPerConnection: Int32 | None = None
    maxRetries: Int32 | None = None
    idleTimeout: Duration | None = None
    h2UpgradePolicy: Literal["DEFAULT", "DO_NOT_UPGRADE", "UPGRADE"] | None = None
    useClientProtocol: bool | None = None
    maxConcurrentStreams: Int32 | None = None
    http2KeepAlive: HTTP2KeepAlive | None = None


class ConnectionPoolSettings(IstioModel):
    """Connection-pool limits; requests over the limit fail fast with 503 (flag UO)."""

    tcp: TCPSettings | None = None
    http: HTTPSettings | None = None


class OutlierDetection(IstioModel):
    """Eject hosts that keep failing (defaults: 5 errors, 10s interval, 30s ejection, 10%)."""

    consecutiveErrors: Int32 | None = None
    consecutive5xxErrors: UInt32 | None = None
    consecutiveGatewayErrors: UInt32 | None = None
    consecutiveLocalOriginFailures: UInt32 | None = None
    splitExternalLocalOriginErrors: bool | None = None
    interval: Duration | None = None
    baseEjectionTime: Duration | None = None
    maxEjectionPercent: Int32 | None = None
    minHealthPercent: Int32 | None = None
    outlierDetectionHttpErrorCodes: list[Annotated[int, between(100, 599)]] | None = None


class ClientTLSSettings(IstioModel):
    """TLS the client side uses toward the upstream (``ISTIO_MUTUAL`` is mesh mTLS)."""

    mode: TLSMode | None = None
    clientCertificate: str | None = None
    privateKey: str | None = None
    caCertificates: str | None = None
    credentialName: str | None = None
    subjectAltNames: list[str] | None = None
    sni: str | None = None
    insecureSkipVerify: bool | None = None
    caCrl: str | None = None


class PortTrafficPolicy(IstioModel):
    """Traffic policy for one port of the service."""

    port: PortSelector | None = None
    loadBalancer: LoadBalancerSettings | None = None
    connectionPool: ConnectionPoolSettings | None = None
    outlierDetection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None


class TunnelSettings(IstioModel):
    """Tunnel TCP over HTTP CONNECT or POST."""

    protocol: str | None = None
    targetHost: str
    targetPort: UInt32


class ProxyProtocol(IstioModel):
    """Send the PROXY protocol header upstream."""

    version: Literal["V1", "V2"] | None = None


class RetryBudget(IstioModel):
    """Limit retries to a share of active requests."""

    percent: Annotated[float, between(0, 100)] | None = None
    minRetryConcurrency: UInt32 | None = None
    budgetInterval: AnyDuration | None = None


class TrafficPolicy(IstioModel):
    """Policies applied to traffic toward a service (or one subset of it)."""

    loadBalancer: LoadBalancerSettings | None = None
    connectionPool: ConnectionPoolSettings | None = None
    outlierDetection: OutlierDetection | None = None
    tls: ClientTLSSettings | None = None
    portLevelSettings: Annotated[list[PortTrafficPolicy], Field(max_length=4096)] | None = None
    tunnel: TunnelSettings | None = None
    proxyProtocol: ProxyProtocol | None = None
    retryBudget: RetryBudget | None = None


class Subset(IstioModel):
    """A named group of endpoints of the service, selected by labels (usually ``version``)."""

    name: str
    labels: dict[str, str] | None = None
    trafficPolicy: TrafficPolicy | None = None


class DestinationRule(IstioModel):
    """The ``spec`` of a DestinationRule."""

    host: str
    trafficPolicy: TrafficPolicy | None = None
    subsets: list[Subset] | None = None
    exportTo: list[str] | None = None
    workloadSelector: WorkloadSelector | None = None
