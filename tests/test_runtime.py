"""The runtime: background loop thread, sync/async bridge, closers, shutdown, AppServer."""

from __future__ import annotations

import asyncio
import threading

import httpx
import pytest

from meshlab.runtime import AppServer, Runtime, RuntimeError_


@pytest.fixture
def rt():  # type: ignore[no-untyped-def]
    r = Runtime("test-runtime").start()
    yield r
    r.stop()


def threads_named(name: str) -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == name]


def test_start_is_idempotent_and_stop_joins_the_thread() -> None:
    rt = Runtime("rt-idem")
    assert not rt.running
    rt.start()
    thread = rt._thread
    assert rt.start() is rt and rt._thread is thread and rt.running
    assert len(threads_named("rt-idem")) == 1
    rt.stop()
    rt.stop()  # idempotent
    assert not rt.running and rt.loop is None and threads_named("rt-idem") == []


def test_restart_gets_a_fresh_thread_and_loop() -> None:
    rt = Runtime("rt-again")
    rt.start()
    loop1 = rt.loop
    rt.stop()
    rt.start()
    try:
        assert rt.loop is not loop1 and loop1.is_closed()  # type: ignore[union-attr]
        assert rt.run(asyncio.sleep(0, "again")) == "again"
    finally:
        rt.stop()


def test_run_returns_result_and_raises_errors(rt: Runtime) -> None:
    async def where() -> str:
        await asyncio.sleep(0)
        return threading.current_thread().name

    assert rt.run(where()) == "test-runtime"

    async def fail() -> None:
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        rt.run(fail())


def test_run_timeout_cancels_the_coroutine(rt: Runtime) -> None:
    cancelled = threading.Event()

    async def forever() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    with pytest.raises(TimeoutError):
        rt.run(forever(), timeout=0.05)
    assert cancelled.wait(5)


def test_blocking_call_from_the_loop_thread_is_refused(rt: Runtime) -> None:
    async def nested() -> str:
        assert rt.in_loop_thread()
        with pytest.raises(RuntimeError_, match="use the async variant"):
            rt.run(asyncio.sleep(0))
        return "refused"

    assert rt.run(nested()) == "refused"
    assert not rt.in_loop_thread()


def test_not_running_is_refused() -> None:
    rt = Runtime("rt-off")
    coro = asyncio.sleep(0)
    with pytest.raises(RuntimeError_, match="not running"):
        rt.run(coro)
    assert coro.cr_frame is None  # closed, so no "never awaited" warning


def test_arun_from_another_event_loop(rt: Runtime) -> None:
    async def on_runtime() -> str:
        return threading.current_thread().name

    async def elsewhere() -> str:
        return await rt.arun(on_runtime())

    assert asyncio.run(elsewhere()) == "test-runtime"


def test_stop_runs_closers_in_reverse_and_cancels_pending_tasks() -> None:
    rt = Runtime("rt-close").start()
    order: list[str] = []
    cancelled = threading.Event()

    def closer(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
        async def close() -> None:
            order.append(name)
            if fail:
                raise OSError("closer failed")

        return close

    async def background() -> None:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            cancelled.set()
            raise

    async def spawn() -> None:
        asyncio.get_running_loop().create_task(background())

    rt.add_closer(closer("first"))
    rt.add_closer(closer("second", fail=True))  # a failing closer does not stop the others
    rt.add_closer(closer("third"))
    rt.run(spawn())
    rt.stop()
    assert order == ["third", "second", "first"]
    assert cancelled.is_set()
    assert threads_named("rt-close") == []


async def asgi_hello(scope, receive, send):  # type: ignore[no-untyped-def]
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/plain")]})
    await send({"type": "http.response.body", "body": f"hello {scope['path']}".encode()})


def test_app_server_serves_closes_and_restarts_on_a_new_socket(rt: Runtime) -> None:
    server = AppServer(asgi_hello, name="hello")
    assert server.host == "127.0.0.1" and server.port > 0 and not server.serving
    rt.run(server.start())
    rt.run(server.start())  # idempotent
    r = httpx.get(f"http://{server.address}/x", trust_env=False)
    assert (r.status_code, r.text) == (200, "hello /x")
    assert "server" not in r.headers and "date" not in r.headers
    rt.run(server.close())
    assert not server.serving
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://{server.address}/x", trust_env=False)
    rt.run(server.start())  # a restarted server binds a new socket
    assert httpx.get(f"http://{server.address}/y", trust_env=False).text == "hello /y"
    rt.run(server.close())
    rt.run(server.close())  # idempotent


def test_app_server_closed_before_start_releases_its_socket(rt: Runtime) -> None:
    server = AppServer(asgi_hello)
    rt.run(server.close())
    assert server.sock.fileno() == -1
