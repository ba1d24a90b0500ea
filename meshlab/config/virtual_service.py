"""VirtualService (networking.istio.io): how requests to a host are routed.

Class names follow Istio's API reference (HTTPRoute, HTTPMatchRequest, HTTPRouteDestination, ...), so
a learner can look each one up next to the YAML. Semantic rules live in ``check_virtual_service``.
"""

from __future__ import annotations

from typing import Literal

from .base import Destination, Int32, IstioModel, Percent, StringMatch, UInt32
from .duration import Duration

__all__ = [
    "HeaderOperations",
    "Headers",
    "HTTPMatchRequest",
    "HTTPRouteDestination",
    "RouteDestination",
    "Delegate",
    "HTTPRedirect",
    "HTTPBody",
    "HTTPDirectResponse",
    "RegexRewrite",
    "HTTPRewrite",
    "HTTPRetry",
    "HTTPFaultInjectionDelay",
    "HTTPFaultInjectionAbort",
    "HTTPFaultInjection",
    "CorsPolicy",
    "HTTPMirrorPolicy",
    "HTTPRoute",
    "L4MatchAttributes",
    "TLSMatchAttributes",
    "TCPRoute",
    "TLSRoute",
    "VirtualService",
]


class HeaderOperations(IstioModel):
    """Headers to overwrite (``set``), append (``add``) or delete (``remove``)."""

    set: dict[str, str] | None = None
    add: dict[str, str] | None = None
    remove: list[str] | None = None


class Headers(IstioModel):
    """Header manipulation for the request and for the response."""

    request: HeaderOperations | None = None
    response: HeaderOperations | None = None


class HTTPMatchRequest(IstioModel):
    """Conditions a request must meet; all conditions in one match block must hold (AND)."""

    name: str | None = None
    uri: StringMatch | None = None
    scheme: StringMatch | None = None
    method: StringMatch | None = None
    authority: StringMatch | None = None
    headers: dict[str, StringMatch] | None = None
    port: UInt32 | None = None
    sourceLabels: dict[str, str] | None = None
    gateways: list[str] | None = None
    queryParams: dict[str, StringMatch] | None = None
    ignoreUriCase: bool | None = None
    withoutHeaders: dict[str, StringMatch] | None = None
    sourceNamespace: str | None = None
    statPrefix: str | None = None


class HTTPRouteDestination(IstioModel):
    """A weighted destination of an HTTP route."""

    destination: Destination
    weight: Int32 | None = None
    headers: Headers | None = None


class RouteDestination(IstioModel):
    """A weighted destination of a TCP or TLS route."""

    destination: Destination
    weight: Int32 | None = None


class Delegate(IstioModel):
    """Hands the route over to another VirtualService."""

    name: str | None = None
    namespace: str | None = None


class HTTPRedirect(IstioModel):
    """Answer with a redirect (301 by default) instead of forwarding."""

    uri: str | None = None
    authority: str | None = None
    port: UInt32 | None = None
    derivePort: Literal["FROM_PROTOCOL_DEFAULT", "FROM_REQUEST_PORT"] | None = None
    scheme: str | None = None
    redirectCode: UInt32 | None = None
    prefixRewrite: str | None = None


class HTTPBody(IstioModel):
    """Body of a direct response: a string or base64 bytes."""

    string: str | None = None
    bytes: str | None = None


class HTTPDirectResponse(IstioModel):
    """Answer directly with a fixed status and body."""

    status: UInt32
    body: HTTPBody | None = None


class RegexRewrite(IstioModel):
    """Rewrite the path with an RE2 regex ``match`` and a ``rewrite`` template."""

    match: str | None = None
    rewrite: str | None = None


class HTTPRewrite(IstioModel):
    """Rewrite the path or authority before forwarding."""

    uri: str | None = None
    authority: str | None = None
    uriRegexRewrite: RegexRewrite | None = None


