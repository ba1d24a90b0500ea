"""Consistent hashing: the ring itself (``meshlab.proxy.lb.RingHash`` on fake hosts, no sockets)
and DestinationRule ``consistentHash`` end to end (header, cookie with ttl, source IP, query
parameter): the same key always lands on the same replica."""

from __future__ import annotations

import random
from collections import Counter
from types import SimpleNamespace

import pytest
from fastapi import FastAPI

import meshlab
from meshlab import Mesh
from meshlab.proxy.lb import RingHash, make_lb

KEYS = [f"user-{i}" for i in range(2000)]


def fake_hosts(n: int, start: int = 0) -> list[SimpleNamespace]:
    """Objects with just what a balancer reads: ``endpoint.address`` (and ``active_rq``)."""
    return [SimpleNamespace(endpoint=SimpleNamespace(address=f"10.0.0.{i}:15006", pod=f"pod-{i}"), active_rq=0)
            for i in range(start, start + n)]


def assignment(ring: RingHash, hosts: list[SimpleNamespace], keys: list[str] = KEYS) -> dict[str, str]:
    return {k: ring.pick(hosts, k).endpoint.address for k in keys}  # type: ignore[arg-type]


# -- the ring ---------------------------------------------------------------------------------

def test_same_key_same_host_and_independent_of_rng() -> None:
    hosts = fake_hosts(5)
    a = assignment(RingHash(random.Random(1)), hosts)
    b = assignment(RingHash(random.Random(2)), hosts)
    assert a == b
    again = RingHash(random.Random(3))
    assert all(again.pick(hosts, k).endpoint.address == a[k] for k in KEYS[:50])  # type: ignore[arg-type]


def test_keys_spread_over_all_hosts() -> None:
    hosts = fake_hosts(4)
    counts = Counter(assignment(RingHash(random.Random(0)), hosts).values())
    assert len(counts) == 4
    for c in counts.values():
        assert 0.15 * len(KEYS) <= c <= 0.35 * len(KEYS)  # 128 points per host: shares near 1/4


def test_host_order_does_not_matter() -> None:
    hosts = fake_hosts(5)
    shuffled = hosts[:]
    random.Random(4).shuffle(shuffled)
    assert assignment(RingHash(random.Random(0)), hosts) == assignment(RingHash(random.Random(0)), shuffled)


@pytest.mark.parametrize("n", [3, 4, 9])
def test_adding_one_host_moves_about_one_in_n_plus_one(n: int) -> None:
    hosts = fake_hosts(n)
    bigger = hosts + fake_hosts(1, start=n)
    ring = RingHash(random.Random(0))
    before = assignment(ring, hosts)
    after = assignment(ring, bigger)  # the same balancer rebuilds its ring for the new host set
    moved = [k for k in KEYS if before[k] != after[k]]
    new_addr = bigger[-1].endpoint.address
    assert all(after[k] == new_addr for k in moved)  # keys only move to the new host
    expected = 1 / (n + 1)
    assert abs(len(moved) / len(KEYS) - expected) <= 0.4 * expected


def test_removing_a_host_only_moves_its_keys() -> None:
    hosts = fake_hosts(5)
    ring = RingHash(random.Random(0))
    before = assignment(ring, hosts)
    gone = hosts[2].endpoint.address
    after = assignment(ring, [h for h in hosts if h.endpoint.address != gone])
    for k in KEYS:
        if before[k] != gone:
            assert after[k] == before[k]
        else:
            assert after[k] != gone


def test_no_key_means_a_seeded_random_host() -> None:
    hosts = fake_hosts(4)

    def seq(seed: int) -> list[str]:
        ring = RingHash(random.Random(seed))
        return [ring.pick(hosts).endpoint.address for _ in range(200)]  # type: ignore[arg-type]

    assert seq(9) == seq(9)
    assert len(set(seq(9))) == 4


def test_hash_is_stable_across_processes() -> None:
    """blake2b, not Python's salted hash(): the ring is the same in every run and process."""
    assert RingHash.hash("user-1") == 0x9aac5a8621eae188
    assert 0 <= RingHash.hash("x") < 2**64


def test_maglev_and_ring_hash_policies_build_a_ring() -> None:
    assert isinstance(make_lb("RING_HASH", random.Random(0)), RingHash)
    assert isinstance(make_lb("MAGLEV", random.Random(0)), RingHash)


# -- consistentHash in a DestinationRule --------------------------------------------------------

def whoami() -> FastAPI:
    app = FastAPI()

    @app.get("/{path:path}")
    async def me(path: str) -> dict[str, str | None]:
        r = meshlab.current_replica()
        return {"pod": r.name if r else None}

    return app


