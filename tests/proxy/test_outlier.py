"""Outlier detection (DestinationRule ``trafficPolicy.outlierDetection``), Envoy's rules:
unit tests of ``OutlierDetector`` on a fake clock, then one mesh where a failing replica is
ejected, traffic moves to the healthy ones, and the replica comes back."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from types import SimpleNamespace
from typing import Any

from fastapi import FastAPI, Response

from meshlab import Mesh
from meshlab.config.destination_rule import OutlierDetection
from meshlab.proxy.cluster import Cluster, ClusterConfig, EndpointConfig, Host
from meshlab.proxy.outlier import OutlierConfig, OutlierDetector
from meshlab.workload import current_replica


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def endpoint(i: int) -> EndpointConfig:
    return EndpointConfig("127.0.0.1", 20_000 + i, f"svc-v1-{i}", "svc-v1", "svc.default.svc.cluster.local",
                          "default", "v1", (("app", "svc"), ("version", "v1")))


def hosts(n: int) -> list[Host]:
    return [Host(endpoint(i)) for i in range(n)]


def detector(clock: Clock, **kw: Any) -> OutlierDetector:
    """A detector; without the cap in ``kw`` any number of hosts may be ejected (tests of the cap set it)."""
    kw.setdefault("max_ejection_percent", 100.0)
    return OutlierDetector(OutlierConfig(**kw), "outbound|80||svc.default.svc.cluster.local", clock)


DEFAULT_CAP = OutlierConfig().max_ejection_percent  # Istio's default, 10 %


def fail(det: OutlierDetector, host: Host, hs: list[Host], n: int, status: int = 500) -> None:
    for _ in range(n):
        det.report(host, status, hs)


def ejected(det: OutlierDetector, hs: list[Host]) -> list[str]:
    return [h.endpoint.pod for h in hs if det.ejected(h)]


def from_yaml(**od: Any) -> OutlierConfig | None:
    return OutlierConfig.from_policy(SimpleNamespace(outlierDetection=OutlierDetection(**od)))


# -- configuration ---------------------------------------------------------------------------
def test_istio_defaults() -> None:
    cfg = from_yaml()
    assert cfg == OutlierConfig(consecutive_5xx=5, consecutive_gateway=None, interval=10.0,
                                base_ejection_time=30.0, max_ejection_percent=10.0, min_health_percent=0.0)
    assert OutlierConfig.from_policy(None) is None
    assert OutlierConfig.from_policy(SimpleNamespace(outlierDetection=None)) is None


def test_configured_values() -> None:
    cfg = from_yaml(consecutive5xxErrors=3, consecutiveGatewayErrors=2, interval="0.2s", baseEjectionTime="0.5s",
                    maxEjectionPercent=50, minHealthPercent=30)
    assert cfg == OutlierConfig(3, 2, 0.2, 0.5, 50.0, 30.0)


def test_zero_5xx_errors_disables_that_detection() -> None:
    assert from_yaml(consecutive5xxErrors=0, consecutiveGatewayErrors=2).consecutive_5xx is None  # type: ignore[union-attr]


def test_max_ejection_percent_zero_means_envoy_default() -> None:
    # Istio only sets Envoy's max_ejection_percent when > 0; Envoy's default is 10 %.
    assert from_yaml(maxEjectionPercent=0).max_ejection_percent == 10.0  # type: ignore[union-attr]


def test_deprecated_consecutive_errors_is_ignored() -> None:
    # Istio stopped reading consecutiveErrors in 1.7 (istio/istio#24087): Envoy's default 5 applies.
    cfg = from_yaml(consecutiveErrors=2)
    assert cfg is not None and cfg.consecutive_5xx == 5 and cfg.consecutive_gateway is None


# -- detection -----------------------------------------------------------------------------
def test_five_consecutive_5xx_by_default() -> None:
    clock, hs = Clock(), hosts(2)
    det = detector(clock, max_ejection_percent=100)
    fail(det, hs[0], hs, 4)
    assert ejected(det, hs) == []
    det.report(hs[0], 200, hs)  # a success breaks the streak
    fail(det, hs[0], hs, 4)
    assert ejected(det, hs) == []
    det.report(hs[0], 503, hs)
    assert ejected(det, hs) == ["svc-v1-0"]
    assert det.available(hs) == [hs[1]]
    ev = det.events[-1]
    assert (ev.action, ev.pod, ev.times_ejected, ev.ejection_s) == ("eject", "svc-v1-0", 1, 30.0)
    assert det.stats["ejections_enforced_total"] == 1
    assert det.stats["ejections_enforced_consecutive_5xx"] == 1


def test_4xx_is_not_an_error() -> None:
    clock, hs = Clock(), hosts(2)
    det = detector(clock, consecutive_5xx=2)
    for _ in range(10):
        det.report(hs[0], 404, hs)
    assert ejected(det, hs) == []


def test_consecutive_gateway_errors_count_502_503_504_only() -> None:
    clock, hs = Clock(), hosts(2)
    det = detector(clock, consecutive_5xx=None, consecutive_gateway=3)
    fail(det, hs[0], hs, 10, status=500)  # 500 is not a gateway error
    assert ejected(det, hs) == []
    for status in (502, 503, 504):
        det.report(hs[0], status, hs)
    assert ejected(det, hs) == ["svc-v1-0"]
    assert det.stats["ejections_enforced_consecutive_gateway_failure"] == 1
    assert "gateway" in det.events[-1].reason


def test_a_500_breaks_a_gateway_error_streak() -> None:
    # Envoy resets the gateway-failure counter on any 5xx that is not 502/503/504.
    clock, hs = Clock(), hosts(2)
    det = detector(clock, consecutive_5xx=None, consecutive_gateway=3)
    for status in (503, 503, 500, 503, 503):
        det.report(hs[0], status, hs)
    assert ejected(det, hs) == []
    det.report(hs[0], 503, hs)
    assert ejected(det, hs) == ["svc-v1-0"]


def test_both_detections_when_both_are_set() -> None:
    clock, hs = Clock(), hosts(2)
    det = detector(clock, consecutive_5xx=5, consecutive_gateway=2, max_ejection_percent=100)
    fail(det, hs[0], hs, 5, status=500)
    det.report(hs[1], 503, hs)
    det.report(hs[1], 503, hs)
    assert ejected(det, hs) == ["svc-v1-0", "svc-v1-1"]


# -- ejection time and returns ---------------------------------------------------------------
def test_hosts_return_only_at_interval_sweeps() -> None:
    clock, hs = Clock(), hosts(2)
    det = detector(clock, consecutive_5xx=1, interval=10.0, base_ejection_time=15.0)
    clock.t = 1.0
    det.report(hs[0], 500, hs)  # ejected until 16
    for t in (10.0, 15.9):  # a sweep at 10: too early
        clock.t = t
        assert det.available(hs) == [hs[1]]
    clock.t = 16.5  # time is up, but the next sweep is at 20
    assert det.available(hs) == [hs[1]]
    clock.t = 20.0
    assert det.available(hs) == hs
    ret = det.events[-1]
    assert (ret.action, ret.pod, ret.t) == ("return", "svc-v1-0", 20.0)


def test_second_ejection_lasts_twice_as_long() -> None:
    clock, hs = Clock(), hosts(2)
    det = detector(clock, consecutive_5xx=1, interval=1.0, base_ejection_time=2.0)
    clock.t = 0.5
    det.report(hs[0], 500, hs)
    clock.t = 3.0
    assert det.available(hs) == hs  # back at the sweep at 3 (2.5 + waiting for a sweep)
    clock.t = 3.5
    det.report(hs[0], 500, hs)  # fails again before the next sweep
    assert [(e.action, e.times_ejected, e.ejection_s) for e in det.events] == [
        ("eject", 1, 2.0), ("return", 1, 0.0), ("eject", 2, 4.0)]
    clock.t = 6.0
    assert det.available(hs) == [hs[1]]  # 2 s would be over; 4 s is not
    clock.t = 8.0
    assert det.available(hs) == hs


def test_ejection_multiplier_decreases_while_the_host_stays_healthy() -> None:
    # Envoy lowers the multiplier at each sweep the host spends back in the pool.
    clock, hs = Clock(), hosts(2)
    det = detector(clock, consecutive_5xx=1, interval=1.0, base_ejection_time=2.0)
    clock.t = 0.5
    det.report(hs[0], 500, hs)
    clock.t = 3.0
    det.available(hs)  # returned at 3; multiplier back to 0 at the sweep at 4
    clock.t = 4.5
    det.report(hs[0], 500, hs)
    assert det.events[-1].ejection_s == 2.0
    assert det.events[-1].times_ejected == 2


def test_ejection_time_is_capped_at_max_ejection_time() -> None:
    clock, hs = Clock(), hosts(2)
    det = detector(clock, consecutive_5xx=1, interval=1.0, base_ejection_time=100.0)
    durations = []
    for _ in range(5):
        det.report(hs[0], 500, hs)
        durations.append(det.events[-1].ejection_s)
        clock.t = det.state[hs[0].endpoint.address].ejected_until  # type: ignore[assignment]
        assert det.available(hs) == hs  # back at this sweep, and failing again at once
    assert durations == [100.0, 200.0, 300.0, 300.0, 300.0]


def test_a_host_ejected_is_not_ejected_again_and_returns_with_clean_counters() -> None:
    clock, hs = Clock(), hosts(2)
    det = detector(clock, consecutive_5xx=3, interval=1.0, base_ejection_time=1.0)
    fail(det, hs[0], hs, 3)
    fail(det, hs[0], hs, 5)  # answers of requests already in flight
    assert [e.action for e in det.events] == ["eject"]
    clock.t = 1.0
    assert det.available(hs) == hs
    fail(det, hs[0], hs, 2)
    assert ejected(det, hs) == []  # needs a full new streak of 3


# -- the ejection cap ----------------------------------------------------------------------
def test_max_ejection_percent_default_ten_percent_of_ten_hosts() -> None:
    clock, hs = Clock(), hosts(10)
    det = detector(clock, consecutive_5xx=2, max_ejection_percent=DEFAULT_CAP)
    for h in hs[:3]:
        fail(det, h, hs, 2)
    assert ejected(det, hs) == ["svc-v1-0"]
    assert det.stats["ejections_overflow"] == 2
    assert len(det.available(hs)) == 9


def test_with_fewer_than_ten_hosts_the_default_ten_percent_ejects_nothing() -> None:
    # Envoy 1.28+ (check_mep_on_first_eject) counts the host being ejected: one of nine is 11 %.
    for n in (2, 3, 9):
        clock, hs = Clock(), hosts(n)
        det = detector(clock, consecutive_5xx=2, max_ejection_percent=DEFAULT_CAP)
        fail(det, hs[1], hs, 2)
        fail(det, hs[0], hs, 2)
        assert ejected(det, hs) == []
        assert det.stats["ejections_overflow"] == 2


def test_the_host_being_ejected_counts_against_the_cap() -> None:
    # one of three hosts is 33.3 %: a cap of 33 refuses it, 34 allows it
    for percent, expected in ((33, []), (34, ["svc-v1-0"])):
        clock, hs = Clock(), hosts(3)
        det = detector(clock, consecutive_5xx=1, max_ejection_percent=percent)
        det.report(hs[0], 500, hs)
        assert ejected(det, hs) == expected


def test_overflow_consumes_the_streak() -> None:
    # Envoy resets the counter after a detection even when the cap refused the ejection.
    clock, hs = Clock(), hosts(2)
    det = detector(clock, consecutive_5xx=2, max_ejection_percent=50)
    fail(det, hs[0], hs, 2)  # ejected: one of two is 50 %
    fail(det, hs[1], hs, 3)  # detected after 2, refused; the third failure starts a new streak
    assert ejected(det, hs) == ["svc-v1-0"]
    assert det.stats["ejections_overflow"] == 1


def test_max_ejection_percent_50_of_four_hosts() -> None:
    clock, hs = Clock(), hosts(4)
    det = detector(clock, consecutive_5xx=1, max_ejection_percent=50)
    for h in hs:
        det.report(h, 500, hs)
    assert ejected(det, hs) == ["svc-v1-0", "svc-v1-1"]


def test_min_health_percent_panic_sends_traffic_to_every_host() -> None:
    clock, hs = Clock(), hosts(4)
    det = detector(clock, consecutive_5xx=1, max_ejection_percent=100, min_health_percent=60)
    det.report(hs[0], 500, hs)
    assert det.available(hs) == hs[1:]  # 75 % healthy: no panic
    det.report(hs[1], 500, hs)
    assert det.available(hs) == hs  # 50 % < 60 %: panic, ejections ignored


def test_every_host_ejected_leaves_no_host() -> None:
    clock, hs = Clock(), hosts(2)
    det = detector(clock, consecutive_5xx=1, max_ejection_percent=100)
    for h in hs:
        det.report(h, 500, hs)
    assert det.available(hs) == []


def test_cluster_choose_returns_none_when_every_host_is_ejected() -> None:
    clock = Clock()
    policy = SimpleNamespace(
        outlierDetection=OutlierDetection(consecutive5xxErrors=1, maxEjectionPercent=100), connectionPool=None)
    cfg = ClusterConfig("outbound|80||svc.default.svc.cluster.local", "svc.default.svc.cluster.local", 80, "",
                        (endpoint(0), endpoint(1)), "ROUND_ROBIN", policy=policy)
    cl = Cluster(cfg, random.Random(0), clock)
    for h in list(cl.hosts.values()):
        cl.report(h, 503)
    assert cl.choose() is None


# -- end to end ----------------------------------------------------------------------------
def broken_v2() -> FastAPI:
    """v1 answers 200; v2 answers 500 (a bad release)."""
    app = FastAPI()

    @app.get("/")
    async def root() -> Response:
        rep = current_replica()
        return Response(status_code=500 if rep is not None and rep.version == "v2" else 200)

    return app


OD = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: web}
spec:
  host: web
  trafficPolicy:
    loadBalancer: {simple: ROUND_ROBIN}
    outlierDetection: {consecutive5xxErrors: 3, interval: 0.2s, baseEjectionTime: 0.5s, maxEjectionPercent: 50}
"""


