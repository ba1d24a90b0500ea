"""The traffic generator: open loop (a fixed arrival rate) or closed loop (a fixed number of
clients), for a number of requests or a duration.

Theory of operation
-------------------
*Closed loop* (``concurrency=N``): N clients, each sends a request, waits for the answer, sends
the next. Throughput adapts to the system: a slow service gets fewer requests. This measures
maximum throughput.

*Open loop* (``rate=R``): requests start on a fixed schedule, ``R`` per second, whether or not
earlier ones have finished, as independent users do. A slow service then builds a queue and
latency grows; this is how overload looks in production, and what latency percentiles at a
given rate mean. Latency is measured from each request's *scheduled* start, so a generator that
falls behind does not hide the queueing it causes ("coordinated omission").

``generate()`` is the engine, given a coroutine that sends request *i* and returns
``(status, response_flags, upstream)``. It runs on whatever loop calls it: the mesh's runtime
for ``Mesh.load``, or a separate process for the benchmark.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["Sample", "LoadProgress", "LoadResult", "generate", "plan"]

#: (t_s, latency_ms, status, flags, upstream[, attempts])
Sample = tuple[float, float, int, str, str] | tuple[float, float, int, str, str, int]
SendOne = Callable[[int], Awaitable[tuple[int, str, str]]]


@dataclass
class LoadProgress:
    """Shared counters a caller on another thread may read to draw a progress bar."""

    done: int = 0
    total: int | None = None
    stop: bool = False


def plan(rate: float | None, concurrency: int | None, requests: int | None, duration: float | None) -> None:
    """Validate a load description (raises ValueError naming the problem)."""
    if (rate is None) == (concurrency is None):
        raise ValueError("load: give exactly one of rate= (open loop, requests/s) or concurrency= (closed loop)")
    if requests is None and duration is None:
        raise ValueError("load: give requests= (a count) or duration= (seconds)")
    if rate is not None and rate <= 0:
        raise ValueError("load: rate must be > 0 requests/s")
    if concurrency is not None and concurrency < 1:
        raise ValueError("load: concurrency must be >= 1")
    if requests is not None and requests < 1:
        raise ValueError("load: requests must be >= 1")
    if duration is not None and duration <= 0:
        raise ValueError("load: duration must be > 0 seconds")


async def _timed(send: SendOne, i: int, t0: float, scheduled: float, out: list[Sample]) -> None:
    attempts = 1
    try:
        result = await send(i)
        status, flags, upstream = result[:3]
        if len(result) > 3:
            attempts = result[3]  # type: ignore[misc]
    except asyncio.CancelledError:
        raise
    except Exception:  # the generator's own connection failed: count it, keep going
        status, flags, upstream = 0, "", ""
    end = time.perf_counter()
    out.append((scheduled - t0, (end - scheduled) * 1000.0, status, flags, upstream, attempts))


async def generate(send: SendOne, *, rate: float | None = None, concurrency: int | None = None,
                   requests: int | None = None, duration: float | None = None,
                   progress: LoadProgress | None = None, max_in_flight: int = 20_000) -> tuple[list[Sample], float]:
    """Drive ``send`` as described (see module docstring); returns (samples, elapsed seconds)."""
    plan(rate, concurrency, requests, duration)
    progress = progress or LoadProgress()
    out: list[Sample] = []
    t0 = time.perf_counter()
    deadline = t0 + duration if duration is not None else math.inf
    limit = requests if requests is not None else math.inf
    if requests is not None:
        progress.total = requests
    elif rate is not None and duration is not None:
        progress.total = int(rate * duration)

    if rate is not None:
        interval = 1.0 / rate
        tasks: set[asyncio.Task[None]] = set()
        i = 0
        while i < limit and not progress.stop:
            scheduled = t0 + i * interval
            if scheduled >= deadline:
                break
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            while len(tasks) >= max_in_flight:
                await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            task = asyncio.ensure_future(_timed(send, i, t0, scheduled, out))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            task.add_done_callback(lambda _t: _tick(progress))
            i += 1
        if tasks:
            await asyncio.gather(*tasks)
    else:
        assert concurrency is not None
        counter = iter(range(requests if requests is not None else 1 << 62))

        async def client() -> None:
            for i in counter:
                if progress.stop or time.perf_counter() >= deadline:
                    return
                await _timed(send, i, t0, time.perf_counter(), out)
                progress.done += 1

        await asyncio.gather(*(client() for _ in range(concurrency)))
    return out, time.perf_counter() - t0


def _tick(progress: LoadProgress) -> None:
    progress.done += 1


@dataclass
class LoadResult:
    """What a load run saw. ``df`` has one row per request: t (s since start), service, path,
    status, latency_ms, response_flags, upstream (pod), version and attempts (tries made by the
    client sidecar, retries included)."""

    df: pd.DataFrame
    elapsed_s: float
    rate: float | None = None
    concurrency: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def achieved_rate(self) -> float:
        """Requests completed per second over the run."""
        return len(self.df) / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def success_rate(self) -> float:
        """Share of responses with a status below 500 (and not 0)."""
        if not len(self.df):
            return 0.0
        s = self.df["status"]
        return float(((s > 0) & (s < 500)).mean())

    def percentiles(self, qs: tuple[float, ...] = (50, 90, 99)) -> dict[str, float]:
        """Latency percentiles in ms, e.g. {"p50": 1.2, "p90": 2.0, "p99": 5.1}."""
        lat = self.df["latency_ms"].to_numpy()
        if not len(lat):
            return {f"p{q:g}": float("nan") for q in qs}
        return {f"p{q:g}": float(np.percentile(lat, q)) for q in qs}

    def status_counts(self) -> dict[int, int]:
        """How many responses of each status code."""
        return {int(k): int(v) for k, v in self.df["status"].value_counts().sort_index().items()}

    def summary(self) -> pd.Series:
        """One line of figures: requests, achieved rate, success rate, p50/p90/p99."""
        return pd.Series({"requests": len(self.df), "achieved_rps": round(self.achieved_rate, 1),
                          "success_rate": round(self.success_rate, 4),
                          **{k: round(v, 2) for k, v in self.percentiles().items()}})

    def __repr__(self) -> str:
        p = self.percentiles()
        mode = f"rate={self.rate:g}/s" if self.rate else f"concurrency={self.concurrency}"
        return (f"<LoadResult {mode}: {len(self.df)} requests in {self.elapsed_s:.2f}s "
                f"({self.achieved_rate:.0f}/s), success {self.success_rate:.1%}, "
                f"p50 {p['p50']:.1f} ms, p99 {p['p99']:.1f} ms>")


def samples_frame(samples: list[Sample], service: str, path: str,
                  version_of: Callable[[str], str] | None = None) -> pd.DataFrame:
    """Samples as a DataFrame sorted by start time (``attempts``, the tries the client sidecar
    made, comes last when the samples carry it)."""
    cols = ["t", "latency_ms", "status", "response_flags", "upstream"]
    with_attempts = bool(samples) and len(samples[0]) > 5
    df = pd.DataFrame(samples, columns=[*cols, "attempts"] if with_attempts else cols)
    if with_attempts:
        df = df[[*cols, "attempts"]]
    df.insert(1, "service", service)
    df.insert(2, "path", path)
    df["response_flags"] = df["response_flags"].replace("", "-")
    if version_of is not None:
        df["version"] = [version_of(u) for u in df["upstream"]]
    if with_attempts:
        df["attempts"] = df.pop("attempts")
    df = df.sort_values("t", kind="stable").reset_index(drop=True)
    return df
