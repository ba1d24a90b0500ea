"""A horizontal autoscaler for one service of a mesh, after Kubernetes' HorizontalPodAutoscaler.

Theory of operation
-------------------
Kubernetes' HPA controller wakes up every sync period (15 s), reads a metric averaged over the
pods of a Deployment and compares it with the target the HPA asks for::

    desired = ceil(current_replicas * current_value / target_value)

If the ratio ``current_value / target_value`` is within the *tolerance* of 1 (10 %), nothing
changes, so small wobbles do not resize the Deployment. Then ``behavior`` smooths the answer:

* scale **down** is *stabilised*: the controller remembers every recommendation of the last
  ``stabilizationWindowSeconds`` (300 s by default) and never goes below the highest of them,
  so a short lull does not remove pods that the next burst needs;
* scale **up** is immediate (window 0 s) but rate-limited: at most +100 % or +4 pods per
  period, whichever is more (the default ``scaleUp`` policies);
* the result is clamped to ``[minReplicas, maxReplicas]``.

Here the metric is one of the two a learner can reason about without a CPU meter:

* ``"utilization"``: busy workers / workers per pod, like CPU utilisation against the pod's
  request. A worker counts as busy when it runs a request or a request is queued for it
  (``min(in_flight + queued, capacity) / capacity``): at one instant a saturated pod may have
  just freed a worker its next queued request has not taken yet, as a busy CPU has a run
  queue. It cannot exceed 100 %, so an overloaded service grows by at most ``1 / target`` per
  period;
* ``"in_flight"``: requests in flight plus queued per pod, like a ``Pods`` custom metric
  (KEDA, Knative's concurrency); it keeps growing with the queue, so it reacts faster.

A background thread samples the metric every ``sample_every`` seconds on the mesh loop (so one
sample sees a consistent state), averages the samples of each period and runs ``Recommender``
once per period; ``mesh.scale`` applies the decision. Every period leaves a ``Decision`` row,
which ``history()`` returns for plotting.

Timings are scaled down like every delay in the guide: the default period is 0.25 s (HPA:
15 s) and the scale-down window 2 s (HPA: 300 s).

The decision logic (``Recommender``) has no thread, clock or mesh in it: tests feed it metric
values and times directly.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from .mesh import Mesh

__all__ = ["Decision", "HorizontalAutoscaler", "METRICS", "Recommender", "average_replicas", "proposal"]

METRICS = ("utilization", "in_flight")


def proposal(current: int, value: float, target: float, tolerance: float = 0.1) -> int:
    """HPA's formula: ``ceil(current * value / target)``, or ``current`` within the tolerance."""
    if current <= 0:
        return 1 if value > 0 else 0
    ratio = value / target
    if abs(ratio - 1.0) <= tolerance:
        return current
    return max(0, math.ceil(current * ratio - 1e-9))


def average_replicas(history: pd.DataFrame, start: float, end: float) -> float:
    """The time-weighted mean replica count over ``[start, end]`` from a ``history()`` frame
    (each decision's ``replicas`` holds from its ``t`` to the next decision)."""
    if end <= start:
        raise ValueError("average_replicas: end must be after start")
    t = history["t"].to_numpy(dtype=float)
    n = history["replicas"].to_numpy(dtype=float)
    total = 0.0
    for i in range(len(t)):
        seg_start = max(t[i], start)
        seg_end = min(t[i + 1] if i + 1 < len(t) else end, end)
        if seg_end > seg_start:
            total += n[i] * (seg_end - seg_start)
    before = t[0] - start if len(t) and t[0] > start else 0.0
    if before:  # before the first decision: the count the first decision started from
        total += float(history["current"].iloc[0]) * min(before, end - start)
    return total / (end - start)


@dataclass(frozen=True)
class Decision:
    """One period of the autoscaler: what it saw and what it decided."""

    t: float  # seconds since the autoscaler started
    service: str
    metric: str
    value: float  # the metric averaged over pods and over the period
    target: float
    current: int  # replicas before the decision
    proposed: int  # the formula's answer
    desired: int  # after stabilisation, rate limits and min/max
    reason: str


