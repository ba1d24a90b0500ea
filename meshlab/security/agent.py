"""istio-agent: the part of a sidecar that gets and renews its workload certificate.

Theory of operation
-------------------
When the sidecar first needs its identity (the first mTLS connection it makes or accepts), the
agent generates a private key, writes a CSR for the workload's SPIFFE ID and has the mesh CA
(citadel) sign it. The certificate and key are handed to the proxy as TLS contexts (Envoy gets
them over SDS, the secret discovery service). The key never leaves the agent.

Certificates are short-lived. When a certificate has used up ``grace_ratio`` of its lifetime
(Istio: half), the agent gets a new one; connections already open keep working, new ones use
the new certificate. ``history`` records every certificate with its validity, for the
rotation timeline.
"""

from __future__ import annotations

import datetime as dt
import os
import ssl
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..control.ca import CertificateAuthority, make_csr, new_key

__all__ = ["IstioAgent", "WorkloadCert"]


@dataclass
class WorkloadCert:
    """A workload's current certificate, key and the TLS contexts built from them."""

    identity: str
    serial: int
    not_before: dt.datetime
    not_after: dt.datetime
    chain_pem: bytes
    server_context: ssl.SSLContext
    client_context: ssl.SSLContext
    issued_at: dt.datetime

    @property
    def certificate(self) -> x509.Certificate:
        """The workload certificate (first of the chain)."""
        return x509.load_pem_x509_certificates(self.chain_pem)[0]


def build_contexts(chain_pem: bytes, key_pem: bytes, trust_bundle: str) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """(server, client) TLS contexts that present ``chain_pem`` and require a peer certificate
    signed by ``trust_bundle``. (``ssl`` loads keys only from files: a private temporary file
    is written and removed at once.)"""
    fd, path = tempfile.mkstemp(prefix="meshlab-", suffix=".pem")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(key_pem + chain_pem)
        server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        client = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        for ctx in (server, client):
            ctx.minimum_version = ssl.TLSVersion.TLSv1_2
            ctx.load_cert_chain(path)
            ctx.load_verify_locations(cadata=trust_bundle)
            ctx.verify_mode = ssl.CERT_REQUIRED
        client.check_hostname = False  # peers are checked by SPIFFE identity, not DNS name
    finally:
        os.unlink(path)
    return server, client


class IstioAgent:
    """Certificate management for one sidecar (see module docstring)."""

    def __init__(self, ca: CertificateAuthority, identity: str, pod: str, ttl: float | None = None,
                 grace_ratio: float = 0.5, schedule: Callable[[float, Callable[[], None]], None] | None = None) -> None:
        self.ca = ca
        self.identity = identity
        self.pod = pod
        self.ttl = ttl
        self.grace_ratio = grace_ratio
        self.schedule = schedule
        self.current: WorkloadCert | None = None
        self.history: list[WorkloadCert] = []

    def certificate(self) -> WorkloadCert:
        """The current certificate, issued or renewed if needed."""
        cert = self.current
        if cert is None or self._due(cert):
            cert = self.rotate()
        return cert

    def _due(self, cert: WorkloadCert) -> bool:
        life = (cert.not_after - cert.issued_at).total_seconds()
        return self.ca.clock() >= cert.issued_at + dt.timedelta(seconds=life * self.grace_ratio)

    def rotate(self) -> WorkloadCert:
        """Get a new certificate now: new key, CSR, signature by the CA."""
        key = new_key()
        issued_at = self.ca.clock()
        chain = self.ca.sign(make_csr(key, self.identity), self.identity, pod=self.pod, ttl=self.ttl)
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        server, client = build_contexts(chain, key_pem, self.ca.trust_bundle)
        leaf = x509.load_pem_x509_certificates(chain)[0]
        cert = WorkloadCert(self.identity, leaf.serial_number, leaf.not_valid_before_utc, leaf.not_valid_after_utc,
                            chain, server, client, issued_at)
        self.current = cert
        self.history.append(cert)
        if self.schedule is not None:
            life = (cert.not_after - issued_at).total_seconds()
            self.schedule(life * self.grace_ratio + 0.001, self._renew)
        return cert

    def _renew(self) -> None:
        if self.current is not None and self._due(self.current):
            self.rotate()
