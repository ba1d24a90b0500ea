"""Start/stop cycles leave nothing behind: no thread, no socket or other file descriptor."""

from __future__ import annotations

import gc
import os
import threading
import time

from fastapi import FastAPI, Request

import meshlab
from meshlab import Mesh


def make_apps() -> tuple[FastAPI, FastAPI]:
    back = FastAPI()

    @back.get("/")
    def items() -> dict[str, list[int]]:  # a sync endpoint: FastAPI runs it in a worker thread
        return {"items": [1, 2, 3]}

    front = FastAPI()

    @front.get("/")
    async def home(request: Request) -> dict[str, object]:
        r = await meshlab.client().get("http://back/", headers=meshlab.propagation_headers(request))
        return {"back": r.json()}

    return back, front


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def cycle(back: FastAPI, front: FastAPI) -> None:
    mesh = Mesh(seed=0).start()
    try:
        mesh.deploy("back", back, replicas=2)
        mesh.deploy("front", front)
        for _ in range(3):
            assert mesh.call("front", "/").json() == {"back": {"items": [1, 2, 3]}}
        assert mesh.load("front", "/", concurrency=2, requests=10, progress=False).status_counts() == {200: 10}
        mesh.kill("back", 1)  # a crashed replica and a pending readiness timer must not leak either
        mesh.call("back", "/")
    finally:
        mesh.stop()


def settled(measure, baseline: int, timeout: float = 5.0) -> int:  # type: ignore[no-untyped-def]
    """``measure()`` once it is back at ``baseline`` (or its value at the timeout): closing is
    synchronous, but a joined thread may take a moment to leave ``threading.enumerate``."""
    deadline = time.monotonic() + timeout
    while True:
        value = measure()
        if value <= baseline or time.monotonic() > deadline:
            return value
        time.sleep(0.05)


def test_twenty_start_stop_cycles_leave_no_thread_or_fd() -> None:
    back, front = make_apps()
    cycle(back, front)  # warm-up: lazy imports, loggers, uvloop internals
    gc.collect()
    gc.disable()  # a socket must be closed by stop(), not by the garbage collector
    try:
        _check_cycles(back, front)
    finally:
        gc.enable()


def _check_cycles(back: FastAPI, front: FastAPI) -> None:
    threads, fds = threading.active_count(), open_fds()
    for _ in range(20):
        cycle(back, front)
    assert settled(threading.active_count, threads) == threads, [t.name for t in threading.enumerate()]
    assert settled(open_fds, fds) == fds, sorted(os.listdir("/proc/self/fd"))
    assert not [t for t in threading.enumerate() if t.name.startswith("meshlab-")]
