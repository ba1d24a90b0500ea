"""sleep_at_least never wakes early, on the loop meshlab runs (uvloop: millisecond timers)."""

from __future__ import annotations

import asyncio
import time

import uvloop

from meshlab.timers import sleep_at_least


def test_sleep_at_least_is_never_short_on_uvloop() -> None:
    async def measure() -> list[tuple[float, float]]:
        out = []
        for i in range(60):
            want = 0.0005 + (i % 6) * 0.0013  # 0.5 ms to 7 ms, off the millisecond grid
            t = time.perf_counter()
            await sleep_at_least(want)
            out.append((want, time.perf_counter() - t))
        return out

    for want, took in uvloop.run(measure()):
        assert took >= want


def test_sleep_at_least_zero_and_negative_return_at_once() -> None:
    async def measure() -> float:
        t = time.perf_counter()
        await sleep_at_least(0)
        await sleep_at_least(-1)
        return time.perf_counter() - t

    assert asyncio.run(measure()) < 0.5
