"""Outlier detection: DestinationRule ``trafficPolicy.outlierDetection`` (Envoy's passive health
checking), per cluster in each client sidecar.

Theory of operation
-------------------
Each client sidecar watches the answers it gets from each host of a cluster:

* ``consecutive5xxErrors`` (default 5) 5xx answers in a row from one host (connection failures
  and timeouts count as 5xx) -> the host is **ejected**: taken out of load balancing;
* ``consecutiveGatewayErrors`` (off unless set): the same for 502/503/504 in a row (another 5xx,
  such as a 500, breaks the streak, as in Envoy);
* the deprecated ``consecutiveErrors`` is ignored, as Istio has done since 1.7 (istio/istio#24087);
* an ejected host stays out for ``baseEjectionTime`` (default 30 s) **times its ejection
  multiplier**: +1 at every ejection, -1 at every sweep the host spends back in the pool, so a
  host that keeps failing stays out longer each time and one that recovers is forgiven (capped at
  Envoy's ``max_ejection_time``, 300 s or the base time if larger);
* hosts come back at a sweep, every ``interval`` (default 10 s), once their time is up;
* a host is ejected only if the share of ejected hosts, **counting this one**, stays at or below
  ``maxEjectionPercent`` (default 10 %; Istio ignores 0), as Envoy does since 1.28 (runtime
  guard ``check_mep_on_first_eject``, on by default; Istio does not set ``always_eject_one_host``).
  So with the default 10 %, a cluster of fewer than 10 hosts never ejects one. A refused ejection
  counts ``ejections_overflow``;
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

__all__ = ["OutlierConfig", "OutlierDetector", "OutlierEvent", "MAX_EJECTION_TIME_S"]

#: Envoy's default ``max_ejection_time``.
MAX_EJECTION_TIME_S = 300.0


@dataclass(frozen=True)
class OutlierConfig:
    """Outlier detection settings, with Istio's defaults."""

    consecutive_5xx: int | None = 5
    consecutive_gateway: int | None = None
    interval: float = 10.0
    base_ejection_time: float = 30.0
    max_ejection_percent: float = 10.0
    min_health_percent: float = 0.0

    @property
    def max_ejection_time(self) -> float:
        """Envoy's ``max_ejection_time`` (Istio does not set it): 300 s or the base time."""
        return max(MAX_EJECTION_TIME_S, self.base_ejection_time)

    @classmethod
    def from_policy(cls, policy: Any) -> OutlierConfig | None:
        """The settings of an effective trafficPolicy; None when it has no outlierDetection."""
        od = getattr(policy, "outlierDetection", None) if policy is not None else None
        if od is None:
            return None
        # consecutiveErrors (deprecated) is not read: Istio ignores it since 1.7.
        c5 = od.consecutive5xxErrors
        return cls(
            consecutive_5xx=(c5 if c5 is not None else 5) or None,
            consecutive_gateway=od.consecutiveGatewayErrors or None,
            interval=parse_duration(od.interval) if od.interval else 10.0,
            base_ejection_time=parse_duration(od.baseEjectionTime) if od.baseEjectionTime else 30.0,
            # Istio sets Envoy's max_ejection_percent only when > 0 (else Envoy's 10 % applies)
            max_ejection_percent=float(min(od.maxEjectionPercent, 100)) if od.maxEjectionPercent else 10.0,
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
    times_ejected: int  # ejections of this host so far (Envoy's num_ejections)
    ejection_s: float  # how long this ejection lasts (0 for a return)
    reason: str


class _HostState:
    __slots__ = ("c5xx", "cgw", "ejected_until", "times_ejected", "multiplier")

    def __init__(self) -> None:
        self.c5xx = 0
        self.cgw = 0
        self.ejected_until: float | None = None
        self.times_ejected = 0
        self.multiplier = 0  # Envoy's eject-time backoff


class OutlierDetector:
    """Outlier detection for one cluster (see the module docstring)."""

    def __init__(self, config: OutlierConfig, cluster: str, clock: Callable[[], float] = time.monotonic) -> None:
        self.config = config
        self.cluster = cluster
        self.clock = clock
        self.state: dict[str, _HostState] = {}
        self.events: list[OutlierEvent] = []
        self.next_sweep = clock() + config.interval
        self.stats = {"ejections_enforced_total": 0, "ejections_overflow": 0,
                      "ejections_detected_consecutive_5xx": 0, "ejections_enforced_consecutive_5xx": 0,
                      "ejections_detected_consecutive_gateway_failure": 0,
                      "ejections_enforced_consecutive_gateway_failure": 0}

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
        self.sweep()  # sweeps due since the request started come first
        st = self._st(host)
        cfg = self.config
        if status < 500:
            st.c5xx = st.cgw = 0
            return
        st.c5xx += 1
        st.cgw = st.cgw + 1 if status in (502, 503, 504) else 0
        if st.ejected_until is not None:
            return  # already out (Envoy ignores the detection; the counters reset on return)
        kind = ""
        if cfg.consecutive_gateway and st.cgw >= cfg.consecutive_gateway:
            kind, reason = "consecutive_gateway_failure", f"{st.cgw} consecutive gateway errors"
            st.cgw = 0
        elif cfg.consecutive_5xx and st.c5xx >= cfg.consecutive_5xx:
            kind, reason = "consecutive_5xx", f"{st.c5xx} consecutive 5xx"
            st.c5xx = 0
        if kind:  # the streak is consumed whether or not the ejection is allowed, as in Envoy
            self.stats[f"ejections_detected_{kind}"] += 1
            self._eject(host, st, hosts, kind, reason)

    def _eject(self, host: Host, st: _HostState, hosts: Sequence[Host], kind: str, reason: str) -> None:
        total = len(hosts)
        ejected = sum(1 for h in hosts if self.ejected(h))
        if not total or (ejected + 1) * 100.0 / total > self.config.max_ejection_percent:
            self.stats["ejections_overflow"] += 1
            return
        st.times_ejected += 1
        cfg = self.config
        if st.multiplier * cfg.base_ejection_time < cfg.max_ejection_time + cfg.base_ejection_time:
            st.multiplier += 1
        duration = min(cfg.base_ejection_time * st.multiplier, cfg.max_ejection_time)
        now = self.clock()
        st.ejected_until = now + duration
        st.c5xx = st.cgw = 0
        self.stats["ejections_enforced_total"] += 1
        self.stats[f"ejections_enforced_{kind}"] += 1
        self.events.append(OutlierEvent(now, self.cluster, host.endpoint.pod, host.endpoint.address, "eject",
                                        st.times_ejected, duration, reason))

    def sweep(self) -> None:
        """Envoy's interval timer, every ``interval``: return the hosts whose ejection time is
        over; lower the ejection multiplier of the hosts that are in the pool. Runs lazily: the
        sweeps due since the last call are replayed at their own times."""
        now = self.clock()
        interval = self.config.interval
        while self.next_sweep <= now:
            t = self.next_sweep
            self.next_sweep = t + interval
            busy = False
            for addr, st in self.state.items():
                if st.ejected_until is None:
                    if st.multiplier:
                        st.multiplier -= 1
                        busy = True
                elif t >= st.ejected_until:
                    st.ejected_until = None
                    st.c5xx = st.cgw = 0
                    busy = True
                    self.events.append(OutlierEvent(t, self.cluster, _pod_of(addr, self), addr, "return",
                                                    st.times_ejected, 0.0, "ejection time over"))
                else:
                    busy = True
            if not busy and self.next_sweep <= now:  # nothing left to change: skip ahead
                self.next_sweep += (now - self.next_sweep) // interval * interval + interval

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