def test_failing_replica_is_ejected_and_returns(mesh: Mesh) -> None:
    app = broken_v2()
    mesh.deploy("web", app, replicas=2, version="v1")
    mesh.deploy("web", app, replicas=1, version="v2")
    mesh.apply(OD)
    first = [mesh.call("web", "/") for _ in range(12)]
    ev = mesh.outlier_events()
    assert list(ev.action) == ["eject"]
    assert (ev.pod[0], ev.reporter[0], ev.times_ejected[0]) == ("web-v2-0", "curl", 1)
    assert ev.reason[0] == "3 consecutive 5xx"
    assert [r.status_code for r in first].count(500) == 3
    # round robin over 3 hosts: v2's third failure is at the 9th call at the latest
    assert {r.headers["x-meshlab-upstream"] for r in first[9:]} <= {"web-v1-0", "web-v1-1"}
    assert Counter(mesh.call("web", "/").status_code for _ in range(10)) == {200: 10}
    stats = mesh.stats(pod="curl", contains="outlier_detection")
    assert stats[stats.stat.str.endswith("ejections_active")].value.tolist() == [1]
    assert stats[stats.stat.str.endswith("ejections_enforced_total")].value.tolist() == [1]
    # 0.5 s later, at a 0.2 s sweep (run when traffic arrives), the replica is back...
    end = time.monotonic() + 5.0
    while "return" not in set(mesh.outlier_events().action):
        assert time.monotonic() < end, "web-v2-0 never returned"
        mesh.call("web", "/")
        time.sleep(0.02)
    ev = mesh.outlier_events()
    assert ev.t[1] - ev.t[0] >= 0.5
    # ...and, still failing, is ejected again
    for _ in range(12):
        mesh.call("web", "/")
    ev = mesh.outlier_events()
    assert list(ev.action[:3]) == ["eject", "return", "eject"]
    assert (ev.pod[2], ev.times_ejected[2]) == ("web-v2-0", 2)
    assert set(mesh.access_log(reporter="destination").pod) == {"web-v1-0", "web-v1-1", "web-v2-0"}


