"""The rules DestinationRule, Gateway and ServiceEntry must follow beyond their schemas.

Modelled on Istio's ValidateDestinationRule, ValidateGateway and ValidateServiceEntry, plus the CEL
rules of the CRDs; messages use Istio's wording where Istio has one.
"""

from __future__ import annotations

from .checks import (
    Checker,
    check_export_to,
    check_selector,
    dns_label_error,
    fqdn_error,
    host_error,
    ip_error,
    label_errors,
    port_error,
)
from .destination_rule import (
    ClientTLSSettings,
    ConnectionPoolSettings,
    DestinationRule,
    LoadBalancerSettings,
    OutlierDetection,
    PortTrafficPolicy,
    TrafficPolicy,
)
from .gateway import Gateway, Server, ServerTLSSettings, ServiceEntry

__all__ = ["check_destination_rule", "check_gateway", "check_service_entry", "PROTOCOLS"]

PROTOCOLS = frozenset({"HTTP", "HTTPS", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB", "TCP", "TLS", "MONGO",
                       "REDIS", "MYSQL", "UDP"})
_TLS_PROTOCOLS = frozenset({"HTTPS", "TLS"})
_HTTP_PROTOCOLS = frozenset({"HTTP", "HTTP2", "HTTP_PROXY", "GRPC", "GRPC-WEB"})


# ---------------------------------------------------------------- DestinationRule

def check_destination_rule(spec: DestinationRule, c: Checker) -> None:
    """All DestinationRule rules; findings go to ``c``."""
    c.error(host_error(spec.host), "host")
    if spec.trafficPolicy is not None:
        check_traffic_policy(spec.trafficPolicy, c.at("trafficPolicy"))
    for index, subset in enumerate(spec.subsets or []):
        s = c.at("subsets", index)
        if subset.name in [other.name for other in (spec.subsets or [])[:index]]:
            s.error(f"duplicate subset names: {subset.name}", "name")
        s.error(dns_label_error(subset.name, "subset name") if subset.name else "subset name cannot be empty", "name")
        for problem in label_errors(subset.labels):
            s.error(problem, "labels")
        if subset.trafficPolicy is not None:
            check_traffic_policy(subset.trafficPolicy, s.at("trafficPolicy"))
    check_export_to(c, spec.exportTo)
    if spec.workloadSelector is not None and [e for e in spec.exportTo or [] if e not in (".", c.namespace)]:
        c.error("destination rule with workload selector cannot have exportTo beyond current namespace", "exportTo")
    check_selector(c, spec.workloadSelector, "workloadSelector")


def check_traffic_policy(policy: TrafficPolicy, c: Checker) -> None:
    """A traffic policy sets at least one thing; each part follows its own rules."""
    if not policy.set_fields():
        c.error("traffic policy must have at least one field")
    if policy.tunnel is not None and policy.proxyProtocol is not None:
        c.error("tunnel and proxyProtocol must not be set together", "proxyProtocol")
    _check_policy_parts(policy, c)
    for index, port_policy in enumerate(policy.portLevelSettings or []):
        p = c.at("portLevelSettings", index)
        if port_policy.port is None:
            p.error("portTrafficPolicy must have valid port", "port")
        elif port_policy.port.number is not None:
            p.error(port_error(port_policy.port.number), "port", "number")
        if not {"loadBalancer", "connectionPool", "outlierDetection", "tls"} & set(port_policy.set_fields()):
            p.error("port traffic policy must have at least one field")
        _check_policy_parts(port_policy, p)
    if policy.tunnel is not None:
        tunnel = policy.tunnel
        if tunnel.protocol not in (None, "", "CONNECT", "POST"):
            c.error('tunnel protocol must be "CONNECT" or "POST"', "tunnel", "protocol")
        if fqdn_error(tunnel.targetHost) and ip_error(tunnel.targetHost, cidr=False):
            c.error("tunnel target host must be valid FQDN or IP address", "tunnel", "targetHost")
        c.error(port_error(tunnel.targetPort), "tunnel", "targetPort")


def _check_policy_parts(policy: TrafficPolicy | PortTrafficPolicy, c: Checker) -> None:
    if policy.outlierDetection is not None:
        check_outlier_detection(policy.outlierDetection, c.at("outlierDetection"))
    if policy.connectionPool is not None:
        check_connection_pool(policy.connectionPool, c.at("connectionPool"))
    if policy.loadBalancer is not None:
        check_load_balancer(policy.loadBalancer, c.at("loadBalancer"))
    if policy.tls is not None:
        check_client_tls(policy.tls, c.at("tls"))


