"""Fields that are valid Istio but that meshlab accepts without simulating them.

The table is the single place to edit when the simulation grows: delete a line once meshlab
implements that feature. Keys are ``"Message.field"`` (Istio message name, i.e. our model class) or
``"Message.field=VALUE"`` for one value of an enum. Each match adds a warning naming the field path:
``"spec.http[0].corsPolicy: accepted but not simulated by meshlab (CORS)"``.
"""

from __future__ import annotations

from collections.abc import Iterator

from pydantic import BaseModel

from .yaml_source import Loc

__all__ = ["NOT_SIMULATED", "not_simulated"]

NOT_SIMULATED: dict[str, str] = {
    # VirtualService
    "VirtualService.tcp": "TCP routes",
    "VirtualService.tls": "TLS/SNI routes",
    "HTTPRoute.corsPolicy": "CORS",
    "HTTPRoute.delegate": "VirtualService delegation",
    "HTTPMatchRequest.statPrefix": "per-match stats prefix",
    "HTTPFaultInjectionAbort.grpcStatus": "gRPC aborts: meshlab apps speak plain HTTP",
    "HTTPRetry.retryRemoteLocalities": "localities: meshlab runs a single locality",
    # DestinationRule
    "LoadBalancerSettings.localityLbSetting": "locality load balancing: meshlab runs a single locality",
    "LoadBalancerSettings.zoneAwareLbSetting": "zone-aware routing: meshlab runs a single zone",
    "LoadBalancerSettings.warmupDurationSecs": "slow-start warmup",
    "LoadBalancerSettings.warmup": "slow-start warmup",
    "LoadBalancerSettings.backendUtilization": "utilization-based load balancing",
    "TrafficPolicy.tunnel": "HTTP CONNECT/POST tunnels",
    "TrafficPolicy.proxyProtocol": "PROXY protocol",
    "TrafficPolicy.retryBudget": "retry budgets",
    "OutlierDetection.splitExternalLocalOriginErrors": "separate local-origin failure counting",
    "OutlierDetection.consecutiveLocalOriginFailures": "separate local-origin failure counting",
    "TCPSettings.tcpKeepalive": "TCP keepalive",
    "TCPSettings.maxConnectionDuration": "connection lifetime limits",
    "HTTPSettings.http2KeepAlive": "HTTP/2 keepalive",
    "HTTPSettings.h2UpgradePolicy": "HTTP/2 upgrade",
    "HTTPSettings.useClientProtocol": "HTTP/2 upgrade",
    "HTTPSettings.maxConcurrentStreams": "HTTP/2 stream limits",
    "ClientTLSSettings.caCrl": "certificate revocation lists",
    # Gateway
    "ServerTLSSettings.caCrl": "certificate revocation lists",
    "ServerTLSSettings.cipherSuites": "TLS cipher suite selection",
    "ServerTLSSettings.ecdhCurves": "TLS curve selection",
    "ServerTLSSettings.verifyCertificateSpki": "certificate pinning",
    "ServerTLSSettings.verifyCertificateHash": "certificate pinning",
    # ServiceEntry
    "WorkloadEntry.network": "multi-network meshes",
    "WorkloadEntry.locality": "localities: meshlab runs a single locality",
    # AuthorizationPolicy
    "AuthorizationPolicy.action=CUSTOM": "external authorization (CUSTOM action)",
    "AuthorizationPolicy.provider": "external authorization (CUSTOM action)",
}


def not_simulated(spec: BaseModel, loc: Loc = ("spec",)) -> Iterator[tuple[Loc, str]]:
    """Yield ``(location, warning)`` for every field of ``spec`` listed in :data:`NOT_SIMULATED`."""
    message = type(spec).__name__
    for name, info in type(spec).model_fields.items():
        value = getattr(spec, name)
        if value is None:
            continue
        field = info.alias or name
        here = (*loc, field)
        note = NOT_SIMULATED.get(f"{message}.{field}") or NOT_SIMULATED.get(f"{message}.{field}={value}")
        if note:
            yield here, f"accepted but not simulated by meshlab ({note})"
            continue
        yield from _children(value, here)


def _children(value: object, loc: Loc) -> Iterator[tuple[Loc, str]]:
    if isinstance(value, BaseModel):
        yield from not_simulated(value, loc)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _children(item, (*loc, index))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from _children(item, (*loc, key))