class Recommender:
    """The HPA decision logic for one service (see the module docstring)."""

    def __init__(self, target: float, min_replicas: int = 1, max_replicas: int = 10, tolerance: float = 0.1,
                 scale_down_window: float = 2.0, scale_up_window: float = 0.0,
                 max_scale_up_pods: int = 4, max_scale_up_percent: float = 100.0) -> None:
        if target <= 0:
            raise ValueError("autoscaler: target must be > 0")
        if not 1 <= min_replicas <= max_replicas:
            raise ValueError("autoscaler: need 1 <= min_replicas <= max_replicas")
        self.target = target
        self.min_replicas = min_replicas
        self.max_replicas = max_replicas
        self.tolerance = tolerance
        self.scale_down_window = scale_down_window
        self.scale_up_window = scale_up_window
        self.max_scale_up_pods = max_scale_up_pods
        self.max_scale_up_percent = max_scale_up_percent
        self._recommendations: deque[tuple[float, int]] = deque()

    def decide(self, now: float, current: int, value: float | None) -> tuple[int, int, str]:
        """(proposed, desired, reason) for ``current`` replicas seeing ``value`` at time ``now``."""
        if value is None or math.isnan(value):
            return current, self._clamp(current), "no metrics: keep the replica count"
        proposed = proposal(current, value, self.target, self.tolerance)
        self._recommendations.append((now, proposed))
        horizon = now - max(self.scale_down_window, self.scale_up_window)
        while self._recommendations and self._recommendations[0][0] < horizon:
            self._recommendations.popleft()
        up = min(r for t, r in self._recommendations if t >= now - self.scale_up_window)
        down = max(r for t, r in self._recommendations if t >= now - self.scale_down_window)
        if up > current:
            limit = max(current + self.max_scale_up_pods, math.ceil(current * (1 + self.max_scale_up_percent / 100)))
            desired = min(up, limit)
            reason = "above target: scale up" if desired == up else "above target: scale up (rate limited)"
        elif down < current:
            desired = down
            reason = ("below target: scale down" if down == proposed
                      else "below target: scale down (held by stabilisation window)")
        else:
            desired = current
            if proposed < current:
                reason = "below target: held by stabilisation window"
            elif proposed == current:
                reason = "within tolerance"
            else:
                reason = "above target: held by stabilisation window"
        clamped = self._clamp(desired)
        if clamped != desired:
            bound = "max" if clamped < desired else "min"
            if clamped == current:
                reason = f"{'above' if bound == 'max' else 'below'} target: already at {bound} replicas"
            else:
                reason += f" (limited by {bound} replicas)"
        return proposed, clamped, reason

    def _clamp(self, n: int) -> int:
        return max(self.min_replicas, min(self.max_replicas, n))