def check_outlier_detection(od: OutlierDetection, c: Checker) -> None:
    """Percentages 0-100, error counts >= 0, and Istio's deprecation warning."""
    for field in ("maxEjectionPercent", "minHealthPercent"):
        value = getattr(od, field)
        if value is not None and not 0 <= value <= 100:
            c.error(f"must be between 0 and 100 (got {value})", field)
    if od.consecutiveErrors is not None:
        if od.consecutiveErrors < 0:
            c.error(f"must be >= 0 (got {od.consecutiveErrors})", "consecutiveErrors")
        c.warn("outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or "
               "consecutive5xxErrors instead (Istio warning)", "consecutiveErrors")
    if od.consecutiveLocalOriginFailures and not od.splitExternalLocalOriginErrors:
        c.error("outlier detection consecutive local origin failures is specified, but split external local "
                "origin errors is set to false", "consecutiveLocalOriginFailures")


_NON_NEGATIVE = {
    "http1MaxPendingRequests": "http1 max pending requests must be non-negative",
    "http2MaxRequests": "http2 max requests must be non-negative",
    "maxRequestsPerConnection": "max requests per connection must be non-negative",
    "maxRetries": "max retries must be non-negative",
    "maxConcurrentStreams": "max concurrent streams must be non-negative",
}


def check_connection_pool(pool: ConnectionPoolSettings, c: Checker) -> None:
    """Connection-pool limits are non-negative."""
    if pool.http is None and pool.tcp is None:
        c.error("connection pool must have at least one field")
    if pool.http is not None:
        for field, message in _NON_NEGATIVE.items():
            value = getattr(pool.http, field)
            if value is not None and value < 0:
                c.error(f"{message} (got {value})", "http", field)
        if pool.http.h2UpgradePolicy == "UPGRADE" and pool.http.useClientProtocol:
            c.error("use client protocol must not be true when H2UpgradePolicy is UPGRADE", "http", "useClientProtocol")
    if pool.tcp is not None and pool.tcp.maxConnections is not None and pool.tcp.maxConnections < 0:
        c.error(f"max connections must be non-negative (got {pool.tcp.maxConnections})", "tcp", "maxConnections")


def _is_prime(n: int) -> bool:
    if n < 2:
        return False
    return all(n % f for f in range(2, int(n**0.5) + 1))


def check_load_balancer(lb: LoadBalancerSettings, c: Checker) -> None:
    """One policy (simple, consistentHash, backendUtilization); a hash has exactly one key."""
    c.at_most_one(lb, ("simple", "consistentHash", "backendUtilization"))
    ch = lb.consistentHash
    if ch is not None:
        h = c.at("consistentHash")
        keys = ("httpHeaderName", "httpCookie", "useSourceIp", "httpQueryParameterName")
        chosen = [k for k in keys if getattr(ch, k) is not None]
        if len(chosen) != 1:
            got = " and ".join(chosen) if chosen else "none"
            h.error(f"consistentHash needs exactly one of httpHeaderName, httpCookie, useSourceIp or "
                    f"httpQueryParameterName (got {got})")
        h.at_most_one(ch, ("ringHash", "maglev"))
        if ch.minimumRingSize is not None:
            h.warn("consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash "
                   "configuration instead (Istio warning)", "minimumRingSize")
            if ch.ringHash is not None or ch.maglev is not None:
                h.error("only one of MinimumRingSize or Maglev/Ringhash can be specified", "minimumRingSize")
        if ch.maglev is not None:
            size = ch.maglev.tableSize or 0
            if not size:
                h.error("tableSize must be set for maglev", "maglev")
            elif size >= 5000011:
                h.error("tableSize must be less than 5000011 for maglev", "maglev", "tableSize")
            elif not _is_prime(size):
                h.error(f"tableSize must be a prime number for maglev (got {size})", "maglev", "tableSize")
    locality = lb.localityLbSetting
    if locality is not None:
        if locality.distribute and locality.failover:
            c.error("can not simultaneously specify 'distribute' and 'failover'", "localityLbSetting")
        for index, rule in enumerate(locality.distribute or []):
            total = sum((rule.to or {}).values())
            if total != 100:
                c.error(f"total weight {total} != 100", "localityLbSetting", "distribute", index, "to")
        for index, rule in enumerate(locality.failover or []):
            if rule.from_ and rule.from_ == rule.to:
                c.error("locality lb failover settings must specify different regions", "localityLbSetting",
                        "failover", index)


