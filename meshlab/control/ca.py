"""Citadel: the mesh's certificate authority (part of istiod).

Theory of operation
-------------------
Every workload has an identity, a SPIFFE ID derived from its namespace and service account::

    spiffe://cluster.local/ns/<namespace>/sa/<service account>

The CA holds the mesh's root key. A sidecar's agent (istio-agent) generates its own private key
(which never leaves the pod), puts its identity in a certificate signing request (CSR) and sends
the CSR to the CA together with proof of who it is (on Kubernetes, the pod's service-account
token; here, the mesh vouches for the pod). The CA checks that:

1. the CSR is well formed and signed by the key it carries (the requester owns that key);
2. the identity asked for is the requester's own (a pod cannot get another service's identity);

and issues a short-lived X.509 certificate: no subject, the SPIFFE ID as its only URI SAN,
usable for TLS server and client authentication, signed by the root. The *trust bundle* (the
root certificate) is what every sidecar uses to verify its peers.

Istio's workload certificates live 24 h and are rotated well before they expire; meshlab's TTL
is configurable (seconds in the notebooks) so rotation can be watched.
"""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

__all__ = ["CertificateAuthority", "CSRRejected", "IssuedCert", "spiffe_id", "TRUST_DOMAIN", "new_key", "make_csr",
           "spiffe_of"]

TRUST_DOMAIN = "cluster.local"


def spiffe_id(namespace: str, service_account: str, trust_domain: str = TRUST_DOMAIN) -> str:
    """The SPIFFE identity of a workload."""
    return f"spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}"


class CSRRejected(Exception):
    """The CA refused to sign a certificate signing request."""


@dataclass(frozen=True)
class IssuedCert:
    """A record of one certificate the CA issued."""

    serial: int
    identity: str
    not_before: dt.datetime
    not_after: dt.datetime
    pod: str
    issued_at: dt.datetime | None = None
    ttl_s: float | None = None


def new_key() -> ec.EllipticCurvePrivateKey:
    """A fresh workload key (ECDSA P-256, what Istio uses by default for workload certs)."""
    return ec.generate_private_key(ec.SECP256R1())


def make_csr(key: ec.EllipticCurvePrivateKey, identity: str) -> bytes:
    """A PEM CSR asking for ``identity`` as URI SAN, signed with ``key``."""
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM)


def spiffe_of(cert: x509.Certificate) -> str | None:
    """The SPIFFE URI SAN of a certificate, if any."""
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return None
    for uri in san.get_values_for_type(x509.UniformResourceIdentifier):
        if uri.startswith("spiffe://"):
            return uri
    return None


class CertificateAuthority:
    """The mesh root CA (see module docstring). ``clock`` returns the current UTC datetime."""

    def __init__(self, trust_domain: str = TRUST_DOMAIN, workload_ttl: float = 24 * 3600.0,
                 clock: Callable[[], dt.datetime] | None = None, organization: str = "meshlab") -> None:
        self.trust_domain = trust_domain
        self.workload_ttl = workload_ttl
        self.clock = clock or (lambda: dt.datetime.now(dt.UTC))
        self.key = ec.generate_private_key(ec.SECP256R1())
        now = self.clock()
        name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization),
                          x509.NameAttribute(NameOID.COMMON_NAME, f"{organization} root CA")])
        self.root = (x509.CertificateBuilder()
                     .subject_name(name).issuer_name(name)
                     .public_key(self.key.public_key())
                     .serial_number(x509.random_serial_number())
                     .not_valid_before(now - dt.timedelta(minutes=5))
                     .not_valid_after(now + dt.timedelta(days=3650))
                     .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                     .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True,
                                                  content_commitment=False, key_encipherment=False,
                                                  data_encipherment=False, key_agreement=False,
                                                  encipher_only=False, decipher_only=False), critical=True)
                     .sign(self.key, hashes.SHA256()))
        self.issued: list[IssuedCert] = []
        self.rejected: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    @property
    def trust_bundle(self) -> str:
        """The root certificate, PEM: what every sidecar trusts."""
        return self.root.public_bytes(serialization.Encoding.PEM).decode()

    def sign(self, csr_pem: bytes, identity: str, pod: str = "", ttl: float | None = None) -> bytes:
        """Check ``csr_pem`` and sign it for ``identity`` (the requester's authenticated identity).
        Returns the certificate chain (workload cert + root) in PEM."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem)
        except ValueError as exc:
            self._reject(identity, f"malformed CSR: {exc}")
        if not csr.is_signature_valid:
            self._reject(identity, "CSR signature does not verify: the requester does not own the key")
        try:
            san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
            asked = san.get_values_for_type(x509.UniformResourceIdentifier)
        except x509.ExtensionNotFound:
            asked = []
        if asked != [identity]:
            self._reject(identity, f"CSR asks for {asked or 'no identity'}, but the requester is {identity}")
        if not identity.startswith(f"spiffe://{self.trust_domain}/"):
            self._reject(identity, f"identity {identity} is outside trust domain {self.trust_domain}")
        now = self.clock()
        life = dt.timedelta(seconds=ttl if ttl is not None else self.workload_ttl)
        # X.509 keeps whole seconds: round the expiry up, so a 1 s certificate lives >= 1 s
        not_after = now + life
        not_after = not_after.replace(microsecond=0) + dt.timedelta(seconds=1 if not_after.microsecond else 0)
        serial = x509.random_serial_number()
        cert = (x509.CertificateBuilder()
                .subject_name(x509.Name([])).issuer_name(self.root.subject)
                .public_key(csr.public_key())
                .serial_number(serial)
                .not_valid_before(now - dt.timedelta(seconds=1))
                .not_valid_after(not_after)
                .add_extension(x509.SubjectAlternativeName([x509.UniformResourceIdentifier(identity)]), critical=True)
                .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
                .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=True, content_commitment=False,
                                             data_encipherment=False, key_agreement=False, key_cert_sign=False,
                                             crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
                .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH,
                                                      ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
                .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()),
                               critical=False)
                .sign(self.key, hashes.SHA256()))
        with self._lock:
            self.issued.append(IssuedCert(serial, identity, cert.not_valid_before_utc, cert.not_valid_after_utc, pod,
                                          now, life.total_seconds()))
        return cert.public_bytes(serialization.Encoding.PEM) + self.trust_bundle.encode()

    def _reject(self, identity: str, why: str) -> None:
        with self._lock:
            self.rejected.append((identity, why))
        raise CSRRejected(why)
