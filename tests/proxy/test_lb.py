"""Load balancers and cluster host choice: no sockets, only ``Host`` objects and a seeded rng."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from meshlab.proxy.cluster import Cluster, ClusterConfig, EndpointConfig, Host
from meshlab.proxy.lb import LB_POLICIES, LeastRequest, RandomLB, RoundRobin, make_lb


def endpoint(i: int, healthy: bool = True) -> EndpointConfig:
    return EndpointConfig("127.0.0.1", 10_000 + i, f"svc-v1-{i}", "svc-v1", "svc.default.svc.cluster.local",
                          "default", "v1", (("app", "svc"), ("version", "v1")), healthy)


def hosts(n: int) -> list[Host]:
    return [Host(endpoint(i)) for i in range(n)]


def picks(lb, hs: list[Host], n: int) -> list[str]:  # type: ignore[no-untyped-def]
    return [lb.pick(hs).endpoint.pod for _ in range(n)]


def test_round_robin_is_exact() -> None:
    hs = hosts(3)
    lb = RoundRobin(random.Random(0))
    seq = picks(lb, hs, 300)
    assert seq[:6] == ["svc-v1-0", "svc-v1-1", "svc-v1-2"] * 2
    assert Counter(seq) == {"svc-v1-0": 100, "svc-v1-1": 100, "svc-v1-2": 100}


def test_round_robin_ignores_active_requests_and_rng() -> None:
    hs = hosts(2)
    hs[0].active_rq = 50
    assert picks(RoundRobin(random.Random(1)), hs, 4) == picks(RoundRobin(random.Random(2)), hs, 4)
    assert Counter(picks(RoundRobin(random.Random(1)), hs, 10)) == {"svc-v1-0": 5, "svc-v1-1": 5}


def test_random_is_uniform_within_tolerance() -> None:
    hs = hosts(4)
    counts = Counter(picks(RandomLB(random.Random(0)), hs, 8000))
    assert set(counts) == {h.endpoint.pod for h in hs}
    for c in counts.values():
        assert abs(c - 2000) < 200  # about 4.5 standard deviations


def test_least_request_prefers_fewer_active_requests() -> None:
    hs = hosts(2)
    hs[0].active_rq = 5  # busy
    counts = Counter(picks(LeastRequest(random.Random(0)), hs, 4000))
    # two choices: the busy host only wins when both draws land on it (1 in 4)
    assert abs(counts["svc-v1-0"] - 1000) < 150
    assert abs(counts["svc-v1-1"] - 3000) < 150


def test_least_request_is_power_of_two_choices() -> None:
    """Replays the draws: of the two random hosts, the one with fewer active requests wins
    (ties: the first draw)."""
    hs = hosts(5)
    for i, h in enumerate(hs):
        h.active_rq = [3, 0, 7, 1, 0][i]
    lb, shadow = LeastRequest(random.Random(42)), random.Random(42)
    for _ in range(500):
        a, b = hs[shadow.randrange(5)], hs[shadow.randrange(5)]
        expected = b if b.active_rq < a.active_rq else a
        assert lb.pick(hs) is expected
    # the busiest host is only chosen when it is drawn twice, about 1 in 25
    counts = Counter(picks(LeastRequest(random.Random(7)), hs, 5000))
    assert counts["svc-v1-2"] < 400
    assert counts["svc-v1-1"] + counts["svc-v1-4"] > counts["svc-v1-0"] + counts["svc-v1-3"]


def test_least_request_all_equal_spreads_load() -> None:
    counts = Counter(picks(LeastRequest(random.Random(0)), hosts(3), 3000))
    assert all(abs(c - 1000) < 150 for c in counts.values())


def test_single_host_always_chosen() -> None:
    hs = hosts(1)
    for cls in (RoundRobin, RandomLB, LeastRequest):
        assert set(picks(cls(random.Random(0)), hs, 5)) == {"svc-v1-0"}


@pytest.mark.parametrize("policy", ["ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"])
def test_same_seed_same_choices(policy: str) -> None:
    hs = hosts(4)
    hs[1].active_rq = 2
    a = picks(make_lb(policy, random.Random(123)), hs, 200)
    b = picks(make_lb(policy, random.Random(123)), hs, 200)
    assert a == b
    if policy != "ROUND_ROBIN":
        assert picks(make_lb(policy, random.Random(124)), hs, 200) != a


def test_make_lb_policies_and_errors() -> None:
    assert make_lb("LEAST_REQUEST", random.Random()).name == "LEAST_REQUEST"
    assert isinstance(make_lb("UNSPECIFIED", random.Random()), LeastRequest)  # Istio's default
    assert isinstance(make_lb("LEAST_CONN", random.Random()), LeastRequest)
    assert {"ROUND_ROBIN", "RANDOM", "LEAST_REQUEST"} <= set(LB_POLICIES)
    with pytest.raises(ValueError, match=r"unknown load balancer policy 'FASTEST'.*ROUND_ROBIN"):
        make_lb("FASTEST", random.Random())


def config(eps: tuple[EndpointConfig, ...], policy: str = "ROUND_ROBIN") -> ClusterConfig:
    return ClusterConfig("outbound|80||svc.default.svc.cluster.local", "svc.default.svc.cluster.local", 80, "",
                         eps, policy)


def test_cluster_skips_unhealthy_hosts_and_reports_none() -> None:
    cl = Cluster(config((endpoint(0), endpoint(1, healthy=False), endpoint(2))), random.Random(0))
    chosen = {cl.choose().endpoint.pod for _ in range(10)}  # type: ignore[union-attr]
    assert chosen == {"svc-v1-0", "svc-v1-2"}
    cl.update(config((endpoint(0, healthy=False),)))
    assert cl.choose() is None  # the router turns this into 503 UH
    cl.update(config(()))
    assert cl.choose() is None


def test_cluster_exclude_prefers_other_hosts() -> None:
    cl = Cluster(config((endpoint(0), endpoint(1)), "RANDOM"), random.Random(0))
    assert {cl.choose(exclude={"127.0.0.1:10000"}).endpoint.pod for _ in range(20)} == {"svc-v1-1"}  # type: ignore[union-attr]
    everything = {"127.0.0.1:10000", "127.0.0.1:10001"}
    assert cl.choose(exclude=everything) is not None  # nothing else left: any host will do


def test_cluster_update_keeps_counters_of_remaining_hosts() -> None:
    cl = Cluster(config((endpoint(0), endpoint(1))), random.Random(0))
    cl.hosts["127.0.0.1:10000"].rq_total = 7
    cl.update(config((endpoint(0), endpoint(2)), "LEAST_REQUEST"))
    assert set(cl.hosts) == {"127.0.0.1:10000", "127.0.0.1:10002"}
    assert cl.hosts["127.0.0.1:10000"].rq_total == 7 and cl.hosts["127.0.0.1:10002"].rq_total == 0
    assert isinstance(cl.lb, LeastRequest)