def check_client_tls(tls: ClientTLSSettings, c: Checker) -> None:
    """Client TLS: ISTIO_MUTUAL brings its own certificates; MUTUAL needs a client certificate."""
    if tls.mode == "ISTIO_MUTUAL":
        for field in ("clientCertificate", "privateKey", "caCertificates", "credentialName", "caCrl"):
            if getattr(tls, field):
                c.error(f"{field} should not be set with ISTIO_MUTUAL: Istio provides the certificates", field)
    if tls.mode == "MUTUAL" and not tls.credentialName:
        if not tls.clientCertificate:
            c.error("client certificate required for mutual tls", "clientCertificate")
        if not tls.privateKey:
            c.error("private key required for mutual tls", "privateKey")


# ---------------------------------------------------------------- Gateway

def check_gateway(spec: Gateway, c: Checker) -> None:
    """All Gateway rules; findings go to ``c``."""
    if dns_label_error(c.name, "name"):
        c.error(f"invalid gateway name: {c.name!r} (a gateway name is a DNS label: no dots)")
    if not spec.servers:
        c.error("gateway must have at least one server", "servers")
    names: set[str] = set()
    for index, server in enumerate(spec.servers or []):
        s = c.at("servers", index)
        check_server(server, s)
        if server.port.name in names:
            s.error(f"port names in servers must be unique: duplicate name {server.port.name}", "port", "name")
        names.add(server.port.name)


def check_server(server: Server, c: Checker) -> None:
    """A server: hosts, a valid port and protocol, TLS exactly when the protocol needs it."""
    if not server.hosts:
        c.error("server config must contain at least one host", "hosts")
    for index, host in enumerate(server.hosts):
        namespace, _, name = host.rpartition("/")
        if namespace not in ("", "*", ".") and dns_label_error(namespace, "namespace"):
            c.error(f"invalid namespace {namespace!r} in host {host!r}", "hosts", index)
        if name != "*" and host_error(name) and ip_error(name, cidr=False):
            c.error(host_error(name), "hosts", index)
    port = server.port
    protocol = port.protocol.upper()
    if protocol not in PROTOCOLS:
        c.error(f"invalid protocol {port.protocol!r}, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, "
                "MONGO, REDIS, MYSQL, TCP", "port", "protocol")
    if not (server.bind or "").startswith("unix://"):
        c.error(port_error(port.number), "port", "number")
    if port.targetPort:
        c.error("targetPort has no impact on Gateways", "port", "targetPort")
    if not port.name:
        c.error("port name must be set", "port", "name")
    if protocol in _TLS_PROTOCOLS and server.tls is None:
        c.error("server must have TLS settings for HTTPS/TLS protocols", "tls")
    elif protocol not in _TLS_PROTOCOLS and server.tls is not None:
        only_redirect = server.tls.set_fields().keys() <= {"httpsRedirect"}
        if protocol not in _HTTP_PROTOCOLS:
            c.error("server cannot have TLS settings for non HTTPS/TLS ports", "tls")
        elif not only_redirect:
            c.error("server cannot have TLS settings for plain text HTTP ports", "tls")
    if server.tls is not None:
        check_server_tls(server.tls, c.at("tls"))


def check_server_tls(tls: ServerTLSSettings, c: Checker) -> None:
    """Gateway TLS: the certificates each mode needs, and no conflicting certificate sources."""
    c.at_most_one(tls, ("credentialName", "credentialNames", "tlsCertificates"))
    if tls.mode == "ISTIO_MUTUAL":
        for field in ("serverCertificate", "privateKey", "caCertificates", "credentialName"):
            if getattr(tls, field):
                c.error(f"ISTIO_MUTUAL TLS cannot have associated {field}", field)
        return
    has_credential = tls.credentialName or tls.credentialNames or tls.tlsCertificates
    if tls.mode in ("SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL") and not has_credential:
        label = "SIMPLE" if tls.mode == "SIMPLE" else "MUTUAL"
        if not tls.serverCertificate:
            c.error(f"{label} TLS requires a server certificate", "serverCertificate")
        if not tls.privateKey:
            c.error(f"{label} TLS requires a private key", "privateKey")
        if label == "MUTUAL" and not tls.caCertificates:
            c.error("MUTUAL TLS requires a client CA bundle", "caCertificates")


# ---------------------------------------------------------------- ServiceEntry