def test_every_replica_ejected_gives_503_uh(mesh: Mesh) -> None:
    app = broken_v2()
    mesh.deploy("web", app, replicas=2, version="v2")
    mesh.apply(OD.replace("maxEjectionPercent: 50", "maxEjectionPercent: 100")
                 .replace("baseEjectionTime: 0.5s", "baseEjectionTime: 30s"))
    statuses = [mesh.call("web", "/") for _ in range(6)]
    assert [r.status_code for r in statuses] == [500] * 6
    r = mesh.call("web", "/")
    assert r.status_code == 503
    assert r.headers["x-meshlab-response-flags"] == "UH"
    assert r.text == "no healthy upstream"
    log = mesh.access_log(reporter="source", last=1).iloc[0]
    assert (log.response_code, log.response_flags) == (503, "UH")


def hangs_on_replica_0() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def root() -> Response:
        rep = current_replica()
        if rep is not None and rep.index == 0:
            await asyncio.sleep(0.3)
        return Response(status_code=200)

    return app


def test_route_timeouts_count_as_errors_for_outlier_detection(mesh: Mesh) -> None:
    mesh.deploy("web", hangs_on_replica_0(), replicas=2)
    mesh.apply(OD.replace("consecutive5xxErrors: 3", "consecutive5xxErrors: 2") + """
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web}
spec:
  hosts: [web]
  http:
  - timeout: 0.05s
    route: [{destination: {host: web}}]
""")
    codes = [mesh.call("web", "/").status_code for _ in range(8)]
    assert codes.count(504) == 2  # then web-v1-0 is out
    ev = mesh.outlier_events()
    assert list(ev.action) == ["eject"] and ev.pod[0] == "web-v1-0"
