"""The runtime: one background thread running one asyncio loop that hosts every server.

Theory of operation
-------------------
A Jupyter kernel runs its own event loop. Servers scheduled on it stall whenever a cell runs
blocking code, and a cell that synchronously waits for one of them deadlocks. So meshlab runs
its own loop on a daemon thread and every server of a mesh (apps, sidecars, gateway, control
plane) lives there. Notebook code talks to it through ``Runtime.run(coro)`` (blocks the caller
until the coroutine finishes on the loop thread) or ``await Runtime.arun(coro)`` (the same from
another event loop, e.g. a cell that uses ``await``).

Lifecycle::

    Runtime()  --start()-->  running  --stop()-->  stopped   (start() again: a fresh thread)

``start()`` is idempotent. ``stop()`` runs the registered closers (each server closes its
sockets and connections), cancels every task still pending, closes the loop and joins the
thread, so nothing is left behind. Every runtime still running at interpreter exit is stopped.

``AppServer`` hosts one ASGI app (a FastAPI service) with uvicorn's HTTP protocol on a socket
meshlab bound itself (127.0.0.1, port 0): uvicorn never binds (its bind failure would call
``sys.exit`` and take the loop thread down) and adds no ``server``/``date`` headers.
"""

from __future__ import annotations

import asyncio
import atexit
import logging
import threading
import weakref
from collections.abc import Awaitable, Callable, Coroutine
from concurrent.futures import Future
from typing import Any, TypeVar

from .proxy.http1 import bind_socket

__all__ = ["Runtime", "AppServer", "RuntimeError_"]

T = TypeVar("T")

try:  # uvloop is faster; plain asyncio works the same
    import uvloop

    _new_loop: Callable[[], asyncio.AbstractEventLoop] = uvloop.new_event_loop
except ImportError:  # pragma: no cover - uvloop is pinned in requirements.txt
    _new_loop = asyncio.new_event_loop


class RuntimeError_(RuntimeError):
    """Misuse of the runtime (calling it from its own thread, or after it stopped)."""


_live: weakref.WeakSet[Runtime] = weakref.WeakSet()


class Runtime:
    """A background event-loop thread (see the module docstring)."""

    def __init__(self, name: str = "meshlab-runtime") -> None:
        self.name = name
        self.loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._closers: list[Callable[[], Awaitable[None]]] = []
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        """Whether the loop thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> Runtime:
        """Start the loop thread (idempotent)."""
        with self._lock:
            if self.running:
                return self
            loop = _new_loop()
            ready = threading.Event()

            def main() -> None:
                asyncio.set_event_loop(loop)
                loop.call_soon(ready.set)
                loop.run_forever()

            self.loop = loop
            self._thread = threading.Thread(target=main, name=self.name, daemon=True)
            self._thread.start()
            ready.wait()
            _live.add(self)
            return self

    def in_loop_thread(self) -> bool:
        """Whether the caller runs on the loop thread."""
        return self._thread is not None and threading.current_thread() is self._thread

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Schedule ``coro`` on the loop; returns a concurrent Future."""
        if not self.running or self.loop is None:
            coro.close()
            raise RuntimeError_("the mesh runtime is not running: call mesh.start() first")
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the loop thread and wait for its result (sync bridge)."""
        if self.in_loop_thread():
            coro.close()
            raise RuntimeError_(
                "a blocking meshlab call was made from inside the mesh (e.g. from an app handler); "
                "use the async variant (await mesh.acall(...)) there instead"
            )
        fut = self.submit(coro)
        try:
            return fut.result(timeout)
        except BaseException:
            fut.cancel()
            raise

    async def arun(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop thread from any other event loop (async bridge)."""
        if self.in_loop_thread():
            return await coro
        return await asyncio.wrap_future(self.submit(coro))

    def add_closer(self, closer: Callable[[], Awaitable[None]]) -> None:
        """Register an async callable run by ``stop()`` (in reverse order of registration)."""
        self._closers.append(closer)

    def stop(self, timeout: float = 10.0) -> None:
        """Close every server, cancel every task, stop the loop, join the thread (idempotent)."""
        with self._lock:
            if not self.running or self.loop is None:
                return
            loop = self.loop
            if self.in_loop_thread():
                raise RuntimeError_("Runtime.stop() cannot be called from the loop thread")

            async def shutdown() -> None:
                closers, self._closers = self._closers[::-1], []
                for closer in closers:
                    try:
                        await asyncio.wait_for(closer(), timeout)
                    except Exception:  # keep closing the rest
                        pass
                me = asyncio.current_task()
                tasks = [t for t in asyncio.all_tasks() if t is not me]
                for t in tasks:
                    t.cancel()
                if tasks:
                    await asyncio.wait(tasks, timeout=timeout)
                await loop.shutdown_asyncgens()

            try:
                asyncio.run_coroutine_threadsafe(shutdown(), loop).result(timeout * 2)
            finally:
                loop.call_soon_threadsafe(loop.stop)
                assert self._thread is not None
                self._thread.join(timeout)
                loop.close()
                self._thread = None
                self.loop = None
                _live.discard(self)


