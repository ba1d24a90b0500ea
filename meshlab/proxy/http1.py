"""HTTP/1.1 on the wire: messages, the server side of a connection, and listeners.

Theory of operation
-------------------
Every hop of the mesh (a sidecar's inbound and outbound listeners, its admin port, the
ingress gateway) speaks HTTP/1.1 through this module. httptools (the parser behind uvicorn)
does the parsing; this module only turns parser callbacks into whole messages.

A message body is buffered completely before it is handed on. Real Envoy streams bodies; for
the small JSON bodies of a study guide, buffering keeps the proxy logic readable (a filter sees
a whole request) and costs nothing measurable.

Server side (``ServerConnection``), one per accepted socket::

    bytes --feed--> httptools parser --callbacks--> Request --queue--> handler (one at a time)
                                                                   \\--> Response bytes, in order

* Pipelined requests are queued and answered in order (HTTP/1.1 requires it).
* A header block larger than ``MAX_HEADER_BYTES`` (64 KiB, Envoy's default limit too) is
  answered ``431`` and the connection closed; a request the parser rejects is answered ``400``
  and the connection closed. Neither affects the listener or other connections.
* Keep-alive is the default; ``Connection: close`` (or HTTP/1.0 without keep-alive) closes the
  connection after the response.
* If the peer goes away while its request is being handled, the handler task is cancelled:
  a sidecar sees ``asyncio.CancelledError`` and logs response flag DC (downstream closed).
"""

from __future__ import annotations

import asyncio
import socket
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from http import HTTPStatus

import httptools

__all__ = [
    "MAX_HEADER_BYTES",
    "Headers",
    "Request",
    "Response",
    "Handler",
    "ServerConnection",
    "Listener",
    "bind_socket",
    "serialize_request",
    "serialize_response",
]

MAX_HEADER_BYTES = 64 * 1024
#: After a 400/431 the connection is half-closed, then closed after this delay (Envoy's
#: ``delayed_close_timeout`` default).
DELAYED_CLOSE_S = 1.0

#: Headers that describe one hop, not the message: a proxy never forwards them.
HOP_BY_HOP = frozenset(
    {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te", "trailer", "upgrade",
     "content-length"}
)