def relay() -> FastAPI:
    """A caller: calls ``backend`` from its own sidecar (its own source address/identity)."""
    app = FastAPI()

    @app.get("/")
    async def go() -> dict[str, str | None]:
        r = await meshlab.client().get("http://backend/")
        me = meshlab.current_replica()
        return {"caller": me.name if me else None, "backend": r.headers.get("x-meshlab-upstream")}

    return app


def hashed(mesh: Mesh, consistent_hash: str, replicas: int = 4) -> Mesh:
    mesh.deploy("backend", whoami(), replicas=replicas)
    mesh.apply(f"""
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: backend}}
spec:
  host: backend
  trafficPolicy:
    loadBalancer:
      consistentHash: {consistent_hash}
""")
    return mesh


def upstream(mesh: Mesh, path: str = "/", **kw) -> str:  # type: ignore[no-untyped-def]
    r = mesh.call("backend", path, **kw)
    assert r.status_code == 200
    return r.headers["x-meshlab-upstream"]


def test_consistent_hash_on_header(mesh: Mesh) -> None:
    hashed(mesh, "{httpHeaderName: x-user}")
    lb = mesh.proxy_config("curl", "clusters").set_index("service").loc["backend.default.svc.cluster.local", "lb"]
    assert lb == "RING_HASH on header"
    users = [f"u{i}" for i in range(12)]
    first = {u: upstream(mesh, headers={"x-user": u}) for u in users}
    for _ in range(3):
        assert {u: upstream(mesh, headers={"X-User": u}) for u in users} == first
    assert len(set(first.values())) > 1  # different keys use different replicas


def test_consistent_hash_on_query_parameter(mesh: Mesh) -> None:
    hashed(mesh, "{httpQueryParameterName: session}")
    first = {s: upstream(mesh, f"/p?session={s}") for s in "abcdefgh"}
    assert {s: upstream(mesh, f"/q?x=1&session={s}") for s in "abcdefgh"} == first
    assert len(set(first.values())) > 1


def test_consistent_hash_on_cookie_with_ttl_issues_and_honours_it(mesh: Mesh) -> None:
    hashed(mesh, "{httpCookie: {name: session, ttl: 60s}}")
    r = mesh.call("backend", "/")
    cookie = r.headers["set-cookie"]
    assert cookie.startswith("session=") and "Max-Age=60" in cookie
    value = cookie.split(";")[0].split("=", 1)[1]
    pod = r.headers["x-meshlab-upstream"]
    for _ in range(8):
        r = mesh.call("backend", "/", headers={"cookie": f"other=1; session={value}"})
        assert r.headers["x-meshlab-upstream"] == pod
        assert "set-cookie" not in r.headers  # the client already has it
    # every new client gets its own cookie and sticks to its own replica
    sessions = {}
    for _ in range(10):
        r = mesh.call("backend", "/")
        sessions[r.headers["set-cookie"].split(";")[0]] = r.headers["x-meshlab-upstream"]
    assert len(sessions) == 10
    for c, p in sessions.items():
        assert upstream(mesh, headers={"cookie": c}) == p


def test_cookie_without_ttl_is_not_issued(mesh: Mesh) -> None:
    hashed(mesh, "{httpCookie: {name: session}}")
    r = mesh.call("backend", "/")
    assert "set-cookie" not in r.headers
    assert len({upstream(mesh) for _ in range(30)}) > 1  # no key: any replica
    assert len({upstream(mesh, headers={"cookie": "session=abc"}) for _ in range(10)}) == 1


def test_consistent_hash_on_source_ip(mesh: Mesh) -> None:
    hashed(mesh, "{useSourceIp: true}")
    assert len({upstream(mesh) for _ in range(10)}) == 1  # one client: one replica
    mesh.deploy("web", relay(), replicas=4)
    seen: dict[str, set[str]] = {}
    for _ in range(40):
        body = mesh.call("web", "/").json()
        seen.setdefault(body["caller"], set()).add(body["backend"])
    assert len(seen) == 4
    assert all(len(backends) == 1 for backends in seen.values())  # each caller pod sticks to one


def test_consistent_hash_survives_scaling_for_most_keys(mesh: Mesh) -> None:
    hashed(mesh, "{httpHeaderName: x-user}", replicas=3)
    users = [f"u{i}" for i in range(60)]
    before = {u: upstream(mesh, headers={"x-user": u}) for u in users}
    mesh.scale("backend", 4)
    after = {u: upstream(mesh, headers={"x-user": u}) for u in users}
    moved = [u for u in users if before[u] != after[u]]
    assert all(after[u] == "backend-v1-3" for u in moved)  # only to the new replica
    assert 0 < len(moved) < 30
