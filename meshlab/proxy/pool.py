"""The client side of HTTP/1.1: upstream connections and a keep-alive pool per endpoint.

Theory of operation
-------------------
A sidecar forwards each request to an *endpoint* (``host:port``). Opening a TCP connection per
request would cost more than the proxying itself, so, like Envoy, each endpoint has a pool of
keep-alive connections. One connection carries one request at a time (HTTP/1.1, no
pipelining upstream).

The known race of keep-alive: the server may close an idle connection at the very moment we
reuse it. Two defences, both standard:

1. idle connections expire in the pool *before* the server's keep-alive timeout would close
   them (``idle_timeout`` defaults to 2 s; uvicorn closes after 5 s). meshlab's own listeners
   never close an idle connection, so a sidecar keeps its connections to other sidecars for
   Envoy's one hour (``circuit_breaker.ENVOY_IDLE_TIMEOUT``, or the DestinationRule's
   ``http.idleTimeout``) and does not pay a new mTLS handshake after every pause;
2. a request written to a *reused* connection that dies before any response byte arrives is
   sent once more on a fresh connection (nothing reached the application, so it is safe).

Failures are raised as exceptions a sidecar maps onto Envoy's response flags:
``ConnectFailure`` (UF: could not connect), ``UpstreamReset`` (UF/UC: connection dropped before a
complete response).

The same client code serves the sidecar's upstream side, ``Mesh.call``/``Mesh.load`` and the
benchmark's load generator.
"""

from __future__ import annotations

import asyncio
import ssl as ssl_module
import time
from collections import deque
from typing import Any

import httptools

from .http1 import Headers, Request, Response, serialize_request

__all__ = ["ConnectFailure", "UpstreamReset", "UpstreamConnection", "Pool", "PoolSet"]


class ConnectFailure(ConnectionError):
    """The upstream refused or did not accept the TCP connection (Envoy flag UF)."""


class UpstreamReset(ConnectionError):
    """The upstream connection closed before a complete response arrived."""