def check_service_entry(spec: ServiceEntry, c: Checker) -> None:
    """All ServiceEntry rules (CRD CEL rules and Istio's ValidateServiceEntry)."""
    resolution = spec.resolution or "NONE"
    for index, host in enumerate(spec.hosts):
        c.error("hostname cannot be wildcard" if host == "*" else host_error(host), "hosts", index)
    if spec.workloadSelector is not None:
        if spec.endpoints is not None:
            c.error("only one of WorkloadSelector or Endpoints can be set", "workloadSelector")
        for key, value in (spec.workloadSelector.labels or {}).items():
            if "*" in key or "*" in value:
                c.error(f"wildcard is not supported in selector: {key}={value}", "workloadSelector", "labels", key)
            if not key:
                c.error("empty key is not supported in selector", "workloadSelector", "labels")
        if resolution in ("DNS", "DNS_ROUND_ROBIN"):
            c.warn(f"workloadSelector should not be set when resolution mode is {resolution} (Istio warning)",
                   "workloadSelector")
    for index, address in enumerate(spec.addresses or []):
        c.error(ip_error(address), "addresses", index)
    if any("/" in a for a in spec.addresses or []) and resolution not in ("NONE", "STATIC"):
        c.error("CIDR addresses are allowed only for NONE/STATIC resolution types", "addresses")
    _check_service_ports(spec, c)
    _check_endpoints(spec, resolution, c)
    if resolution != "NONE" and len(spec.hosts) > 1:
        for index, port in enumerate(spec.ports or []):
            protocol = (port.protocol or "").upper()
            if protocol not in _HTTP_PROTOCOLS | _TLS_PROTOCOLS:
                c.error("multiple hosts provided with non-HTTP, non-TLS ports", "ports", index)
                break
    check_export_to(c, spec.exportTo, service_entry=True)


def _check_service_ports(spec: ServiceEntry, c: Checker) -> None:
    names: set[str] = set()
    numbers: set[int] = set()
    for index, port in enumerate(spec.ports or []):
        p = c.at("ports", index)
        if port.name in names:
            p.error(f'Duplicate value: "{port.name}" (port names must be unique)', "name")
        if port.number in numbers:
            p.error(f"port number cannot be duplicated (got {port.number} twice)", "number")
        names.add(port.name)
        numbers.add(port.number)
        p.error(port_error(port.number), "number")
        if port.targetPort is not None:
            p.error(port_error(port.targetPort), "targetPort")
        p.error(dns_label_error(port.name, "port name") if port.name else "invalid port name: ''", "name")
        if port.protocol and port.protocol.upper() not in PROTOCOLS:
            p.error(f"unsupported protocol: {port.protocol}", "protocol")


def _check_endpoints(spec: ServiceEntry, resolution: str, c: Checker) -> None:
    if resolution == "NONE" and spec.endpoints is not None:
        c.error("NONE mode cannot set endpoints", "endpoints")
    if resolution == "DNS_ROUND_ROBIN" and len(spec.endpoints or []) > 1:
        c.error("DNS_ROUND_ROBIN mode cannot have multiple endpoints", "endpoints")
    if resolution in ("DNS", "DNS_ROUND_ROBIN") and not spec.endpoints:
        for index, host in enumerate(spec.hosts):
            if host != "*" and fqdn_error(host):
                c.error(f"hosts must be FQDN if no endpoints are provided for resolution mode {resolution}",
                        "hosts", index)
    port_names = {port.name for port in spec.ports or []}
    for index, endpoint in enumerate(spec.endpoints or []):
        e = c.at("endpoints", index)
        address = endpoint.address
        if not address and not endpoint.network:
            e.error("Address is required", "address")
        elif address and address.startswith("unix://"):
            path = address[len("unix://"):]
            if not path.startswith(("/", "@")) or path.endswith("/"):
                e.error("UDS must be an absolute path or abstract socket", "address")
            if endpoint.ports:
                e.error("UDS may not include ports", "ports")
        elif address and resolution == "STATIC" and ip_error(address, cidr=False):
            e.error(f"endpoint address {address!r} is not a valid IP address", "address")
        elif address and resolution != "STATIC" and ip_error(address, cidr=False) and fqdn_error(address):
            e.error(f"endpoint address {address!r} is not a valid FQDN or an IP address", "address")
        for name, number in (endpoint.ports or {}).items():
            e.error(port_error(number), "ports", name)
            if len(name) >= 63 or dns_label_error(name, "port name"):
                e.error("port name must be valid", "ports", name)
            elif resolution in ("STATIC", "DNS", "DNS_ROUND_ROBIN") and name not in port_names:
                e.error(f"endpoint port {name} is not defined by the service entry", "ports", name)
        for problem in label_errors(endpoint.labels):
            e.error(problem, "labels")
