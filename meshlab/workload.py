"""A service's work model: how long a request takes, how many run at once, how often one fails.

Theory of operation
-------------------
Every replica of every service runs in one Python thread on a 2-core laptop, so real CPU is not
what should limit a service (it would make every replica slow down together). Instead each
replica gets a *work model*, applied around its app like a middleware:

* ``capacity``: how many requests the replica works on at once (think: worker threads). More
  arrivals wait in a queue of ``queue`` places; when that is full the replica answers ``503``
  at once (overloaded).
* ``latency_ms`` (+ ``jitter_ms``, an exponential tail): the service time of one request,
  spent *while holding* a capacity slot, so a replica's throughput is
  ``capacity / latency``, and adding replicas adds throughput, as on a real cluster.
* ``error_rate``: the share of requests answered ``500`` by the app itself.
* ``footprint_mb``: what one replica would cost (memory a real pod reserves), used by the
  cost plots; it does not change behaviour.

Random draws come from a per-replica ``random.Random`` seeded from the mesh seed, so runs are
reproducible. ``Replica`` also carries the replica's identity; ``current_replica()`` tells app
code (and ``meshlab.client()``) which replica is handling the current request.
"""

from __future__ import annotations

import asyncio
import contextvars
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .timers import sleep_at_least

if TYPE_CHECKING:
    from .mesh import Mesh
    from .proxy.sidecar import Sidecar
    from .runtime import AppServer

__all__ = ["Work", "Replica", "current_replica"]


@dataclass(frozen=True)
class Work:
    """The work model of one replica (see the module docstring). Defaults: no added latency,
    unlimited capacity, no errors."""

    latency_ms: float = 0.0
    jitter_ms: float = 0.0
    capacity: int | None = None
    queue: int | None = None
    error_rate: float = 0.0
    footprint_mb: float = 64.0

    def __post_init__(self) -> None:
        if self.latency_ms < 0 or self.jitter_ms < 0:
            raise ValueError("Work: latency_ms and jitter_ms must be >= 0")
        if self.capacity is not None and self.capacity < 1:
            raise ValueError("Work: capacity must be >= 1 (or None for unlimited)")
        if self.queue is not None and self.queue < 0:
            raise ValueError("Work: queue must be >= 0 (or None for unlimited)")
        if not 0.0 <= self.error_rate <= 1.0:
            raise ValueError("Work: error_rate must be between 0 and 1")

    def service_time(self, rng: random.Random) -> float:
        """One draw of the service time, in seconds."""
        t = self.latency_ms
        if self.jitter_ms:
            t += rng.expovariate(1.0 / self.jitter_ms)
        return t / 1000.0


_current: contextvars.ContextVar[Replica | None] = contextvars.ContextVar("meshlab_replica", default=None)


def current_replica() -> Replica | None:
    """The replica handling the current request, or None outside a mesh request."""
    return _current.get()


async def _plain_response(send: Callable[..., Any], status: int, text: str) -> None:
    body = text.encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"text/plain"), (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class Replica:
    """One replica (a pod): the app with its work model, its sidecar, its identity.

    It is itself the ASGI app uvicorn serves: it applies the work model, then calls the
    service's app with ``current_replica()`` set."""

    def __init__(self, mesh: Mesh, service: str, version: str, index: int, app: Any, work: Work,
                 labels: dict[str, str], namespace: str, rng: random.Random,
                 service_account: str | None = None) -> None:
        self.mesh = mesh
        self.service = service
        self.version = version
        self.index = index
        self.app = app
        self.work = work
        self.labels = labels
        self.namespace = namespace
        self.rng = rng
        #: the Kubernetes service account the pod runs as: its identity in the mesh
        self.service_account = service_account or service
        self.name = f"{service}-{version}-{index}"
        self.workload = f"{service}-{version}"
        self.in_flight = 0
        self.queued = 0
        self.served = 0
        self.rejected = 0
        self.alive = True
        self.ready = True
        self.restarts = 0
        self._slots: asyncio.Semaphore | None = None
        self.sidecar: Sidecar | None = None
        self.server: AppServer | None = None

    def __repr__(self) -> str:
        state = "up" if self.alive else "down"
        return f"<Replica {self.name} {state}>"

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        work = self.work
        slots = None
        if work.capacity is not None:
            if self._slots is None:
                self._slots = asyncio.Semaphore(work.capacity)
            slots = self._slots  # released to the same semaphore even if set_work replaces it
            if slots.locked() and work.queue is not None and self.queued >= work.queue:
                self.rejected += 1
                return await _plain_response(send, 503, f"{self.name}: overloaded (capacity and queue full)\n")
            self.queued += 1
            try:
                await slots.acquire()
            finally:
                self.queued -= 1
        token = _current.set(self)
        self.in_flight += 1
        try:
            delay = work.service_time(self.rng)
            if delay:
                await sleep_at_least(delay)
            if work.error_rate and self.rng.random() < work.error_rate:
                await _plain_response(send, 500, f"{self.name}: internal error (work model error_rate)\n")
            else:
                await self.app(scope, receive, send)
            self.served += 1
        finally:
            self.in_flight -= 1
            _current.reset(token)
            if slots is not None:
                slots.release()

    def set_work(self, work: Work) -> None:
        """Replace the work model (capacity changes apply to requests arriving from now on)."""
        if work.capacity != self.work.capacity:
            self._slots = None
        self.work = work

    def crash(self, restart_after: float | None = None) -> None:
        """Crash this replica (its app stops answering), from app code or a cell.
        With ``restart_after`` (seconds) it restarts by itself, like a pod's container."""
        self.mesh._crash(self, restart_after)