class UpstreamConnection(asyncio.Protocol):
    """One client connection to an upstream endpoint; one request in flight at a time."""

    def __init__(self, pool: Pool) -> None:
        self.pool = pool
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.requests_sent = 0
        self.last_used = 0.0
        self._parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Response] | None = None
        #: whether the last response allows reusing this connection (hop-by-hop: the pool's
        #: business only; the Response handed to the caller asks nothing of the next hop)
        self.reusable = True
        self._got_bytes = False
        self._head_only = False
        self._status = 0
        self._headers: list[tuple[str, str]] = []
        self._body: list[bytes] = []

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self._got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._finish_error(UpstreamReset(f"malformed response from upstream: {exc}"))
            self.close()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.pool._forget(self)
        self._finish_error(UpstreamReset("upstream connection closed before the response was complete"))

    # -- parser callbacks -------------------------------------------------------------------
    def on_message_begin(self) -> None:
        self._headers = []
        self._body = []

    def on_status(self, status: bytes) -> None:
        pass

    def on_header(self, name: bytes, value: bytes) -> None:
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        if self._head_only:  # a response to HEAD has no body whatever its headers say
            self._complete(keep_alive=False)

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        if not self._head_only:
            self._complete(self._parser.should_keep_alive())

    # -- request/response -------------------------------------------------------------------
    def _complete(self, keep_alive: bool) -> None:
        h = Headers.__new__(Headers)
        h._items = self._headers
        self.reusable = keep_alive
        resp = Response(self._parser.get_status_code(), h, b"".join(self._body))
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(resp)

    def _finish_error(self, exc: Exception) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)

    async def send(self, req: Request, target: str | None = None) -> Response:
        """Write ``req`` and wait for the complete response."""
        if self.closed or self.transport is None:
            raise UpstreamReset("connection already closed")
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._got_bytes = False
        self._head_only = req.method == "HEAD"
        self.requests_sent += 1
        self.transport.write(serialize_request(req, target))
        try:
            return await self._waiter
        except asyncio.CancelledError:
            # The caller gave up (timeout, downstream gone): reset the connection, as Envoy
            # resets the upstream stream; the server sees it go and cancels the request.
            self.closed = True
            if self.transport is not None:
                self.transport.abort()
            raise

    @property
    def got_bytes(self) -> bool:
        """Whether any response byte arrived for the current request."""
        return self._got_bytes

    def close(self) -> None:
        """Close the connection."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


class Pool:
    """Keep-alive connections to one endpoint ``host:port``.

    ``active`` counts connections open (idle or busy): the figure Envoy's circuit breaker
    ``maxConnections`` limits."""

    def __init__(self, host: str, port: int, idle_timeout: float = 2.0, max_idle: int = 64,
                 connect_timeout: float = 10.0, max_requests_per_connection: int = 0,
                 ssl: ssl_module.SSLContext | None = None, expect_principal: str = "") -> None:
        self.host, self.port = host, port
        self.idle_timeout = idle_timeout
        self.max_idle = max_idle
        self.connect_timeout = connect_timeout
        self.max_requests_per_connection = max_requests_per_connection
        #: TLS: the client context (mutual TLS with the workload certificate) and the SPIFFE
        #: identity the server must present
        self.ssl = ssl
        self.expect_principal = expect_principal
        self.idle: deque[UpstreamConnection] = deque()
        self.connections: set[UpstreamConnection] = set()
        self.opened = 0
        self.reused = 0

    @property
    def active(self) -> int:
        """Open connections, idle or busy."""
        return len(self.connections)

    def _forget(self, conn: UpstreamConnection) -> None:
        self.connections.discard(conn)
        try:
            self.idle.remove(conn)
        except ValueError:
            pass

    async def _connect(self) -> UpstreamConnection:
        loop = asyncio.get_running_loop()
        try:
            _, conn = await asyncio.wait_for(
                loop.create_connection(lambda: UpstreamConnection(self), self.host, self.port, ssl=self.ssl),
                self.connect_timeout,
            )
        except (TimeoutError, OSError) as exc:
            raise ConnectFailure(f"cannot connect to {self.host}:{self.port}: {exc or 'timeout'}") from None
        if self.ssl is not None and self.expect_principal:
            from .tls import principal_of

            got = principal_of(conn.transport.get_extra_info("peercert")) if conn.transport else None
            if got != self.expect_principal:
                conn.close()
                raise ConnectFailure(f"server identity mismatch: expected {self.expect_principal}, got {got}")
        self.connections.add(conn)
        self.opened += 1
        return conn

    def _take_idle(self) -> UpstreamConnection | None:
        now = time.monotonic()
        while self.idle:
            conn = self.idle.pop()  # most recently used first: the least likely to be stale
            if conn.closed:
                continue
            if now - conn.last_used > self.idle_timeout:
                conn.close()
                continue
            return conn
        return None

    def _release(self, conn: UpstreamConnection, keep_alive: bool) -> None:
        limit = self.max_requests_per_connection
        if (not keep_alive or conn.closed or len(self.idle) >= self.max_idle
                or (limit and conn.requests_sent >= limit)):
            conn.close()
            return
        conn.last_used = time.monotonic()
        self.idle.append(conn)

    async def send(self, req: Request, target: str | None = None) -> Response:
        """Send ``req`` on a pooled connection (see the module docstring for the retry rule)."""
        conn = self._take_idle()
        if conn is not None:
            self.reused += 1
            try:
                resp = await conn.send(req, target)
            except UpstreamReset:
                if conn.got_bytes:
                    raise
                conn = None  # stale keep-alive connection: try once on a fresh one
            else:
                self._release(conn, conn.reusable and req.keep_alive)
                return resp
        conn = await self._connect()
        resp = await conn.send(req, target)
        self._release(conn, conn.reusable and req.keep_alive)
        return resp

    def close(self) -> None:
        """Close every connection of the pool."""
        for conn in list(self.connections):
            conn.close()
        self.connections.clear()
        self.idle.clear()


class PoolSet:
    """One ``Pool`` per endpoint address, created on first use."""

    def __init__(self, **pool_options: float) -> None:
        self.pools: dict[tuple[str, int, tuple[tuple[str, Any], ...]], Pool] = {}
        self.options = pool_options

    def get(self, host: str, port: int, options: dict[str, Any] | None = None) -> Pool:
        """The pool for ``host:port`` (one per distinct ``options``, e.g. a cluster's limits)."""
        key = (host, port, tuple(sorted(options.items())) if options else ())
        pool = self.pools.get(key)
        if pool is None:
            opts = {**self.options, **(options or {})}
            pool = self.pools[key] = Pool(host, port, **opts)  # type: ignore[arg-type]
        return pool

    async def send(self, host: str, port: int, req: Request, target: str | None = None,
                   options: dict[str, Any] | None = None) -> Response:
        """Send ``req`` to ``host:port`` through its pool."""
        return await self.get(host, port, options).send(req, target)

    def close(self) -> None:
        """Close every pool."""
        for pool in self.pools.values():
            pool.close()
        self.pools.clear()
