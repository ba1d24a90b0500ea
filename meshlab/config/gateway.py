"""Gateway and ServiceEntry (networking.istio.io): the edges of the mesh.

A Gateway configures a load balancer at the edge (ingress or egress): ports, hosts and TLS.
A ServiceEntry adds a service to the mesh's registry, typically an external one.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field

from .base import IstioModel, UInt32

__all__ = [
    "Port",
    "ServerTLSSettings",
    "Server",
    "Gateway",
    "ServicePort",
    "WorkloadEntry",
    "ServiceEntryWorkloadSelector",
    "ServiceEntry",
]

TLSVersion = Literal["TLS_AUTO", "TLSV1_0", "TLSV1_1", "TLSV1_2", "TLSV1_3"]


class Port(IstioModel):
    """A port a gateway listens on, with its protocol (HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS)."""

    number: UInt32
    protocol: str
    name: str
    targetPort: UInt32 | None = None


class TLSCertificate(IstioModel):
    """One server certificate (with key and CA) of a gateway server."""

    serverCertificate: str | None = None
    privateKey: str | None = None
    caCertificates: str | None = None


class ServerTLSSettings(IstioModel):
    """TLS a gateway server terminates or passes through."""

    httpsRedirect: bool | None = None
    mode: Literal["PASSTHROUGH", "SIMPLE", "MUTUAL", "AUTO_PASSTHROUGH", "ISTIO_MUTUAL", "OPTIONAL_MUTUAL"] | None = (
        None
    )
    serverCertificate: str | None = None
    privateKey: str | None = None
    caCertificates: str | None = None
    caCrl: str | None = None
    credentialName: str | None = None
    credentialNames: Annotated[list[str], Field(min_length=1, max_length=2)] | None = None
    tlsCertificates: Annotated[list[TLSCertificate], Field(min_length=1, max_length=2)] | None = None
    subjectAltNames: list[str] | None = None
    verifyCertificateSpki: list[str] | None = None
    verifyCertificateHash: list[str] | None = None
    minProtocolVersion: TLSVersion | None = None
    maxProtocolVersion: TLSVersion | None = None
    cipherSuites: list[str] | None = None
    ecdhCurves: list[str] | None = None
    insecureSkipVerify: bool | None = None
    caCertCredentialName: str | None = None


class Server(IstioModel):
    """One listener of a gateway: a port and the hosts it serves."""

    port: Port
    hosts: list[str]
    bind: str | None = None
    tls: ServerTLSSettings | None = None
    name: str | None = None
    defaultEndpoint: str | None = None


class Gateway(IstioModel):
    """The ``spec`` of a Gateway: which gateway pods (``selector``) open which ``servers``."""

    selector: dict[str, str] | None = None
    servers: list[Server] | None = None


class ServicePort(IstioModel):
    """A port of a ServiceEntry."""

    number: UInt32
    name: Annotated[str, Field(max_length=256)]
    protocol: Annotated[str, Field(max_length=256)] | None = None
    targetPort: UInt32 | None = None


class WorkloadEntry(IstioModel):
    """An endpoint of a ServiceEntry: an address (IP, hostname or unix socket) and its ports."""

    address: Annotated[str, Field(max_length=256)] | None = None
    ports: Annotated[dict[str, UInt32], Field(max_length=128)] | None = None
    labels: Annotated[dict[str, str], Field(max_length=256)] | None = None
    network: Annotated[str, Field(max_length=2048)] | None = None
    locality: Annotated[str, Field(max_length=2048)] | None = None
    weight: UInt32 | None = None
    serviceAccount: Annotated[str, Field(max_length=253)] | None = None


class ServiceEntryWorkloadSelector(IstioModel):
    """Selects pods or WorkloadEntries by label as the endpoints of a ServiceEntry."""

    labels: Annotated[dict[str, Annotated[str, Field(max_length=63)]], Field(max_length=256)] | None = None


class ServiceEntry(IstioModel):
    """The ``spec`` of a ServiceEntry."""

    hosts: Annotated[list[str], Field(min_length=1, max_length=256)]
    addresses: Annotated[list[Annotated[str, Field(max_length=64)]], Field(max_length=256)] | None = None
    ports: Annotated[list[ServicePort], Field(max_length=256)] | None = None
    location: Literal["MESH_EXTERNAL", "MESH_INTERNAL"] | None = None
    resolution: Literal["NONE", "STATIC", "DNS", "DNS_ROUND_ROBIN", "DYNAMIC_DNS"] | None = None
    endpoints: Annotated[list[WorkloadEntry], Field(max_length=4096)] | None = None
    workloadSelector: ServiceEntryWorkloadSelector | None = None
    exportTo: list[str] | None = None
    subjectAltNames: list[str] | None = None
