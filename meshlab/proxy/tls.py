"""Mutual TLS on a sidecar's inbound port: plaintext and TLS on the same port, told apart by
the first byte, as Istio's PERMISSIVE mode does.

Theory of operation
-------------------
A TLS connection always starts with a handshake record, whose first byte is ``0x16``; an HTTP
request starts with a letter (``GET``, ``POST``...). So the inbound listener waits for the first
bytes of each connection and then:

=============  ==========================  ============================
mode           plaintext first bytes       TLS first bytes
=============  ==========================  ============================
STRICT         refused (connection reset)  mTLS
PERMISSIVE     accepted as plaintext       mTLS
DISABLE        accepted as plaintext       refused (connection reset)
=============  ==========================  ============================

TLS is terminated with Python's ``ssl`` module in memory (``ssl.MemoryBIO``): the bytes already
read are fed to the TLS engine, decrypted bytes go to the usual HTTP/1.1 connection
(``ServerConnection``), which writes through a small transport that encrypts. The server asks
for the client's certificate and verifies it against the mesh's root (trust bundle); the
client's SPIFFE ID (its URI SAN) becomes the request's *source principal*: it is the only way a
server learns who calls it, since everything else in a request can be forged.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from .http1 import Handler, ServerConnection

if TYPE_CHECKING:
    from .http1 import Listener

__all__ = ["TlsTransport", "SniffingConnection", "principal_of", "TLS_HANDSHAKE"]

TLS_HANDSHAKE = 0x16


def principal_of(peercert: dict[str, Any] | None) -> str | None:
    """The SPIFFE URI SAN of a certificate as returned by ``SSLObject.getpeercert()``."""
    if not peercert:
        return None
    for kind, value in peercert.get("subjectAltName", ()):
        if kind == "URI" and value.startswith("spiffe://"):
            return value
    return None


class TlsFailure(Exception):
    """The TLS handshake failed (bad certificate, unknown CA, expired...)."""


class TlsTransport:
    """The server side of TLS over an existing transport, in memory (see module docstring).
    Looks like an ``asyncio.Transport`` to the HTTP connection above it."""

    def __init__(self, raw: asyncio.Transport, ctx: ssl.SSLContext) -> None:
        self.raw = raw
        self._in = ssl.MemoryBIO()
        self._out = ssl.MemoryBIO()
        self.obj = ctx.wrap_bio(self._in, self._out, server_side=True)
        self.handshake_done = False
        self.principal: str | None = None

    def feed(self, data: bytes) -> list[bytes]:
        """Give received bytes to TLS; returns the decrypted application data."""
        self._in.write(data)
        if not self.handshake_done:
            try:
                self.obj.do_handshake()
            except ssl.SSLWantReadError:
                self._flush()
                return []
            except (ssl.SSLError, OSError) as exc:
                self._flush()
                raise TlsFailure(getattr(exc, "reason", None) or str(exc)) from None
            self.handshake_done = True
            self.principal = principal_of(self.obj.getpeercert())
            self._flush()
        out = []
        while True:
            try:
                chunk = self.obj.read(65536)
            except ssl.SSLWantReadError:
                break
            except (ssl.SSLZeroReturnError, ssl.SSLError):
                # The peer closed TLS (close_notify) or broke it: answer and close the socket,
                # so the connection is seen as gone (a request in flight is cancelled: DC).
                self._flush()
                self.raw.close()
                break
            if not chunk:
                break
            out.append(chunk)
        self._flush()
        return out

    def _flush(self) -> None:
        data = self._out.read()
        if data and not self.raw.is_closing():
            self.raw.write(data)

    # -- the transport interface ServerConnection uses ------------------------------------
    def write(self, data: bytes) -> None:
        """Encrypt and send."""
        self.obj.write(data)
        self._flush()

    def close(self) -> None:
        """Close (TLS close_notify, then the socket)."""
        try:
            self.obj.unwrap()
        except (ssl.SSLError, ssl.SSLWantReadError, OSError, ValueError):
            pass
        self._flush()
        self.raw.close()

    def is_closing(self) -> bool:
        return self.raw.is_closing()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:
        pass

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peer_principal":
            return self.principal
        if name == "peercert":
            return self.obj.getpeercert()
        if name == "ssl_object":
            return self.obj
        return self.raw.get_extra_info(name, default)


class SniffingConnection(asyncio.Protocol):
    """An inbound connection: decides plaintext or TLS from the first byte, enforces the
    PeerAuthentication mode, then hands bytes to an ordinary ``ServerConnection``."""

    def __init__(self, handler: Handler, listener: Listener, mode: Callable[[], str],
                 server_context: Callable[[], ssl.SSLContext], on_refused: Callable[[str], None]) -> None:
        self.handler, self.listener = handler, listener
        self.mode, self.server_context, self.on_refused = mode, server_context, on_refused
        self.raw: asyncio.Transport | None = None
        self.inner: ServerConnection | None = None
        self.tls: TlsTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.raw = transport  # type: ignore[assignment]

    def _refuse(self, why: str) -> None:
        self.on_refused(why)
        if self.raw is not None:
            self.raw.abort()  # a reset, as Envoy gives a client that does not speak the required protocol

    def data_received(self, data: bytes) -> None:
        # The mode is checked on every read, not only at connection start: when a policy
        # changes, Envoy drains the connections its new listener would not accept.
        mode = self.mode()
        is_tls = self.tls is not None if self.inner is not None else data[:1] == bytes([TLS_HANDSHAKE])
        if mode == "STRICT" and not is_tls:
            return self._refuse("plaintext")
        if mode == "DISABLE" and is_tls:
            return self._refuse("tls")
        if self.inner is None:
            self.inner = ServerConnection(self.handler, self.listener)
            if is_tls:
                assert self.raw is not None
                try:
                    self.tls = TlsTransport(self.raw, self.server_context())
                except Exception as exc:  # no certificate could be had
                    return self._refuse(f"tls_unavailable: {exc}")
                self.inner.connection_made(self.tls)  # type: ignore[arg-type]
            else:
                self.inner.connection_made(self.raw)  # type: ignore[arg-type]
        if self.tls is not None:
            try:
                chunks = self.tls.feed(data)
            except TlsFailure as exc:
                return self._refuse(f"tls_handshake: {exc}")
            for chunk in chunks:
                self.inner.data_received(chunk)
        else:
            self.inner.data_received(data)

    def eof_received(self) -> bool | None:
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        if self.inner is not None:
            self.inner.connection_lost(exc)
