"""The upstream keep-alive pool against real sockets on 127.0.0.1 (port 0).

Upstreams are either a meshlab ``Listener`` or a scripted raw server (asyncio streams) that
misbehaves on cue: closes a reused connection without answering, or dies mid-response."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable

import pytest

from meshlab.proxy.http1 import Headers, Listener, Request, Response, ServerConnection
from meshlab.proxy.pool import ConnectFailure, Pool, PoolSet, UpstreamReset
from meshlab.runtime import AppServer


def run(coro: Awaitable[None]) -> None:
    asyncio.run(asyncio.wait_for(coro, 10))


async def hello(req: Request, conn: ServerConnection) -> Response:
    return Response(200, Headers([("x-path", req.target)]), b"hello " + req.body)


def get(path: str = "/", keep_alive: bool = True, method: str = "GET") -> Request:
    return Request(method, path, Headers({"host": "up"}), b"", keep_alive)


async def listener(handler=hello) -> Listener:  # type: ignore[no-untyped-def]
    lst = Listener("upstream", handler)
    await lst.start()
    return lst


Script = Callable[[int, int, bytes], Awaitable[bytes | None]]


class RawServer:
    """A raw HTTP server: ``script(conn_no, request_no_on_conn, request_bytes)`` returns the
    bytes to answer, or None to close the connection without answering."""

    def __init__(self, script: Script) -> None:
        self.script = script
        self.connections = 0
        self.requests: list[tuple[int, int]] = []  # (connection, request) pairs received
        self.server: asyncio.AbstractServer | None = None
        self.port = 0

    async def start(self) -> RawServer:
        self.server = await asyncio.start_server(self._conn, "127.0.0.1", 0)
        self.port = self.server.sockets[0].getsockname()[1]
        return self

    async def _conn(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        c = self.connections
        n = 0
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                n += 1
                self.requests.append((c, n))
                answer = await self.script(c, n, head + body)
                if answer is None:
                    break
                writer.write(answer)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    async def close(self) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()


OK = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"


def test_sequential_requests_reuse_one_connection() -> None:
    async def main() -> None:
        lst = await listener()
        pool = Pool(lst.host, lst.port)
        for i in range(5):
            resp = await pool.send(get(f"/{i}"))
            assert resp.status == 200 and resp.headers.get("x-path") == f"/{i}"
        assert pool.opened == 1 and pool.reused == 4 and pool.active == 1
        assert len(lst.connections) == 1
        pool.close()
        await lst.close()

    run(main())


def test_request_body_and_absolute_target() -> None:
    async def main() -> None:
        lst = await listener()
        pool = Pool(lst.host, lst.port)
        req = Request("POST", "http://svc/items", Headers({"host": "svc"}), b"abc")
        resp = await pool.send(req, "/items")
        assert resp.body == b"hello abc" and resp.headers.get("x-path") == "/items"
        pool.close()
        await lst.close()

    run(main())


def test_idle_connection_closed_by_server_then_fresh_connection() -> None:
    async def main() -> None:
        lst = await listener()
        pool = Pool(lst.host, lst.port)
        assert (await pool.send(get())).status == 200
        for conn in list(lst.connections):  # the server closes the idle keep-alive connection
            conn.close()
        await asyncio.sleep(0.05)
        assert (await pool.send(get())).status == 200
        assert pool.opened == 2
        pool.close()
        await lst.close()

    run(main())


def test_stale_connection_is_retried_once_on_a_fresh_one() -> None:
    """The keep-alive race: the reused connection dies before any response byte."""

    async def script(c: int, n: int, raw: bytes) -> bytes | None:
        return None if n == 2 else OK  # the 2nd request on any connection: closed unanswered

    async def main() -> None:
        srv = await RawServer(script).start()
        pool = Pool("127.0.0.1", srv.port)
        assert (await pool.send(get("/1"))).status == 200
        resp = await pool.send(get("/2"))  # reused -> closed unanswered -> retried on a fresh one
        assert resp.status == 200 and resp.body == b"ok"
        assert pool.opened == 2 and srv.requests == [(1, 1), (1, 2), (2, 1)]
        pool.close()
        await srv.close()

    run(main())


def test_fresh_connection_closed_unanswered_is_not_retried() -> None:
    async def script(c: int, n: int, raw: bytes) -> bytes | None:
        return None

    async def main() -> None:
        srv = await RawServer(script).start()
        pool = Pool("127.0.0.1", srv.port)
        with pytest.raises(UpstreamReset):
            await pool.send(get())
        assert srv.requests == [(1, 1)]
        pool.close()
        await srv.close()

    run(main())


def test_reset_mid_response_raises_upstream_reset_without_retry() -> None:
    class Dying(RawServer):
        """Answers the first request; starts the second answer, then resets the connection."""

        async def _conn(self, reader, writer):  # type: ignore[no-untyped-def]
            self.connections += 1
            for n in (1, 2):
                await reader.readuntil(b"\r\n\r\n")
                self.requests.append((self.connections, n))
                if n == 1:
                    writer.write(OK)
                else:
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 100\r\n\r\nonly-ten!!")
                await writer.drain()
            await asyncio.sleep(0.02)
            writer.transport.abort()  # RST: some response bytes arrived, the rest never will

    async def main() -> None:
        srv = await Dying(None).start()  # type: ignore[arg-type]
        pool = Pool("127.0.0.1", srv.port)
        assert (await pool.send(get())).status == 200
        with pytest.raises(UpstreamReset):
            await pool.send(get())  # on a reused connection, but bytes arrived: not retried
        assert srv.requests == [(1, 1), (1, 2)] and srv.connections == 1
        assert pool.active == 0
        pool.close()
        await srv.close()

    run(main())


def test_connect_failure() -> None:
    async def main() -> None:
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()  # nothing listens there now
        pool = Pool("127.0.0.1", port)
        with pytest.raises(ConnectFailure, match=f"127.0.0.1:{port}"):
            await pool.send(get())
        assert pool.opened == 0 and pool.active == 0

    run(main())


def test_idle_expiry() -> None:
    async def main() -> None:
        lst = await listener()
        pool = Pool(lst.host, lst.port, idle_timeout=0.05)
        await pool.send(get())
        await pool.send(get())
        assert pool.opened == 1
        await asyncio.sleep(0.15)  # longer than idle_timeout: the idle connection is not reused
        await pool.send(get())
        assert pool.opened == 2
        await asyncio.sleep(0.05)
        assert pool.active == 1  # the expired one was closed, not leaked
        pool.close()
        await lst.close()

    run(main())


def test_idle_timeout_is_shorter_than_app_server_keep_alive() -> None:
    """Defence 1 of the keep-alive race: the pool drops idle connections before uvicorn does."""
    server = AppServer(lambda scope, receive, send: None)
    try:
        assert Pool("127.0.0.1", 1).idle_timeout < server.config.timeout_keep_alive
    finally:
        server.sock.close()


def test_max_requests_per_connection() -> None:
    async def main() -> None:
        lst = await listener()
        pool = Pool(lst.host, lst.port, max_requests_per_connection=2)
        for _ in range(5):
            assert (await pool.send(get())).status == 200
        assert pool.opened == 3
        pool.close()
        await lst.close()

    run(main())


def test_connection_close_is_not_reused() -> None:
    async def main() -> None:
        lst = await listener()
        pool = Pool(lst.host, lst.port)
        await pool.send(get(keep_alive=False))
        await pool.send(get())
        assert pool.opened == 2 and pool.reused == 0

        async def closing(req: Request, conn: ServerConnection) -> Response:
            return Response(200, keep_alive=False)

        lst2 = await listener(closing)
        pool2 = Pool(lst2.host, lst2.port)
        await pool2.send(get())
        await pool2.send(get())
        assert pool2.opened == 2
        pool.close()
        pool2.close()
        await lst.close()
        await lst2.close()

    run(main())


def test_connection_management_is_hop_by_hop() -> None:
    """Whether the upstream connection can be reused is the pool's business: a proxy forwarding
    the response must not close its own downstream connection because of it (Envoy neither)."""

    async def closing(req: Request, conn: ServerConnection) -> Response:
        return Response(200, Headers(), b"bye", keep_alive=False)  # the upstream says "connection: close"

    async def main() -> None:
        lst = await listener(closing)
        pool = Pool(lst.host, lst.port)
        resp = await pool.send(get())
        assert resp.status == 200 and resp.keep_alive
        resp = await pool.send(get(method="HEAD"))
        assert resp.keep_alive
        assert pool.opened == 2 and pool.reused == 0  # but that upstream connection was not reused
        pool.close()
        await lst.close()

    run(main())


def test_head_response() -> None:
    async def main() -> None:
        lst = await listener()
        pool = Pool(lst.host, lst.port)
        resp = await pool.send(get(method="HEAD"))
        assert resp.status == 200 and resp.body == b"" and resp.headers.get("content-length") == "6"
        resp = await pool.send(get("/after"))
        assert resp.status == 200 and resp.body == b"hello "
        pool.close()
        await lst.close()

    run(main())


def test_concurrent_requests_open_parallel_connections() -> None:
    async def slow(req: Request, conn: ServerConnection) -> Response:
        await asyncio.sleep(0.05)
        return Response(200)

    async def main() -> None:
        lst = await listener(slow)
        pool = Pool(lst.host, lst.port)
        results = await asyncio.gather(*(pool.send(get()) for _ in range(4)))
        assert [r.status for r in results] == [200] * 4
        assert pool.opened == 4 and len(pool.idle) == 4
        await pool.send(get())
        assert pool.opened == 4  # then they are reused
        pool.close()
        assert pool.active == 0
        await lst.close()

    run(main())


def test_cancelled_request_does_not_return_connection() -> None:
    async def slow(req: Request, conn: ServerConnection) -> Response:
        await asyncio.sleep(5)
        return Response(200)

    async def main() -> None:
        lst = await listener(slow)
        pool = Pool(lst.host, lst.port)
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(pool.send(get()), 0.05)
        await asyncio.sleep(0.02)
        assert pool.active == 0 and not pool.idle
        pool.close()
        await lst.close()

    run(main())


def test_poolset_one_pool_per_endpoint() -> None:
    async def main() -> None:
        a, b = await listener(), await listener()
        ps = PoolSet(idle_timeout=1.0)
        for _ in range(3):
            await ps.send(a.host, a.port, get())
            await ps.send(b.host, b.port, get())
        assert len(ps.pools) == 2 and all(p.opened == 1 for p in ps.pools.values())
        assert ps.get(a.host, a.port).idle_timeout == 1.0
        ps.close()
        assert not ps.pools
        await a.close()
        await b.close()

    run(main())
