"""The service registry and pilot's lazy snapshots: no sockets (replicas carry a fake sidecar)."""

from __future__ import annotations

import random
from types import SimpleNamespace

import pytest

from meshlab.control.pilot import Pilot
from meshlab.control.registry import Registry, RegistryError, Service
from meshlab.proxy.stream import Peer
from meshlab.workload import Replica, Work


def replica(service: str, version: str = "v1", index: int = 0, namespace: str = "default",
            port: int | None = None, ready: bool = True) -> Replica:
    r = Replica(None, service, version, index, app=None, work=Work(),  # type: ignore[arg-type]
                labels={"app": service, "version": version}, namespace=namespace, rng=random.Random(0))
    if port is not None:  # the registry reads the sidecar's inbound address and identity
        identity = Peer(r.workload, namespace, service, version, f"spiffe://cluster.local/ns/{namespace}/sa/{service}",
                        r.name)
        r.sidecar = SimpleNamespace(inbound=SimpleNamespace(host="127.0.0.1", port=port),  # type: ignore[assignment]
                                    identity=identity)
    r.ready = ready
    return r


def test_service_fqdn_and_versions_in_deployment_order() -> None:
    svc = Service("reviews")
    assert svc.fqdn == "reviews.default.svc.cluster.local" and svc.port == 80
    svc.replicas += [replica("reviews", "v2"), replica("reviews", "v1"), replica("reviews", "v2", 1)]
    assert svc.versions == ["v2", "v1"]
    assert Service("x", "shop").fqdn == "x.shop.svc.cluster.local"


def test_add_and_remove_replicas() -> None:
    reg = Registry()
    a0, a1, b0 = replica("a"), replica("a", index=1), replica("b", namespace="shop")
    for r in (a0, a1, b0):
        reg.add(r)
    assert sorted(reg.services) == [("default", "a"), ("shop", "b")]
    assert reg.service("a").replicas == [a0, a1]
    assert reg.service("b", "shop").replicas == [b0]
    reg.remove(a0)
    reg.remove(a1)
    assert reg.service("a").replicas == []  # a Service outlives its pods, as in Kubernetes
    assert reg.ensure_service("a") is reg.service("a")


def test_every_change_bumps_version_and_notifies() -> None:
    reg = Registry()
    seen: list[int] = []
    reg.subscribe(lambda: seen.append(reg.version))
    r = replica("a")
    reg.add(r)
    reg.add(replica("a", index=1))
    reg.remove(r)
    reg.changed()  # e.g. readiness flipped
    assert seen == [1, 2, 3, 4] and reg.version == 4
    reg.ensure_service("quiet")  # creating an empty service by itself is not a change
    assert reg.version == 4


def test_unknown_service_error_is_helpful() -> None:
    reg = Registry()
    with pytest.raises(RegistryError, match=r"no service 'cart' in namespace 'default' \(services: none\)"):
        reg.service("cart")
    reg.add(replica("front"))
    reg.add(replica("catalog"))
    with pytest.raises(LookupError, match=r"no service 'cart' .*services: catalog, front"):
        reg.service("cart")
    with pytest.raises(RegistryError, match=r"in namespace 'shop' \(services: none\)"):
        reg.service("front", "shop")
    with pytest.raises(RegistryError):
        reg.remove(replica("ghost"))


def test_endpoints_carry_address_labels_version_and_readiness() -> None:
    reg = Registry()
    reg.add(replica("a", "v1", 0, port=1001))
    reg.add(replica("a", "v2", 0, port=1002, ready=False))
    reg.add(replica("a", "v1", 1))  # no sidecar (yet): not an endpoint
    eps = reg.endpoints(reg.service("a"))
    assert [(e.address, e.pod, e.workload, e.version, e.healthy) for e in eps] == [
        ("127.0.0.1:1001", "a-v1-0", "a-v1", "v1", True),
        ("127.0.0.1:1002", "a-v2-0", "a-v2", "v2", False),
    ]
    assert eps[1].label_dict() == {"app": "a", "version": "v2"}
    assert eps[0].service == "a.default.svc.cluster.local"


def test_pilot_rebuilds_lazily_after_changes() -> None:
    reg = Registry()
    pilot = Pilot(reg)
    first = pilot.snapshot
    assert pilot.snapshot is first  # no change, no rebuild
    for i in range(5):  # many changes in a row cost one build
        reg.add(replica("a", index=i, port=2000 + i))
    snap = pilot.snapshot
    assert snap is not first and snap.version > first.version
    assert pilot.snapshot is snap
    assert pilot.pushes == 2
    cluster = snap.clusters["outbound|80||a.default.svc.cluster.local"]
    assert len(cluster.endpoints) == 5
    assert snap.virtual_host("a", "default") is not None
    assert snap.virtual_host("a.default.svc.cluster.local:80", "default") is not None
    assert snap.virtual_host("b", "default") is None