@atexit.register
def _stop_all() -> None:  # pragma: no cover - runs at interpreter exit
    for rt in list(_live):
        try:
            rt.stop(timeout=2.0)
        except Exception:
            pass


class _DropCancelled(logging.Filter):
    """Drop uvicorn's "Exception in ASGI application" records for requests *cancelled* because
    their pod crashed or was removed (``AppServer.close`` cancels them): a crash is what the
    learner is watching, not an application error. Other errors are still logged."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, asyncio.CancelledError)


def _quiet_cancelled_requests() -> None:
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _DropCancelled) for f in logger.filters):
        logger.addFilter(_DropCancelled())


class AppServer:
    """Serve one ASGI app with uvicorn's httptools protocol on a pre-bound socket.

    ``await start()`` begins serving; ``await close()`` stops accepting, closes every
    connection and cancels what is still running; ``address`` is ``host:port``."""

    def __init__(self, app: Any, name: str = "app", keep_alive: float = 5.0) -> None:
        from uvicorn.config import Config
        from uvicorn.server import ServerState

        self.name = name
        self.sock = bind_socket()
        self.host, self.port = self.sock.getsockname()[:2]
        self.config = Config(
            app, lifespan="off", log_config=None, access_log=False, server_header=False,
            date_header=False, http="httptools", timeout_keep_alive=int(keep_alive), log_level="warning",
            proxy_headers=False,
        )
        self.config.load()
        _quiet_cancelled_requests()
        self.state = ServerState()
        self._server: asyncio.AbstractServer | None = None

    @property
    def address(self) -> str:
        """``host:port`` where the app listens."""
        return f"{self.host}:{self.port}"

    @property
    def serving(self) -> bool:
        """Whether the app accepts connections."""
        return self._server is not None

    async def start(self) -> None:
        """Start accepting connections (idempotent). A restarted server binds a new socket."""
        if self._server is not None:
            return
        if self.sock.fileno() < 0:
            self.sock = bind_socket()
            self.host, self.port = self.sock.getsockname()[:2]
        from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

        loop = asyncio.get_running_loop()
        config, state = self.config, self.state
        self._server = await loop.create_server(
            lambda: HttpToolsProtocol(config=config, server_state=state, app_state={}, _loop=loop), sock=self.sock
        )

    async def close(self) -> None:
        """Stop accepting, close connections, cancel in-flight tasks (idempotent)."""
        if self._server is not None:
            self._server.close()
            self._server = None
        else:
            self.sock.close()
        for conn in list(self.state.connections):
            conn.shutdown()
            if conn.transport is not None:
                conn.transport.close()
        for task in list(self.state.tasks):
            task.cancel()
        self.state.connections.clear()
