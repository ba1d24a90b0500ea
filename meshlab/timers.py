"""Sleeps that last at least as long as asked.

uvloop (libuv) keeps its loop time in whole milliseconds, cached at each loop iteration, so
``asyncio.sleep(0.02)`` can wake a fraction of a millisecond *before* 20 ms have passed on the
wall clock. Where a duration has a meaning a learner reads off a plot or a test checks (an
injected ``fixedDelay``, Envoy's minimum retry back-off, a service's simulated work), meshlab
sleeps with ``sleep_at_least``: it sleeps again for whatever is left, so the wait is never short.
"""

from __future__ import annotations

import asyncio
import time

__all__ = ["sleep_at_least"]


async def sleep_at_least(seconds: float) -> None:
    """Sleep ``seconds`` or a little more (never less), as measured by ``time.perf_counter``."""
    end = time.perf_counter() + seconds
    left = seconds
    while left > 0:
        await asyncio.sleep(left)
        left = end - time.perf_counter()
