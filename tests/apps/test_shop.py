"""The shop: each build answers each feature; a crash takes down what the architecture says.

What is checked in a mesh does not depend on retries: a crashed pod is the only pod of its
service here, so a retry (Istio's default policy) finds no other pod to answer.
"""

from __future__ import annotations

import httpx
import pandas as pd
import pytest
from fastapi.testclient import TestClient

from meshlab import Mesh
from meshlab.apps import shop


def feature_request(client: TestClient | httpx.Client, feature: shop.Feature) -> httpx.Response:
    return client.request(feature.method, feature.path, json=feature.body)


def mesh_request(mesh: Mesh, service: str, feature: shop.Feature) -> httpx.Response:
    return mesh.call(service, feature.path, method=feature.method, json=feature.body)


# -- without a mesh ---------------------------------------------------------------------------
def test_monolith_answers_every_feature() -> None:
    with TestClient(shop.monolith()) as client:
        answers = {name: feature_request(client, f) for name, f in shop.FEATURES.items()}
    assert {name: r.status_code for name, r in answers.items()} == dict.fromkeys(shop.FEATURES, 200)
    assert answers["home"].json() == {"products": 8, "featured": "hoodie"}
    assert answers["login"].json() == {"user": "alice", "token": "token-alice"}
    assert answers["details"].json() == {"id": 3, "name": "hoodie", "price": 35.0}
    assert answers["cart"].json() == {"user": "alice", "items": 1}
    assert answers["checkout"].json() == {"order": 1, "user": "alice", "items": 1, "total": 35.0, "paid": True}


def test_leaf_services_answer_alone() -> None:
    apps = shop.microservices()
    with TestClient(apps["listing"]) as client:
        assert len(client.get("/products").json()) == len(shop.PRODUCTS)
    with TestClient(apps["details"]) as client:
        assert client.get("/products/99").status_code == 404
    with TestClient(apps["payment"]) as client:
        assert client.post("/payment", json={"user": "bob", "amount": 5.0}).json()["status"] == "captured"


def test_fault_outside_a_mesh_is_a_fatal_error_and_fixed_code_ignores_it() -> None:
    faults = shop.Faults()
    item = shop.FEATURES["cart"]
    with TestClient(shop.monolith(faults=faults), raise_server_exceptions=False) as client:
        faults.crash("cart", times=1)
        assert feature_request(client, item).status_code == 500
        assert feature_request(client, item).status_code == 200  # times=1: disarmed
    faults.crash("cart", times=None)
    with TestClient(shop.monolith(faults=faults, fixed={"cart"})) as client:
        assert feature_request(client, item).status_code == 200
    faults.clear()
    with pytest.raises(ValueError, match="no service 'basket'"):
        faults.crash("basket")


def test_work_models_and_tables() -> None:
    mono = shop.monolith_work()
    assert mono.capacity == shop.MONOLITH_WORKERS
    assert mono.footprint_mb == sum(s.footprint_mb for s in shop.SERVICES.values())
    assert shop.service_work("cart").capacity == shop.SERVICES["cart"].workers
    table = shop.service_table()
    assert list(table.index) == [*shop.SERVICES, "shop (monolith)"]


def test_code_lines_counts_code_not_docstrings_or_comments() -> None:
    def sample(x: int) -> int:
        """A docstring
        on two lines."""
        # a comment

        y = x + 1
        return y

    assert shop.code_lines(sample) == 3  # def, y = ..., return


def test_diy_services_carry_communication_code_and_mesh_services_do_not() -> None:
    mesh_apps = shop.microservices()
    diy_apps = shop.diy_microservices(lambda name: [])
    for name, spec in shop.SERVICES.items():
        assert shop.communication_lines(diy_apps[name]) > 40
        expected = shop.code_lines(shop.MeshCalls) if spec.calls else 0
        assert shop.communication_lines(mesh_apps[name]) == expected
        assert shop.business_lines(diy_apps[name]) == shop.business_lines(mesh_apps[name])


def test_diy_round_robin_and_discovery_cache() -> None:
    calls = []

    def lookup(name: str) -> list[str]:
        calls.append(name)
        return ["a:1", "b:2"]

    comms = shop.DiyComms("front", lookup, cache_ttl=60)
    assert [comms.pick("cart") for _ in range(4)] == ["a:1", "b:2", "a:1", "b:2"]
    assert calls == ["cart"]  # cached


