"""Load balancers: which endpoint of a cluster gets the next request (Envoy's LB policies).

Istio's default is LEAST_REQUEST, implemented as Envoy does: pick two hosts at random and send
to the one with fewer requests in flight ("power of two choices"). It reacts to a slow replica
without having to scan every host. ROUND_ROBIN cycles; RANDOM draws uniformly. All draws use the
sidecar's seeded random source, so a run is reproducible.

A balancer sees only ``Host`` objects (endpoint + this sidecar's counters for it); it knows
nothing of sockets, so it is tested without any.
"""

from __future__ import annotations

import bisect
import hashlib
import random
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .cluster import Host

__all__ = ["LoadBalancer", "RoundRobin", "RandomLB", "LeastRequest", "RingHash", "make_lb", "LB_POLICIES"]


class LoadBalancer:
    """Base class: ``pick(hosts, key)`` returns one of ``hosts`` (never empty)."""

    name = "?"

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng

    def pick(self, hosts: Sequence[Host], key: str | None = None) -> Host:
        """Choose a host for one request. ``key`` is a hash key (consistent hashing only)."""
        raise NotImplementedError


class RoundRobin(LoadBalancer):
    """Each host in turn."""

    name = "ROUND_ROBIN"

    def __init__(self, rng: random.Random) -> None:
        super().__init__(rng)
        self.next = 0

    def pick(self, hosts: Sequence[Host], key: str | None = None) -> Host:
        host = hosts[self.next % len(hosts)]
        self.next += 1
        return host


class RandomLB(LoadBalancer):
    """A uniformly random host."""

    name = "RANDOM"

    def pick(self, hosts: Sequence[Host], key: str | None = None) -> Host:
        return hosts[self.rng.randrange(len(hosts))]


class LeastRequest(LoadBalancer):
    """Two random choices; the one with fewer active requests wins (ties: the first)."""

    name = "LEAST_REQUEST"

    def pick(self, hosts: Sequence[Host], key: str | None = None) -> Host:
        n = len(hosts)
        if n == 1:
            return hosts[0]
        a = hosts[self.rng.randrange(n)]
        b = hosts[self.rng.randrange(n)]
        return b if b.active_rq < a.active_rq else a


class RingHash(LoadBalancer):
    """Consistent hashing on a ring (Envoy's RING_HASH; Istio's ``consistentHash``).

    Every host is placed on a ring of 2**64 positions at ``vnodes`` pseudo-random points
    (hashes of ``address_i``); a request's key is hashed onto the ring and goes to the next
    host point clockwise. The same key always reaches the same host while the host set is
    unchanged, and adding or removing one host only moves the keys next to its points (about
    1/N of them), which is why it is used for session affinity and caches. Requests without a
    key get a random host."""

    name = "RING_HASH"

    def __init__(self, rng: random.Random, vnodes: int = 128) -> None:
        super().__init__(rng)
        self.vnodes = vnodes
        self._ring: list[tuple[int, str]] = []
        self._hosts_key: tuple[str, ...] = ()

    @staticmethod
    def hash(value: str) -> int:
        """A stable 64-bit hash (xxHash in Envoy; blake2b here: stable across processes)."""
        return int.from_bytes(hashlib.blake2b(value.encode(), digest_size=8).digest(), "big")

    def _build(self, hosts: Sequence[Host]) -> None:
        key = tuple(h.endpoint.address for h in hosts)
        if key == self._hosts_key:
            return
        self._ring = sorted((self.hash(f"{addr}_{i}"), addr) for addr in key for i in range(self.vnodes))
        self._hosts_key = key

    def pick(self, hosts: Sequence[Host], key: str | None = None) -> Host:
        if key is None:
            return hosts[self.rng.randrange(len(hosts))]
        self._build(hosts)
        by_addr = {h.endpoint.address: h for h in hosts}
        i = bisect.bisect_left(self._ring, (self.hash(key), ""))
        return by_addr[self._ring[i % len(self._ring)][1]]


LB_POLICIES: dict[str, type[LoadBalancer]] = {
    "LEAST_REQUEST": LeastRequest,
    "LEAST_CONN": LeastRequest,  # Istio's deprecated alias
    "ROUND_ROBIN": RoundRobin,
    "RANDOM": RandomLB,
    "UNSPECIFIED": LeastRequest,
    "PASSTHROUGH": RandomLB,  # not simulated: original-destination forwarding, treated as random
    "RING_HASH": RingHash,
    "MAGLEV": RingHash,  # Maglev is another consistent hash; the ring shows the same behaviour
}


def make_lb(policy: str, rng: random.Random) -> LoadBalancer:
    """A balancer for an Istio ``loadBalancer.simple`` policy name."""
    try:
        return LB_POLICIES[policy](rng)
    except KeyError:
        raise ValueError(f"unknown load balancer policy {policy!r}; expected one of {sorted(LB_POLICIES)}") from None
