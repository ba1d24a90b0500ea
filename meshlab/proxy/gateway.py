"""The ingress gateway: a standalone proxy at the edge of the mesh (istio-ingressgateway).

It is a sidecar without an app. Its listener faces the outside (``mesh.ingress_url``); it routes
with the VirtualServices bound to a Gateway that selects it (``selector: {istio:
ingressgateway}``), never with the mesh-internal ones. A request whose Host is not among the
hosts the Gateway's servers expose gets 404 NR, as on a real ingress gateway.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .filters.authn import AuthnFilter
from .filters.authz import AuthzFilter
from .route import VirtualHost, strip_port
from .sidecar import Sidecar

if TYPE_CHECKING:
    from .stream import Stream

__all__ = ["IngressGateway", "host_matches"]

INGRESS_LABELS = {"istio": "ingressgateway", "app": "istio-ingressgateway"}


def host_matches(pattern: str, host: str) -> bool:
    """Gateway host matching: ``*`` matches all, ``*.example.com`` any subdomain; a
    ``namespace/`` prefix (which namespaces' VirtualServices may bind) is ignored here."""
    pattern = pattern.split("/", 1)[1] if "/" in pattern else pattern
    host = strip_port(host).lower()
    if pattern == "*" or host == "*":  # host "*": listing every route (proxy-config)
        return True
    if pattern.startswith("*."):
        return host.endswith(pattern[1:])
    return host == pattern.lower()


class IngressGateway(Sidecar):
    """istio-ingressgateway: requests arrive on ``outbound`` (the edge listener) and are routed
    with the tables of the Gateways that select it."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.labels = dict(INGRESS_LABELS)
        self.edge = True
        # JWT validation and authorization at the edge, as Istio applies policies selecting the
        # ingress gateway (e.g. "only requests with a valid token from this issuer get in")
        self.outbound_filters = [AuthnFilter(), AuthzFilter(), *self.outbound_filters]

    @property
    def url(self) -> str:
        """Where clients outside the mesh send requests."""
        return f"http://{self.outbound.address}"

    def route_table(self, stream: Stream) -> dict[str, VirtualHost]:
        snap = stream.snapshot
        labels = stream.sidecar.labels
        table: dict[str, VirtualHost] = {}
        for key, (selector, hosts) in snap.gateway_servers.items():
            if not all(labels.get(k) == v for k, v in selector.items()):
                continue
            if not any(host_matches(h, stream.authority) for h in hosts):
                continue
            for name, vh in snap.gateways.get(key, {}).items():
                table.setdefault(name, vh)
        return table


