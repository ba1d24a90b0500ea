"""The traffic generator engine (``generate``) and ``LoadResult``, with a fake ``send``: no mesh."""

from __future__ import annotations

import asyncio

import pandas as pd
import pytest

from meshlab.load import LoadProgress, LoadResult, generate, plan, samples_frame


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(asyncio.wait_for(coro, 20))


class FakeService:
    """Answers request i with (status_of(i), flags, upstream) after ``delay`` seconds; records
    how many requests were in flight at once."""

    def __init__(self, delay: float = 0.0, status_of=lambda i: 200) -> None:  # type: ignore[no-untyped-def]
        self.delay = delay
        self.status_of = status_of
        self.seen: list[int] = []
        self.in_flight = 0
        self.max_in_flight = 0

    async def __call__(self, i: int) -> tuple[int, str, str]:
        self.seen.append(i)
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            status = self.status_of(i)
            return status, "" if status < 500 else "UF", f"pod-{i % 2}"
        finally:
            self.in_flight -= 1


def test_closed_loop_sends_exactly_n_with_bounded_concurrency() -> None:
    svc = FakeService(delay=0.005)
    samples, elapsed = run(generate(svc, concurrency=3, requests=30))
    assert len(samples) == 30 and sorted(svc.seen) == list(range(30))
    assert svc.max_in_flight == 3
    assert elapsed > 0


def test_open_loop_schedule_and_coordinated_omission() -> None:
    """Arrivals do not wait for answers; latency counts from the scheduled start."""
    svc = FakeService(delay=0.1)
    samples, _ = run(generate(svc, rate=100, requests=10))
    assert len(samples) == 10
    starts = sorted(s[0] for s in samples)
    assert starts == pytest.approx([i / 100 for i in range(10)])
    assert svc.max_in_flight > 1  # open loop: the next request does not wait for the previous one
    assert min(s[1] for s in samples) >= 100  # every request took at least the service time


def test_duration_bounds_the_run() -> None:
    svc = FakeService(delay=0.002)
    samples, _ = run(generate(svc, concurrency=2, duration=0.2))
    assert len(samples) > 0 and max(s[0] for s in samples) < 0.2
    samples, _ = run(generate(FakeService(), rate=50, duration=0.2))
    assert len(samples) == 10  # open loop: rate x duration arrivals


def test_send_errors_are_counted_as_status_zero() -> None:
    async def flaky(i: int) -> tuple[int, str, str]:
        if i % 3 == 0:
            raise ConnectionError("generator could not connect")
        return 200, "", "p"

    samples, _ = run(generate(flaky, concurrency=2, requests=9))
    statuses = sorted(s[2] for s in samples)
    assert statuses == [0, 0, 0] + [200] * 6


def test_progress_counts_and_stops_early() -> None:
    prog = LoadProgress()
    run(generate(FakeService(), concurrency=2, requests=20, progress=prog))
    assert (prog.done, prog.total) == (20, 20)

    prog = LoadProgress()

    async def stop_after_five(i: int) -> tuple[int, str, str]:
        if i == 4:
            prog.stop = True
        return 200, "", ""

    samples, _ = run(generate(stop_after_five, concurrency=1, requests=1000, progress=prog))
    assert len(samples) == 5


@pytest.mark.parametrize(("kw", "message"), [
    ({"requests": 5}, "exactly one of rate="),
    ({"rate": 10, "concurrency": 2, "requests": 5}, "exactly one of rate="),
    ({"rate": 10}, "give requests="),
    ({"rate": 0, "requests": 5}, "rate must be > 0"),
    ({"concurrency": 0, "requests": 5}, "concurrency must be >= 1"),
    ({"concurrency": 1, "requests": 0}, "requests must be >= 1"),
    ({"concurrency": 1, "duration": -1}, "duration must be > 0"),
])
def test_plan_rejects_bad_descriptions(kw: dict[str, float], message: str) -> None:
    args = {"rate": None, "concurrency": None, "requests": None, "duration": None, **kw}
    with pytest.raises(ValueError, match=message):
        plan(**args)  # type: ignore[arg-type]


def test_samples_frame_and_load_result() -> None:
    samples = [(0.2, 5.0, 503, "UF", "c-v2-0"), (0.0, 1.0, 200, "", "c-v1-0"), (0.1, 3.0, 200, "", "c-v1-1"),
               (0.3, 7.0, 0, "", "")]
    versions = {"c-v1-0": "v1", "c-v1-1": "v1", "c-v2-0": "v2"}
    df = samples_frame(samples, "c", "/x", lambda pod: versions.get(pod, ""))
    assert df.columns.tolist() == ["t", "service", "path", "latency_ms", "status", "response_flags", "upstream",
                                   "version"]
    assert df["t"].tolist() == [0.0, 0.1, 0.2, 0.3]
    assert df["response_flags"].tolist() == ["-", "-", "UF", "-"]
    assert df["version"].tolist() == ["v1", "v1", "v2", ""]
    res = LoadResult(df, elapsed_s=2.0, concurrency=2)
    assert res.achieved_rate == 2.0
    assert res.success_rate == 0.5  # 503 and 0 (no answer) are failures
    assert res.status_counts() == {0: 1, 200: 2, 503: 1}
    assert res.percentiles((50,)) == {"p50": 4.0}
    assert res.summary()["requests"] == 4
    assert "concurrency=2: 4 requests" in repr(res)
    empty = LoadResult(pd.DataFrame(columns=df.columns), elapsed_s=0.0, rate=5)
    assert empty.achieved_rate == 0.0 and empty.success_rate == 0.0
    assert "rate=5/s" in repr(empty)