# -- in a mesh --------------------------------------------------------------------------------
def test_every_build_gives_the_same_answers(mesh: Mesh) -> None:
    shop.deploy_monolith(mesh)
    shop.deploy_microservices(mesh)
    shop.deploy_diy(mesh)
    with httpx.Client() as http:
        for f in shop.FEATURES.values():
            mono = mesh_request(mesh, shop.MONOLITH, f)
            micro = mesh_request(mesh, f.service, f)
            diy = http.request(f.method, shop.diy_url(mesh, f.service) + f.path, json=f.body)
            assert (mono.status_code, micro.status_code, diy.status_code) == (200, 200, 200), f.name
            assert mono.json() == micro.json() == diy.json(), f.name


def test_monolith_crash_takes_every_feature_down(mesh: Mesh) -> None:
    faults = shop.Faults()
    shop.deploy_monolith(mesh, faults=faults)
    faults.crash("cart", restart_after=30)
    assert mesh_request(mesh, shop.MONOLITH, shop.FEATURES["cart"]).status_code == 503
    assert [c.pod for c in faults.crashes] == ["shop-v1-0"]
    for f in shop.FEATURES.values():
        assert mesh_request(mesh, shop.MONOLITH, f).status_code == 503, f.name
    mesh.revive(shop.MONOLITH)
    for f in shop.FEATURES.values():
        assert mesh_request(mesh, shop.MONOLITH, f).status_code == 200, f.name


def test_microservice_crash_takes_down_cart_and_its_callers_only(mesh: Mesh) -> None:
    faults = shop.Faults()
    shop.deploy_microservices(mesh, faults=faults)
    faults.crash("cart", restart_after=30)
    assert mesh_request(mesh, "cart", shop.FEATURES["cart"]).status_code == 503
    assert [c.pod for c in faults.crashes] == ["cart-v1-0"]
    status = {name: mesh_request(mesh, f.service, f).status_code for name, f in shop.FEATURES.items()}
    assert status == {"home": 200, "login": 200, "listing": 200, "details": 200, "cart": 503, "checkout": 503}


def test_diy_retries_hide_a_crashed_replica(mesh: Mesh) -> None:
    apps = shop.deploy_diy(mesh, replicas=2)
    mesh.replicas("listing", namespace="diy")[0].crash(restart_after=30)
    with httpx.Client() as http:
        assert [http.get(shop.diy_url(mesh, "storefront") + "/").status_code for _ in range(4)] == [200] * 4
    log = pd.DataFrame(apps["storefront"].state.comms.log)
    out = log[(log.direction == "out") & (log.target == "listing/products")]
    assert (out.status == 503).sum() >= 1 and (out.status == 200).sum() == 4


def test_drive_mixes_features_into_one_frame(mesh: Mesh) -> None:
    shop.deploy_microservices(mesh)
    shop.deploy_monolith(mesh)
    for build in ("microservices", "monolith"):
        df = shop.drive(mesh, {"listing": 40, "cart": 20}, 0.5, build=build)
        assert set(df.feature) == {"listing", "cart"} and set(df.build) == {build}
        assert (df.status == 200).all()
        assert df.t.is_monotonic_increasing and "t0" in df.attrs
    run = shop.drive(mesh, {"login": 20}, 0.3, background=True)
    assert isinstance(run, shop.Traffic)
    assert len(run.result()) == 6
    with pytest.raises(ValueError, match="unknown features"):
        shop.drive(mesh, {"search": 1}, 0.1)
    assert shop.footprint_mb(mesh, ["cart", "shop"]) == (shop.SERVICES["cart"].footprint_mb
                                                         + shop.monolith_work().footprint_mb)


def test_availability_by_sent_or_answered_time() -> None:
    df = pd.DataFrame({"feature": ["a", "a", "b", "b"], "t": [0.0, 1.0, 0.0, 1.0],
                       "done": [0.5, 1.2, 2.0, 1.1], "status": [200, 503, 200, 0]})
    assert shop.availability(df).to_dict() == {"a": 0.5, "b": 0.5}
    assert shop.availability(df, start=0.5).to_dict() == {"a": 0.0, "b": 0.0}
    assert shop.availability(df, start=1.5, time="done").to_dict() == {"b": 1.0}
