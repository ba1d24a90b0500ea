"""Outlier detection: DestinationRule ``trafficPolicy.outlierDetection`` (Envoy's passive health
checking), per cluster in each client sidecar.

Theory of operation
-------------------
Each client sidecar watches the answers it gets from each host of a cluster:

* ``consecutive5xxErrors`` (default 5) 5xx answers in a row from one host (connection failures
  and timeouts count as 5xx) -> the host is **ejected**: taken out of load balancing;
* ``consecutiveGatewayErrors`` (off unless set): the same for 502/503/504 only;
* an ejected host stays out for ``baseEjectionTime`` (default 30 s) **times the number of times
  it has been ejected**, so a host that keeps failing stays out longer each time;
* hosts come back at the next sweep, every ``interval`` (default 10 s), after their time is up;
* at most ``maxEjectionPercent`` (default 10 %) of the hosts are ejected at once (but one host
  can always be ejected, as in Envoy);
* when fewer than ``minHealthPercent`` of hosts are healthy, ejection is ignored and traffic
  goes to every host (panic mode; Istio's default is 0 %, i.e. never);
* when every host is ejected, requests fail with 503 UH (no healthy upstream).

Times come from an injectable clock, so tests drive ejections and returns without waiting.
Every ejection and return is recorded as an event with its time.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..config.duration import parse_duration

if TYPE_CHECKING:
    from .cluster import Host

__all__ = ["OutlierConfig", "OutlierDetector", "OutlierEvent"]


@dataclass(frozen=True)
class OutlierConfig:
    """Outlier detection settings, with Istio's defaults."""

    consecutive_5xx: int | None = 5
    consecutive_gateway: int | None = None
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_percent: float = 10.0
    min_health_percent: float = 0.0

    @classmethod
    def from_policy(cls, policy: Any) -> OutlierConfig | None:
        """The settings of an effective trafficPolicy; None when it has no outlierDetection."""
        od = getattr(policy, "outlierDetection", None) if policy is not None else None
        if od is None:
            return None
        c5 = od.consecutive5xxErrors if od.consecutive5xxErrors is not None else od.consecutiveErrors
        return cls(
            consecutive_5xx=(c5 if c5 is not None else 5) or None,
            consecutive_gateway=od.consecutiveGatewayErrors or None,
            interval=parse_duration(od.interval) if od.interval else 10.0,
            base_ejection_time=parse_duration(od.baseEjectionTime) if od.baseEjectionTime else 30.0,
            max_ejection_percent=float(od.maxEjectionPercent) if od.maxEjectionPercent is not None else 10.0,
            min_health_percent=float(od.minHealthPercent) if od.minHealthPercent is not None else 0.0,
        )


@dataclass(frozen=True)
class OutlierEvent:
    """An ejection or a return."""

    t: float  # clock time
    cluster: str
    pod: str
    address: str
    action: str  # "eject" | "return"
    times_ejected: int
    ejection_s: float
    reason: str


class _HostState:
    __slots__ = ("c5xx", "cgw", "ejected_until", "times_ejected")

    def __init__(self) -> None:
        self.c5xx = 0
        self.cgw = 0
        self.ejected_until: float | None = None
        self.times_ejected = 0


class OutlierDetector:
    """Outlier detection for one cluster (see the module docstring)."""

    def __init__(self, config: OutlierConfig, cluster: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.cluster = cluster
        self.clock = clock
        self.state: dict[str, _HostState] = {}
        self.events: list[OutlierEvent] = []
        self.next_sweep = clock() + config.interval
        self.stats = {"ejections_enforced_total": 0, "ejections_overflow": 0}

    def _st(self, host: Host) -> _HostState:
        st = self.state.get(host.endpoint.address)
        if st is None:
            st = self.state[host.endpoint.address] = _HostState()
        return st

    def ejected(self, host: Host) -> bool:
        """Whether ``host`` is ejected now."""
        st = self.state.get(host.endpoint.address)
        return st is not None and st.ejected_until is not None

    def report(self, host: Host, status: int, hosts: Sequence[Host]) -> None:
        """Record one answer (``status``; 503/504 for local connection failures and timeouts)."""
        st = self._st(host)
        cfg = self.config
        if status < 500:
            st.c5xx = st.cgw = 0
            return
        st.c5xx += 1
        if status in (502, 503, 504):
            st.cgw += 1
        reason = ""
        if cfg.consecutive_5xx and st.c5xx >= cfg.consecutive_5xx:
            reason = f"{st.c5xx} consecutive 5xx"
        elif cfg.consecutive_gateway and st.cgw >= cfg.consecutive_gateway:
            reason = f"{st.cgw} consecutive gateway errors"
        if reason and st.ejected_until is None:
            self._eject(host, st, hosts, reason)

    def _eject(self, host: Host, st: _HostState, hosts: Sequence[Host], reason: str) -> None:
        total = len(hosts)
        ejected = sum(1 for h in hosts if self.ejected(h))
        if ejected > 0 and total and ejected * 100.0 / total >= self.config.max_ejection_percent:
            self.stats["ejections_overflow"] += 1
            return
        st.times_ejected += 1
        duration = self.config.base_ejection_time * st.times_ejected
        now = self.clock()
        st.ejected_until = now + duration
        st.c5xx = st.cgw = 0
        self.stats["ejections_enforced_total"] += 1
        self.events.append(OutlierEvent(now, self.cluster, host.endpoint.pod, host.endpoint.address, "eject",
                                        st.times_ejected, duration, reason))

    def sweep(self) -> None:
        """Return hosts whose ejection time is over (runs every ``interval``)."""
        now = self.clock()
        if now < self.next_sweep:
            return
        self.next_sweep = now + self.config.interval
        for addr, st in self.state.items():
            if st.ejected_until is not None and now >= st.ejected_until:
                st.ejected_until = None
                self.events.append(OutlierEvent(now, self.cluster, _pod_of(addr, self), addr, "return",
                                                st.times_ejected, 0.0, "ejection time over"))

    def available(self, hosts: list[Host]) -> list[Host]:
        """The hosts load balancing may use now (all of them in panic mode)."""
        self.sweep()
        ok = [h for h in hosts if not self.ejected(h)]
        if hosts and self.config.min_health_percent and len(ok) * 100.0 / len(hosts) < self.config.min_health_percent:
            return hosts
        return ok

    @property
    def ejected_count(self) -> int:
        """Hosts ejected now."""
        return sum(1 for st in self.state.values() if st.ejected_until is not None)


def _pod_of(addr: str, det: OutlierDetector) -> str:
    for ev in reversed(det.events):
        if ev.address == addr:
            return ev.pod
    return addr