class Headers:
    """An ordered, case-insensitive multi-map of HTTP headers (names stored lowercase)."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] | dict[str, str] | None = None) -> None:
        if items is None:
            self._items: list[tuple[str, str]] = []
        elif isinstance(items, dict):
            self._items = [(k.lower(), str(v)) for k, v in items.items()]
        else:
            self._items = [(k.lower(), v) for k, v in items]

    def get(self, name: str, default: str | None = None) -> str | None:
        """The first value of ``name``, or ``default``."""
        name = name.lower()
        for k, v in self._items:
            if k == name:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """Every value of ``name``, in order."""
        name = name.lower()
        return [v for k, v in self._items if k == name]

    def set(self, name: str, value: str) -> None:
        """Replace every value of ``name`` by one value."""
        name = name.lower()
        self._items = [(k, v) for k, v in self._items if k != name]
        self._items.append((name, value))

    def add(self, name: str, value: str) -> None:
        """Append a value, keeping existing ones."""
        self._items.append((name.lower(), value))

    def remove(self, name: str) -> None:
        """Drop every value of ``name``."""
        name = name.lower()
        self._items = [(k, v) for k, v in self._items if k != name]

    def setdefault(self, name: str, value: str) -> str:
        """Return the current value of ``name``, setting it to ``value`` first if absent."""
        current = self.get(name)
        if current is None:
            self._items.append((name.lower(), value))
            return value
        return current

    def __contains__(self, name: object) -> bool:
        if not isinstance(name, str):
            return False
        name = name.lower()
        for k, _ in self._items:
            if k == name:
                return True
        return False

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def items(self) -> list[tuple[str, str]]:
        """A copy of the (name, value) pairs."""
        return list(self._items)

    def copy(self) -> Headers:
        """An independent copy."""
        h = Headers()
        h._items = list(self._items)
        return h

    def to_dict(self) -> dict[str, str]:
        """A plain dict (multiple values joined with ', ')."""
        out: dict[str, str] = {}
        for k, v in self._items:
            out[k] = f"{out[k]}, {v}" if k in out else v
        return out

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


@dataclass(slots=True)
class Request:
    """One HTTP request, body buffered. ``target`` is the request-target as sent: origin-form
    (``/items?x=1``) or absolute-form (``http://cart/items``, used when talking to a proxy)."""

    method: str
    target: str
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    keep_alive: bool = True
    version: str = "1.1"  # the HTTP version the client spoke (an HTTP/1.0 client is answered accordingly)

    @property
    def path(self) -> str:
        """The path and query, whatever form ``target`` has."""
        if self.target.startswith(("http://", "https://")):
            rest = self.target.split("://", 1)[1]
            slash = rest.find("/")
            return rest[slash:] if slash >= 0 else "/"
        return self.target

    @property
    def authority(self) -> str:
        """The destination host[:port]: from an absolute-form target, else the Host header."""
        if self.target.startswith(("http://", "https://")):
            rest = self.target.split("://", 1)[1]
            slash = rest.find("/")
            return rest[:slash] if slash >= 0 else rest
        return self.headers.get("host", "") or ""


@dataclass(slots=True)
class Response:
    """One HTTP response, body buffered."""

    status: int
    headers: Headers = field(default_factory=Headers)
    body: bytes = b""
    keep_alive: bool = True

    @property
    def reason(self) -> str:
        """The standard reason phrase for the status."""
        try:
            return HTTPStatus(self.status).phrase
        except ValueError:
            return "Unknown"


def local_reply(status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    """A response a proxy generates itself (no upstream involved), like Envoy's local replies."""
    body = text.encode()
    h = Headers([("content-type", "text/plain"), *headers])
    return Response(status, h, body)


def _head(first_line: str, headers: Headers, body: bytes, close: bool, length: int | None = None,
          keep_alive_header: bool = False) -> bytearray:
    out = bytearray(first_line.encode("latin-1"))
    for k, v in headers:
        if k in HOP_BY_HOP:
            continue
        out += f"{k}: {v}\r\n".encode("latin-1")
    out += b"content-length: %d\r\n" % (len(body) if length is None else length)
    if close:
        out += b"connection: close\r\n"
    elif keep_alive_header:
        out += b"connection: keep-alive\r\n"
    out += b"\r\n"
    return out


def serialize_request(req: Request, target: str | None = None) -> bytes:
    """Bytes of ``req`` for the wire (Content-Length framing, hop-by-hop headers dropped)."""
    out = _head(f"{req.method} {target or req.target} HTTP/1.1\r\n", req.headers, req.body, not req.keep_alive)
    out += req.body
    return bytes(out)


def serialize_response(resp: Response, close: bool = False, head_only: bool = False,
                       http10: bool = False) -> bytes:
    """Bytes of ``resp`` for the wire. ``head_only`` omits the body (answer to HEAD); the
    Content-Length is then the one a GET would get: the body's, or, for a forwarded answer to
    HEAD (no body), the upstream's own Content-Length. ``http10``: the client spoke HTTP/1.0,
    for which a persistent connection must be announced (``connection: keep-alive``)."""
    length = None
    if head_only and not resp.body:
        declared = resp.headers.get("content-length")
        if declared is not None and declared.strip().isdigit():
            length = int(declared)
    out = _head(f"HTTP/1.1 {resp.status} {resp.reason}\r\n", resp.headers, resp.body, close, length, http10)
    if not head_only:
        out += resp.body
    return bytes(out)


Handler = Callable[[Request, "ServerConnection"], Awaitable[Response]]


class _HeaderTooLarge(Exception):
    pass


class ServerConnection(asyncio.Protocol):
    """The server side of one HTTP/1.1 connection (see the module docstring)."""

    def __init__(self, handler: Handler, listener: Listener) -> None:
        self.handler = handler
        self.listener = listener
        self.transport: asyncio.Transport | None = None
        self.peer: tuple[str, int] | None = None
        self.closed = False
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[Request] = deque()
        self._task: asyncio.Task[None] | None = None
        self._reset_message()

    # -- parser callbacks ---------------------------------------------------------------
    def _reset_message(self) -> None:
        self._url = b""
        self._headers: list[tuple[str, str]] = []
        self._header_bytes = 0
        self._body: list[bytes] = []

    def on_message_begin(self) -> None:
        self._reset_message()

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._header_bytes += len(url)

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        if self._header_bytes > MAX_HEADER_BYTES:
            raise _HeaderTooLarge()
        self._headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_body(self, body: bytes) -> None:
        self._body.append(body)

    def on_message_complete(self) -> None:
        p = self._parser
        req = Request(
            p.get_method().decode("latin-1"),
            self._url.decode("latin-1"),
            Headers.__new__(Headers),
            b"".join(self._body),
            p.should_keep_alive(),
            p.get_http_version(),
        )
        req.headers._items = self._headers
        self._queue.append(req)
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._serve())

    # -- asyncio.Protocol -----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.peer = transport.get_extra_info("peername")
        self.listener.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(400, "protocol upgrade is not supported")
        except httptools.HttpParserError as exc:
            # httptools wraps an exception raised in a callback (our _HeaderTooLarge) in
            # HttpParserCallbackError, so the header count, not the exception type, tells.
            if self._header_bytes > MAX_HEADER_BYTES:
                self._fail(431, "request header fields too large")
            else:
                self._fail(400, f"malformed HTTP request: {exc}")
        else:
            if self._header_bytes > MAX_HEADER_BYTES:  # guards a header split across reads
                self._fail(431, "request header fields too large")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.listener.connections.discard(self)
        if self._task is not None and not self._task.done():
            self._task.cancel()

    # -- serving ---------------------------------------------------------------------------
    def _fail(self, status: int, text: str) -> None:
        """Answer a request we could not parse, then close (we cannot resynchronise).

        The close is delayed, as Envoy's ``delayed_close_timeout``: we half-close (FIN after the
        answer) and discard what the peer still sends until it closes or ``DELAYED_CLOSE_S``
        passes. Closing at once with unread bytes makes the kernel send a reset, and the peer
        would lose the answer (a client sending 200 KB of headers would never see its 431)."""
        self._queue.clear()
        if self._task is not None and not self._task.done():
            self._task.cancel()
        t = self.transport
        if t is not None and not t.is_closing():
            t.write(serialize_response(local_reply(status, text + "\n"), close=True))
            if t.can_write_eof():
                t.write_eof()
                asyncio.get_running_loop().call_later(DELAYED_CLOSE_S, t.close)
            else:  # pragma: no cover - TCP transports can always half-close
                t.close()
        self.closed = True

    async def _serve(self) -> None:
        try:
            while self._queue and not self.closed:
                req = self._queue.popleft()
                try:
                    resp = await self.handler(req, self)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # a bug in a handler must not kill the listener
                    resp = local_reply(500, f"internal error in {self.listener.name}: {exc!r}\n")
                if self.closed or self.transport is None:
                    return
                close = not (req.keep_alive and resp.keep_alive) or self.listener.closing
                self.transport.write(serialize_response(resp, close=close, head_only=req.method == "HEAD",
                                                        http10=req.version == "1.0"))
                if close:
                    self.transport.close()
                    self.closed = True
                    return
        finally:
            self._task = None

    def close(self) -> None:
        """Close the connection now."""
        self.closed = True
        if self.transport is not None:
            self.transport.close()


def bind_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket bound before any server starts (port 0: the OS picks one).

    Binding first means a port clash surfaces as an ordinary ``OSError`` here, never inside a
    server (uvicorn, for one, calls ``sys.exit`` when its own bind fails)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        sock.listen(1024)
        sock.setblocking(False)
    except OSError:
        sock.close()
        raise
    return sock


class Listener:
    """A listening socket plus the handler that answers its requests (Envoy: a listener with an
    HTTP connection manager). ``await start()`` begins serving; ``await close()`` stops accepting
    and closes every open connection."""

    def __init__(self, name: str, handler: Handler, host: str = "127.0.0.1", port: int = 0) -> None:
        self.name = name
        self.handler = handler
        self.sock = bind_socket(host, port)
        self.host, self.port = self.sock.getsockname()[:2]
        self.connections: set[ServerConnection] = set()
        self.closing = False
        self._server: asyncio.AbstractServer | None = None
        #: builds the protocol of each accepted connection (default: a plain ``ServerConnection``;
        #: a sidecar's inbound listener sets one that also speaks mutual TLS)
        self.protocol_factory: Callable[[], asyncio.Protocol] | None = None

    @property
    def address(self) -> str:
        """``host:port`` of the listener."""
        return f"{self.host}:{self.port}"

    async def start(self) -> None:
        """Start accepting connections (idempotent)."""
        if self._server is None:
            loop = asyncio.get_running_loop()
            factory = self.protocol_factory or (lambda: ServerConnection(self.handler, self))
            self._server = await loop.create_server(factory, sock=self.sock)

    async def close(self) -> None:
        """Stop accepting and close every connection (idempotent)."""
        self.closing = True
        if self._server is not None:
            self._server.close()
            self._server = None
        else:
            self.sock.close()
        for conn in list(self.connections):
            conn.close()
        self.connections.clear()
