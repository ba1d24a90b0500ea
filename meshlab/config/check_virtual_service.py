"""The rules a VirtualService must follow beyond its schema (Istio's ValidateVirtualService).

Each function checks one message type and reports at precise field paths. Messages are Istio's
wording where Istio has one.
"""

from __future__ import annotations

from .base import Destination, Percent, StringMatch
from .checks import (
    Checker,
    check_export_to,
    dns_label_error,
    header_name_error,
    host_error,
    ip_error,
    label_errors,
    port_error,
    regex_error,
)
from .errors import show
from .virtual_service import (
    CorsPolicy,
    Headers,
    HTTPFaultInjection,
    HTTPMatchRequest,
    HTTPRedirect,
    HTTPRetry,
    HTTPRewrite,
    HTTPRoute,
    TCPRoute,
    TLSRoute,
    VirtualService,
)

__all__ = ["check_virtual_service", "check_destination"]

RETRY_ON = frozenset({
    "5xx", "gateway-error", "reset", "reset-before-request", "connect-failure", "retriable-4xx",
    "refused-stream", "retriable-status-codes", "retriable-headers", "envoy-ratelimited",
    "http3-post-connect-failure", "cancelled", "deadline-exceeded", "internal", "resource-exhausted",
    "unavailable",
})
GRPC_STATUS = frozenset({
    "OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
    "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
    "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED",
})
HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"})


def check_virtual_service(spec: VirtualService, c: Checker) -> None:
    """All VirtualService rules; findings go to ``c``."""
    hosts = spec.hosts or []
    if not hosts:
        c.error("at least one host is required (a VirtualService without hosts is a delegate, "
                "which meshlab does not simulate)", "hosts")
    mesh_bound = not spec.gateways or "mesh" in spec.gateways
    for index, host in enumerate(hosts):
        if host == "*" and mesh_bound:
            c.error("wildcard host * is not allowed for virtual services bound to the mesh gateway", "hosts", index)
        elif host_error(host) and ip_error(host, cidr=False):
            c.error(host_error(host), "hosts", index)
        elif host in hosts[:index]:
            c.error(f"duplicate hosts in virtual service: {host} & {host}", "hosts", index)
    for index, gateway in enumerate(spec.gateways or []):
        c.error(_gateway_name_error(gateway), "gateways", index)
    if not (spec.http or spec.tcp or spec.tls):
        c.error("http, tcp or tls must be provided in virtual service")
    for index, route in enumerate(spec.http or []):
        check_http_route(route, c.at("http", index), gateway_only=not mesh_bound)
    for index, tcp in enumerate(spec.tcp or []):
        check_tcp_route(tcp, c.at("tcp", index))
    for index, tls in enumerate(spec.tls or []):
        check_tls_route(tls, c.at("tls", index))
    check_export_to(c, spec.exportTo)


def _gateway_name_error(name: str) -> str | None:
    namespace, slash, gateway = name.rpartition("/")
    if slash and (not namespace or not gateway):
        return "config namespace and gateway name cannot be empty"
    if slash and dns_label_error(namespace, "namespace"):
        return f"invalid value for namespace: {namespace!r}"
    return None if gateway and host_error(gateway) is None else f"invalid gateway name {name!r}"


def check_http_route(route: HTTPRoute, c: Checker, gateway_only: bool = False) -> None:
    """One ``http`` rule: what it does, its matches, destinations, and each policy."""
    _check_route_conflicts(route, c)
    for index, match in enumerate(route.match or []):
        check_match(match, c.at("match", index), gateway_only)
    check_route_weights(route.route, c, "route")
    for index, dest in enumerate(route.route or []):
        check_destination(dest.destination, c.at("route", index, "destination"))
        check_header_operations(dest.headers, c.at("route", index, "headers"))
    check_header_operations(route.headers, c.at("headers"))
    if route.redirect is not None:
        check_redirect(route.redirect, c.at("redirect"))
    if route.directResponse is not None:
        status = route.directResponse.status
        if not 200 <= status <= 599:
            c.error(f"HTTP status {status} is not in range 200-599", "directResponse", "status")
        c.at_most_one(route.directResponse.body, ("string", "bytes"), "directResponse", "body")
    if route.rewrite is not None:
        check_rewrite(route.rewrite, c.at("rewrite"))
    if route.retries is not None:
        check_retries(route.retries, c.at("retries"))
    if route.fault is not None:
        check_fault(route.fault, c.at("fault"))
    if route.corsPolicy is not None:
        check_cors(route.corsPolicy, c.at("corsPolicy"))
    _check_mirrors(route, c)