class HTTPRetry(IstioModel):
    """Retry policy. Istio's default is 2 attempts; ``attempts: 0`` disables retries."""

    attempts: Int32 | None = None
    perTryTimeout: Duration | None = None
    retryOn: str | None = None
    retryRemoteLocalities: bool | None = None
    retryIgnorePreviousHosts: bool | None = None
    backoff: Duration | None = None


class HTTPFaultInjectionDelay(IstioModel):
    """Delay a percentage of requests. ``percent`` is the deprecated integer form of ``percentage``."""

    fixedDelay: Duration | None = None
    exponentialDelay: Duration | None = None
    percentage: Percent | None = None
    percent: Int32 | None = None


class HTTPFaultInjectionAbort(IstioModel):
    """Abort a percentage of requests with an HTTP status."""

    httpStatus: Int32 | None = None
    grpcStatus: str | None = None
    http2Error: str | None = None
    percentage: Percent | None = None


class HTTPFaultInjection(IstioModel):
    """Fault injection: a delay, an abort, or both."""

    delay: HTTPFaultInjectionDelay | None = None
    abort: HTTPFaultInjectionAbort | None = None


class CorsPolicy(IstioModel):
    """Cross-origin resource sharing settings."""

    allowOrigin: list[str] | None = None
    allowOrigins: list[StringMatch] | None = None
    allowMethods: list[str] | None = None
    allowHeaders: list[str] | None = None
    exposeHeaders: list[str] | None = None
    maxAge: Duration | None = None
    allowCredentials: bool | None = None
    unmatchedPreflights: Literal["UNSPECIFIED", "FORWARD", "IGNORE"] | None = None


class HTTPMirrorPolicy(IstioModel):
    """Send a copy of a percentage of the traffic to another destination."""

    destination: Destination
    percentage: Percent | None = None


class HTTPRoute(IstioModel):
    """One HTTP rule: if any ``match`` block matches, do what the rule says."""

    name: str | None = None
    match: list[HTTPMatchRequest] | None = None
    route: list[HTTPRouteDestination] | None = None
    redirect: HTTPRedirect | None = None
    directResponse: HTTPDirectResponse | None = None
    delegate: Delegate | None = None
    rewrite: HTTPRewrite | None = None
    timeout: Duration | None = None
    retries: HTTPRetry | None = None
    fault: HTTPFaultInjection | None = None
    mirror: Destination | None = None
    mirrors: list[HTTPMirrorPolicy] | None = None
    mirrorPercent: UInt32 | None = None
    mirror_percent: UInt32 | None = None
    mirrorPercentage: Percent | None = None
    corsPolicy: CorsPolicy | None = None
    headers: Headers | None = None


class L4MatchAttributes(IstioModel):
    """Conditions on a TCP connection."""

    destinationSubnets: list[str] | None = None
    port: UInt32 | None = None
    sourceLabels: dict[str, str] | None = None
    gateways: list[str] | None = None
    sourceNamespace: str | None = None
    sourceSubnet: str | None = None


class TLSMatchAttributes(IstioModel):
    """Conditions on a TLS connection, by SNI."""

    sniHosts: list[str]
    destinationSubnets: list[str] | None = None
    port: UInt32 | None = None
    sourceLabels: dict[str, str] | None = None
    gateways: list[str] | None = None
    sourceNamespace: str | None = None


class TCPRoute(IstioModel):
    """A rule for opaque TCP traffic."""

    match: list[L4MatchAttributes] | None = None
    route: list[RouteDestination] | None = None


class TLSRoute(IstioModel):
    """A rule for unterminated TLS traffic, routed by SNI."""

    match: list[TLSMatchAttributes]
    route: list[RouteDestination] | None = None


class VirtualService(IstioModel):
    """The ``spec`` of a VirtualService: the hosts it applies to and their ordered rules."""

    hosts: list[str] | None = None
    gateways: list[str] | None = None
    http: list[HTTPRoute] | None = None
    tls: list[TLSRoute] | None = None
    tcp: list[TCPRoute] | None = None
    exportTo: list[str] | None = None

