"""The HTTP/1.1 codec and Listener, driven by a raw-socket client (asyncio streams) on 127.0.0.1.

Every test runs on both plain asyncio and uvloop (the mesh runtime uses uvloop)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest
import uvloop

from meshlab.proxy.http1 import (
    MAX_HEADER_BYTES,
    Headers,
    Listener,
    Request,
    Response,
    ServerConnection,
    serialize_request,
    serialize_response,
)

LOOPS = {"asyncio": asyncio.new_event_loop, "uvloop": uvloop.new_event_loop}


@pytest.fixture(params=sorted(LOOPS))
def run(request: pytest.FixtureRequest) -> Callable[[Awaitable[None]], None]:
    """Run a coroutine to completion on a fresh loop of the parametrized kind."""

    def runner(coro: Awaitable[None]) -> None:
        with asyncio.Runner(loop_factory=LOOPS[request.param]) as r:
            r.run(asyncio.wait_for(coro, 10))

    return runner


async def echo(req: Request, conn: ServerConnection) -> Response:
    """Answers with what it saw; ``/slow`` waits a little first (to provoke reordering)."""
    if req.target.startswith("/slow"):
        await asyncio.sleep(0.05)
    if req.target == "/boom":
        raise ValueError("handler bug")
    h = Headers([("x-method", req.method), ("x-target", req.target), ("x-keep-alive", str(req.keep_alive))])
    return Response(200, h, b"body:" + req.body)


async def read_response(reader: asyncio.StreamReader, head: bool = False) -> tuple[int, dict[str, str], bytes]:
    """Read one Content-Length framed response (what our listener always writes)."""
    raw = await reader.readuntil(b"\r\n\r\n")
    lines = raw.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if line:
            k, v = line.split(":", 1)
            headers[k.strip().lower()] = v.strip()
    n = int(headers.get("content-length", "0"))
    body = b"" if head else await reader.readexactly(n)
    return status, headers, body


async def started(handler=echo) -> Listener:  # type: ignore[no-untyped-def]
    lst = Listener("test", handler)
    assert lst.host == "127.0.0.1" and lst.port > 0
    await lst.start()
    return lst


async def connect(lst: Listener) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(lst.host, lst.port)


async def at_eof(reader: asyncio.StreamReader) -> bool:
    """Whether the server closed the connection (EOF with nothing more to read)."""
    return await asyncio.wait_for(reader.read(), 5) == b""


async def simple_get(lst: Listener, target: str = "/ok") -> int:
    r, w = await connect(lst)
    w.write(f"GET {target} HTTP/1.1\r\nhost: t\r\n\r\n".encode())
    status, _, _ = await read_response(r)
    w.close()
    return status


def test_pipelined_requests_answered_in_order(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        lst = await started()
        r, w = await connect(lst)
        # the first request is the slowest: a server answering out of order would send /b first
        w.write(b"GET /slow-a HTTP/1.1\r\nhost: t\r\n\r\n"
                b"GET /b HTTP/1.1\r\nhost: t\r\n\r\n"
                b"POST /c HTTP/1.1\r\nhost: t\r\ncontent-length: 3\r\n\r\nxyz")
        got = [await read_response(r) for _ in range(3)]
        assert [h["x-target"] for _, h, _ in got] == ["/slow-a", "/b", "/c"]
        assert got[2][2] == b"body:xyz"
        w.close()
        await lst.close()

    run(main())


def test_chunked_request_body(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        lst = await started()
        r, w = await connect(lst)
        w.write(b"POST /up HTTP/1.1\r\nhost: t\r\ntransfer-encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await w.drain()
        await asyncio.sleep(0.01)  # the rest in a later segment
        w.write(b"6\r\n world\r\n0\r\n\r\n")
        status, headers, body = await read_response(r)
        assert status == 200 and body == b"body:hello world"
        assert "transfer-encoding" not in headers and headers["content-length"] == str(len(body))
        w.close()
        await lst.close()

    run(main())


def test_content_length_body_split_across_reads(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        lst = await started()
        r, w = await connect(lst)
        payload = b"a" * 5000 + b"b" * 5000
        w.write(b"PUT /x HTTP/1.1\r\nhost: t\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload[:3000])
        await w.drain()
        await asyncio.sleep(0.01)
        w.write(payload[3000:])
        status, headers, body = await read_response(r)
        assert (status, headers["x-method"], body) == (200, "PUT", b"body:" + payload)
        w.close()
        await lst.close()

    run(main())


def test_keep_alive_then_connection_close(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        lst = await started()
        r, w = await connect(lst)
        for i in range(3):  # keep-alive is the default in HTTP/1.1
            w.write(f"GET /{i} HTTP/1.1\r\nhost: t\r\n\r\n".encode())
            status, headers, _ = await read_response(r)
            assert status == 200 and headers["x-target"] == f"/{i}"
            assert "connection" not in headers
        assert len(lst.connections) == 1
        w.write(b"GET /last HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n")
        status, headers, _ = await read_response(r)
        assert status == 200 and headers["connection"] == "close"
        assert await at_eof(r)
        w.close()
        await asyncio.sleep(0.01)
        assert not lst.connections
        await lst.close()

    run(main())


def test_http10_closes_unless_keep_alive(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        lst = await started()
        r, w = await connect(lst)
        w.write(b"GET /old HTTP/1.0\r\n\r\n")
        status, headers, body = await read_response(r)
        assert status == 200 and headers["x-keep-alive"] == "False" and headers["connection"] == "close"
        assert await at_eof(r)
        w.close()

        r, w = await connect(lst)  # HTTP/1.0 asking for keep-alive keeps the connection
        w.write(b"GET /a HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n")
        status, headers, _ = await read_response(r)
        assert status == 200 and headers["x-keep-alive"] == "True"
        assert headers["connection"] == "keep-alive"  # a 1.0 client only keeps it if told so
        w.write(b"GET /b HTTP/1.0\r\n\r\n")
        status, headers, _ = await read_response(r)
        assert headers["x-target"] == "/b" and headers["connection"] == "close"
        assert await at_eof(r)
        w.close()
        await lst.close()

    run(main())


@pytest.mark.parametrize(("split", "kib"), [(False, 66), (True, 66), (False, 256)],
                         ids=["one-write", "many-writes", "far-over-limit"])
def test_header_block_over_64k_gets_431_and_close(run, split: bool, kib: int) -> None:  # type: ignore[no-untyped-def]
    """Far over the limit, the client is still sending when we answer: the 431 must not be lost
    to a connection reset (the listener half-closes and drains before closing)."""

    async def main() -> None:
        lst = await started()
        r_other, w_other = await connect(lst)  # a bystander connection, open before and after
        w_other.write(b"GET /before HTTP/1.1\r\nhost: t\r\n\r\n")
        assert (await read_response(r_other))[0] == 200

        r, w = await connect(lst)
        headers = b"".join(b"x-h%03d: %s\r\n" % (i, b"v" * 1014) for i in range(kib))
        assert len(headers) > MAX_HEADER_BYTES
        raw = b"GET / HTTP/1.1\r\nhost: t\r\n" + headers + b"\r\n"
        if split:
            for i in range(0, len(raw), 4096):
                w.write(raw[i:i + 4096])
                await w.drain()
        else:
            w.write(raw)
        status, h, _ = await read_response(r)
        assert status == 431 and h["connection"] == "close"
        assert await at_eof(r)
        w.close()

        w_other.write(b"GET /after HTTP/1.1\r\nhost: t\r\n\r\n")
        status, h, _ = await read_response(r_other)
        assert status == 200 and h["x-target"] == "/after"
        assert await simple_get(lst) == 200  # and new connections are accepted
        w_other.close()
        await lst.close()

    run(main())


def test_header_block_just_under_limit_is_accepted(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        lst = await started()
        r, w = await connect(lst)
        headers = b"".join(b"x-h%02d: %s\r\n" % (i, b"v" * 1000) for i in range(60))  # ~60 KiB
        w.write(b"GET / HTTP/1.1\r\nhost: t\r\n" + headers + b"\r\n")
        assert (await read_response(r))[0] == 200
        w.close()
        await lst.close()

    run(main())


@pytest.mark.parametrize("garbage", [
    b"THIS IS NOT HTTP\r\n\r\n",
    b"GET / HTTP/1.1\r\nhost: t\r\ncontent-length: abc\r\n\r\n",
    b"GET / HTTP/1.1\r\nbad header line\r\n\r\n",
], ids=["request-line", "content-length", "header-line"])
def test_malformed_request_gets_400_and_close(run, garbage: bytes) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        lst = await started()
        r, w = await connect(lst)
        w.write(garbage)
        status, h, body = await read_response(r)
        assert status == 400 and h["connection"] == "close" and b"malformed" in body
        assert await at_eof(r)
        w.close()
        assert await simple_get(lst) == 200  # the listener keeps serving
        await lst.close()

    run(main())


def test_head_response_has_no_body(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        lst = await started()
        r, w = await connect(lst)
        w.write(b"HEAD /h HTTP/1.1\r\nhost: t\r\n\r\n")
        status, h, _ = await read_response(r, head=True)
        assert status == 200 and h["content-length"] == str(len(b"body:"))  # the length a GET would have
        # no body bytes follow: the next response on the connection starts right away
        w.write(b"GET /next HTTP/1.1\r\nhost: t\r\n\r\n")
        status, h, body = await read_response(r)
        assert status == 200 and h["x-target"] == "/next" and body == b"body:"
        w.close()
        await lst.close()

    run(main())


def test_handler_exception_is_500_and_connection_survives(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        lst = await started()
        r, w = await connect(lst)
        w.write(b"GET /boom HTTP/1.1\r\nhost: t\r\n\r\n")
        status, _, body = await read_response(r)
        assert status == 500 and b"handler bug" in body
        w.write(b"GET /fine HTTP/1.1\r\nhost: t\r\n\r\n")
        assert (await read_response(r))[0] == 200
        w.close()
        await lst.close()

    run(main())


def test_peer_gone_cancels_handler(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        entered, cancelled = asyncio.Event(), asyncio.Event()

        async def slow(req: Request, conn: ServerConnection) -> Response:
            entered.set()
            try:
                await asyncio.sleep(30)
            except asyncio.CancelledError:
                cancelled.set()
                raise
            return Response(200)

        lst = await started(slow)
        _, w = await connect(lst)
        w.write(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        await entered.wait()
        w.close()
        await asyncio.wait_for(cancelled.wait(), 5)
        await lst.close()

    run(main())


def test_close_closes_open_connections(run) -> None:  # type: ignore[no-untyped-def]
    async def main() -> None:
        lst = await started()
        r, w = await connect(lst)
        w.write(b"GET / HTTP/1.1\r\nhost: t\r\n\r\n")
        await read_response(r)
        await lst.close()
        await lst.close()  # idempotent
        assert await at_eof(r)
        assert lst.sock.fileno() == -1
        w.close()
        with pytest.raises(OSError):
            await connect(lst)

    run(main())


def test_serialize_drops_hop_by_hop_and_frames_with_content_length() -> None:
    req = Request("POST", "http://cart/items", Headers([("Host", "cart"), ("Connection", "keep-alive"),
                                                        ("Transfer-Encoding", "chunked"), ("X-A", "1")]), b"abc")
    wire = serialize_request(req, "/items")
    assert wire.startswith(b"POST /items HTTP/1.1\r\n")
    assert b"connection" not in wire and b"transfer-encoding" not in wire
    assert b"content-length: 3\r\n" in wire and wire.endswith(b"\r\n\r\nabc")
    resp = Response(404, Headers({"x-b": "2"}), b"nope")
    assert serialize_response(resp).startswith(b"HTTP/1.1 404 Not Found\r\n")
    assert serialize_response(resp, close=True, head_only=True).endswith(b"connection: close\r\n\r\n")


def test_headers_multimap() -> None:
    h = Headers([("A", "1"), ("b", "2"), ("a", "3")])
    assert h.get("a") == "1" and h.get_all("A") == ["1", "3"] and "B" in h
    assert h.to_dict() == {"a": "1, 3", "b": "2"}
    h.set("a", "x")
    assert h.get_all("a") == ["x"] and len(h) == 2
    assert h.setdefault("c", "y") == "y" and h.setdefault("c", "z") == "y"
    c = h.copy()
    c.remove("b")
    assert "b" in h and "b" not in c
    assert Request("GET", "http://svc:80/p?q=1").authority == "svc:80"
    assert Request("GET", "http://svc").path == "/"
    assert Request("GET", "/p", Headers({"Host": "h"})).authority == "h"