def _check_route_conflicts(route: HTTPRoute, c: Checker) -> None:
    if route.delegate is not None:
        label = f" {route.name}" if route.name else ""
        for name in ("route", "redirect"):
            if getattr(route, name) is not None:
                c.error(f"root HTTP route{label} must not specify {name}", name)
        return
    if route.redirect is not None:
        if route.route:
            c.error("HTTP route cannot contain both route and redirect", "redirect")
        if route.fault is not None:
            c.error("HTTP route cannot contain both fault and redirect", "fault")
        if route.rewrite is not None:
            c.error("HTTP route rule cannot contain both rewrite and redirect", "rewrite")
        if route.directResponse is not None:
            c.error("HTTP route rule cannot contain both direct_response and redirect", "directResponse")
    elif route.directResponse is not None:
        if route.route:
            c.error("HTTP route cannot contain both route and direct_response", "directResponse")
        if route.fault is not None:
            c.error("HTTP route cannot contain both fault and direct_response", "fault")
        if route.rewrite is not None:
            c.error("HTTP route rule cannot contain both rewrite and direct_response", "rewrite")
    elif route.route == []:
        c.error("must not be empty: an HTTP route needs a route, redirect, direct_response or delegate", "route")
    elif not route.route:
        c.error("HTTP route, redirect, direct_response or delegate is required")
    if route.mirror is not None and route.mirrors:
        c.error("HTTP route cannot contain both mirror and mirrors", "mirrors")


def check_route_weights(destinations: list | None, c: Checker, field: str) -> None:
    """Weights are 0-100 and, with more than one destination, add up to 100."""
    destinations = destinations or []
    for index, dest in enumerate(destinations):
        if dest.weight is not None and not 0 <= dest.weight <= 100:
            c.error(f"must be between 0 and 100 (got {dest.weight})", field, index, "weight")
    if len(destinations) > 1:
        total = sum(dest.weight or 0 for dest in destinations)
        if total != 100:
            c.error(f"total destination weight {total} != 100", field)


def check_destination(dest: Destination | None, c: Checker) -> None:
    """A destination: a valid host (not '*'), a valid subset name, a port in range."""
    if dest is None:
        return
    if dest.host == "*":
        c.error("invalid destination host *", "host")
    else:
        c.error(host_error(dest.host), "host")
    if dest.subset is not None:
        c.error(dns_label_error(dest.subset, "subset name") if dest.subset else "subset name cannot be empty",
                "subset")
    if dest.port is not None and dest.port.number is not None:
        c.error(port_error(dest.port.number), "port", "number")


def check_string_match(match: StringMatch | None, c: Checker, where: str, empty_prefix_ok: bool = False) -> None:
    """exact | prefix | regex: at most one; no empty prefix (except uri); regex must compile."""
    if match is None:
        return
    c.at_most_one(match, ("exact", "prefix", "regex"))
    if match.prefix == "" and not empty_prefix_ok:
        c.error(f'"{where}": prefix string match should not be empty', "prefix")
    if match.regex is not None:
        c.error(regex_error(match.regex, f'"{where}"'), "regex")


def check_match(match: HTTPMatchRequest, c: Checker, gateway_only: bool = False) -> None:
    """One match block: header names lowercase and valid, string matches, port, labels, namespace.
    ``@request.auth.claims.<name>`` keys (JWT claim routing) are valid only when the
    VirtualService is bound to gateways, not to the mesh (Istio's rule)."""
    for field in ("headers", "withoutHeaders"):
        for name, value in (getattr(match, field) or {}).items():
            if name.startswith("@request.auth.claims"):
                if not gateway_only:
                    c.error("JWT claim based routing is only supported for gateway", field, name)
            else:
                c.error(header_name_error(name), field, name)
                if name != name.lower():
                    c.error(f"header name {name!r} must be lowercase (write {name.lower()!r})", field, name)
            if field == "withoutHeaders" and value.regex == "*":
                continue
            check_string_match(value, c.at(field, name), field)
    check_string_match(match.uri, c.at("uri"), "uri", empty_prefix_ok=True)
    for field in ("scheme", "method", "authority"):
        check_string_match(getattr(match, field), c.at(field), field)
    for name, value in (match.queryParams or {}).items():
        check_string_match(value, c.at("queryParams", name), "queryParams")
    if match.port is not None:
        c.error(port_error(match.port), "port")
    for problem in label_errors(match.sourceLabels):
        c.error(problem, "sourceLabels")
    if match.sourceNamespace:
        c.error(dns_label_error(match.sourceNamespace, "sourceNamespace match"), "sourceNamespace")
    for index, gateway in enumerate(match.gateways or []):
        c.error(_gateway_name_error(gateway), "gateways", index)