class HorizontalAutoscaler:
    """Scale one service of ``mesh`` on ``metric`` towards ``target`` while load runs.

    ``metric="utilization"`` with ``target=0.6`` is an HPA on CPU at 60 %; ``metric="in_flight"``
    with ``target=2`` keeps about two requests in flight per pod. Use it as a context manager
    or with ``start()`` / ``stop()``; ``history()`` returns the decisions.

    For tests, ``source()`` may replace the mesh as the metric source (returning
    ``(replicas, value)``), ``scaler(n)`` the call that resizes, and ``clock`` the time source.
    """

    def __init__(self, mesh: Mesh | None, service: str, *, metric: str = "utilization", target: float = 0.6,
                 min_replicas: int = 1, max_replicas: int = 10, period: float = 0.25, sample_every: float = 0.05,
                 scale_down_window: float = 2.0, tolerance: float = 0.1, version: str | None = None,
                 source: Callable[[], tuple[int, float | None]] | None = None,
                 scaler: Callable[[int], None] | None = None, clock: Callable[[], float] = time.perf_counter) -> None:
        if metric not in METRICS:
            raise ValueError(f"autoscaler: metric is one of {METRICS}, not {metric!r}")
        if mesh is None and (source is None or scaler is None):
            raise ValueError("autoscaler: give a mesh, or both source= and scaler=")
        if period <= 0 or sample_every <= 0:
            raise ValueError("autoscaler: period and sample_every must be > 0")
        self.mesh = mesh
        self.service = service
        self.metric = metric
        self.version = version
        self.period = period
        self.sample_every = min(sample_every, period)
        self.recommender = Recommender(target, min_replicas, max_replicas, tolerance, scale_down_window)
        self.source = source or self._sample_mesh
        self.scaler = scaler or self._scale_mesh
        self.clock = clock
        self.decisions: list[Decision] = []
        self.t0 = float("nan")
        self._samples: list[float] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.error: BaseException | None = None

    @property
    def target(self) -> float:
        """The target value of the metric."""
        return self.recommender.target

    # -- metric and scaling through the mesh -----------------------------------------------------
    def _sample_mesh(self) -> tuple[int, float | None]:
        """(replicas, metric averaged over ready pods) read on the mesh loop."""
        assert self.mesh is not None
        mesh, service, version, metric = self.mesh, self.service, self.version, self.metric

        async def read() -> tuple[int, float | None]:
            pods = mesh.replicas(service, version)
            ready = [r for r in pods if r.ready and r.alive]
            if not ready:
                return len(pods), None
            if metric == "utilization":
                values = [min(r.in_flight + r.queued, r.work.capacity or 1) / (r.work.capacity or 1) for r in ready]
            else:
                values = [float(r.in_flight + r.queued) for r in ready]
            return len(pods), sum(values) / len(values)

        return mesh.runtime.run(read(), timeout=5.0)

    def _scale_mesh(self, replicas: int) -> None:
        assert self.mesh is not None
        self.mesh.scale(self.service, replicas, version=self.version)

    # -- the control loop --------------------------------------------------------------------------
    def sample(self) -> None:
        """Take one sample of the metric (the thread does this every ``sample_every`` s)."""
        _, value = self.source()
        if value is not None:
            self._samples.append(value)

    def step(self, now: float | None = None) -> Decision:
        """One period: average the samples taken since the last step, decide, scale."""
        now = self.clock() if now is None else now
        if math.isnan(self.t0):
            self.t0 = now
        current, latest = self.source()
        samples, self._samples = self._samples, []
        value = sum(samples) / len(samples) if samples else latest
        proposed, desired, reason = self.recommender.decide(now, current, value)
        if desired != current:
            self.scaler(desired)
        decision = Decision(now - self.t0, self.service, self.metric, float("nan") if value is None else value,
                            self.target, current, proposed, desired, reason)
        self.decisions.append(decision)
        return decision

    def _loop(self) -> None:
        next_step = self.clock() + self.period
        try:
            while not self._stop.is_set():
                self.sample()
                if self.clock() >= next_step:
                    self.step()
                    next_step += self.period
                self._stop.wait(self.sample_every)
        except BaseException as exc:  # the mesh stopped under us: keep the error, end quietly
            self.error = exc

    def start(self) -> HorizontalAutoscaler:
        """Start the control loop on a background thread (idempotent)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._stop.clear()
        self.t0 = self.clock()
        self.step(self.t0)
        self._thread = threading.Thread(target=self._loop, name=f"hpa-{self.service}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop the control loop (idempotent); the replica count stays where it is."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def __enter__(self) -> HorizontalAutoscaler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def history(self, origin: float | None = None) -> pd.DataFrame:
        """The decisions as a DataFrame; ``t`` is seconds since the autoscaler started, or since
        ``origin`` (a ``time.perf_counter()`` value, e.g. a load run's start) when given.
        Columns: t, service, metric, value, target, current, proposed, desired, reason, replicas
        (the replica count after the decision)."""
        cols = [f for f in Decision.__dataclass_fields__]
        df = pd.DataFrame([asdict(d) for d in self.decisions], columns=cols)
        if origin is not None and len(df):
            df["t"] = df["t"] + (self.t0 - origin)
        df["replicas"] = df["desired"]
        return df

    def __repr__(self) -> str:
        state = "running" if self._thread is not None and self._thread.is_alive() else "stopped"
        return (f"<HorizontalAutoscaler {self.service}: {self.metric} target {self.target:g}, "
                f"replicas {self.recommender.min_replicas}-{self.recommender.max_replicas}, {state}>")