def check_header_operations(headers: Headers | None, c: Checker) -> None:
    """Header set/add/remove: names not empty, no ':' pseudo-headers, Host only via the request."""
    if headers is None:
        return
    for side in ("request", "response"):
        ops = getattr(headers, side)
        if ops is None:
            continue
        for op in ("set", "add"):
            for name in getattr(ops, op) or {}:
                c.error(_header_op_error(name, side == "request"), side, op, name)
        for index, name in enumerate(ops.remove or []):
            c.error(_header_op_error(name, False), side, "remove", index)


def _header_op_error(name: str, allow_authority: bool) -> str | None:
    if not name:
        return "header name cannot be empty"
    lower = name.lower()
    if allow_authority and lower in (":authority", "host"):
        return None
    if lower == "host":
        return f'invalid header "{name}": cannot set Host header'
    if name.startswith(":"):
        return f'invalid header "{name}": header cannot have ":" prefix'
    return None


def check_redirect(redirect: HTTPRedirect, c: Checker) -> None:
    """A redirect must change something; code 3xx; scheme http or https."""
    if not (redirect.uri or redirect.authority or redirect.port or redirect.derivePort or redirect.scheme):
        c.error("redirect must specify URI, authority, scheme, or port")
    c.at_most_one(redirect, ("port", "derivePort"))
    if redirect.redirectCode and not 300 <= redirect.redirectCode <= 399:
        c.error(f"{redirect.redirectCode} is not a valid redirect code, must be 3xx", "redirectCode")
    if redirect.scheme and redirect.scheme not in ("http", "https"):
        c.error('invalid redirect scheme, must be "http" or "https"', "scheme")
    if redirect.port:
        c.error(port_error(redirect.port), "port")


def check_rewrite(rewrite: HTTPRewrite, c: Checker) -> None:
    """A rewrite changes the URI (plain or by regex) or the authority."""
    if rewrite.uri and rewrite.uriRegexRewrite is not None:
        c.error("rewrite may only contain one of URI or UriRegexRewrite")
    elif not (rewrite.uri or rewrite.uriRegexRewrite is not None or rewrite.authority):
        c.error("rewrite must specify at least one of URI, UriRegexRewrite, or authority")
    regex = rewrite.uriRegexRewrite
    if regex is not None:
        if not regex.match or not regex.rewrite:
            c.error("UriRegexRewrite requires both Rewrite and Match fields to be specified", "uriRegexRewrite")
        else:
            c.error(regex_error(regex.match, "HTTPRewrite.UriRegexRewrite.Match"), "uriRegexRewrite", "match")


def check_retries(retries: HTTPRetry, c: Checker) -> None:
    """Attempts >= 0; a disabled policy (0 attempts) configures nothing else; known retryOn values."""
    if retries.attempts is not None and retries.attempts < 0:
        c.error("attempts cannot be negative", "attempts")
    if not retries.attempts and (retries.perTryTimeout or retries.retryOn or retries.retryRemoteLocalities is not None):
        c.error("http retry policy configured when attempts are set to 0 (disabled)", "attempts")
    for policy in (retries.retryOn or "").split(",") if retries.retryOn else []:
        if policy not in RETRY_ON and not (policy.isdigit() and 100 <= int(policy) <= 599):
            c.error(f'"{policy}" is not a valid retryOn policy', "retryOn")


def _check_percentage(percentage: Percent | None, c: Checker) -> None:
    if percentage is not None and percentage.value is not None and not 0 <= percentage.value <= 100:
        c.error(f"must be between 0 and 100 (got {show(percentage.value)})", "percentage", "value")


def check_fault(fault: HTTPFaultInjection, c: Checker) -> None:
    """A fault has a delay and/or an abort; percentages 0-100; statuses Istio can inject."""
    if fault.delay is None and fault.abort is None:
        c.error("HTTP fault injection must have an abort and/or a delay")
    if fault.delay is not None:
        delay = c.at("delay")
        _check_percentage(fault.delay.percentage, delay)
        if fault.delay.percent is not None and not 0 <= fault.delay.percent <= 100:
            delay.error(f"must be between 0 and 100 (got {fault.delay.percent})", "percent")
        delay.at_most_one(fault.delay, ("fixedDelay", "exponentialDelay"))
        if fault.delay.exponentialDelay is not None:
            delay.error("exponentialDelay not supported yet", "exponentialDelay")
    if fault.abort is not None:
        abort = c.at("abort")
        _check_percentage(fault.abort.percentage, abort)
        abort.at_most_one(fault.abort, ("httpStatus", "grpcStatus", "http2Error"))
        status = fault.abort.httpStatus
        if status is not None and not 200 <= status <= 599:
            abort.error(f"HTTP status {status} is not in range 200-599", "httpStatus")
        if fault.abort.grpcStatus is not None and fault.abort.grpcStatus not in GRPC_STATUS:
            abort.error(f"gRPC status {fault.abort.grpcStatus!r} is not supported; use a name like 'NOT_FOUND'",
                        "grpcStatus")
        if fault.abort.http2Error is not None:
            abort.error("HTTP/2 abort fault injection not supported yet", "http2Error")
        if status is None and fault.abort.grpcStatus is None and fault.abort.http2Error is None:
            abort.warn("abort configured, but error type not set (Istio warning)")


def check_cors(cors: CorsPolicy, c: Checker) -> None:
    """CORS: origins match something, methods are HTTP methods, header names are valid."""
    for index, origin in enumerate(cors.allowOrigins or []):
        if not (origin.exact or origin.prefix or origin.regex):
            c.error("'' is not a valid match type for CORS allow origins", "allowOrigins", index)
        elif origin.regex is not None:
            c.error(regex_error(origin.regex, "corsPolicy.allowOrigins"), "allowOrigins", index, "regex")
    for index, method in enumerate(cors.allowMethods or []):
        if method not in HTTP_METHODS:
            c.error(f'"{method}" is not a supported HTTP method', "allowMethods", index)
    for field in ("allowHeaders", "exposeHeaders"):
        for index, name in enumerate(getattr(cors, field) or []):
            if name != "*":
                c.error(header_name_error(name), field, index)


def _check_mirrors(route: HTTPRoute, c: Checker) -> None:
    check_destination(route.mirror, c.at("mirror"))
    for field in ("mirrorPercent", "mirror_percent"):
        value = getattr(route, field)
        if value is not None:
            if value > 100:
                c.error(f"mirror_percent must have a max value of 100 (it has {value})", field)
            c.warn(f'using deprecated setting "{field}", use "mirrorPercentage" instead (Istio warning)', field)
    value = route.mirrorPercentage.value if route.mirrorPercentage is not None else None
    if value is not None and not 0 <= value <= 100:
        c.error(f"must be between 0 and 100 (got {show(value)})", "mirrorPercentage", "value")
    for index, mirror in enumerate(route.mirrors or []):
        check_destination(mirror.destination, c.at("mirrors", index, "destination"))
        _check_percentage(mirror.percentage, c.at("mirrors", index))


def check_tcp_route(route: TCPRoute, c: Checker) -> None:
    """A TCP rule needs destinations; matches name valid subnets, ports and labels."""
    if not route.route:
        c.error("TCP route is required", "route")
    for index, match in enumerate(route.match or []):
        m = c.at("match", index)
        for i, subnet in enumerate(match.destinationSubnets or []):
            m.error(ip_error(subnet), "destinationSubnets", i)
        if match.sourceSubnet:
            m.error(ip_error(match.sourceSubnet), "sourceSubnet")
        if match.port is not None:
            m.error(port_error(match.port), "port")
        for problem in label_errors(match.sourceLabels):
            m.error(problem, "sourceLabels")
    _check_l4_destinations(route.route, c)


def check_tls_route(route: TLSRoute, c: Checker) -> None:
    """A TLS rule needs SNI matches and destinations."""
    if not route.match:
        c.error("TLS route must have at least one match condition", "match")
    for index, match in enumerate(route.match):
        if not match.sniHosts:
            c.error("TLS match must have at least one SNI host", "match", index, "sniHosts")
        for i, sni in enumerate(match.sniHosts):
            c.error(host_error(sni) if ip_error(sni, cidr=False) else None, "match", index, "sniHosts", i)
        if match.port is not None:
            c.error(port_error(match.port), "match", index, "port")
    if not route.route:
        c.error("TLS route is required", "route")
    _check_l4_destinations(route.route, c)


def _check_l4_destinations(destinations: list | None, c: Checker) -> None:
    check_route_weights(destinations, c, "route")
    for index, dest in enumerate(destinations or []):
        check_destination(dest.destination, c.at("route", index, "destination"))
