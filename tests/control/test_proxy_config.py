"""``mesh.proxy_config`` (istioctl proxy-config in small): the routes, clusters and endpoints
tables of one proxy reflect the configuration applied, and change when it changes."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi import FastAPI

from meshlab import Mesh, MeshError
from meshlab.config.virtual_service import HTTPMatchRequest
from meshlab.control.proxy_config import describe_match

REVIEWS = "reviews.default.svc.cluster.local"

CONFIG = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: v2
    labels: {version: v2}
    trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match:
    - headers: {end-user: {exact: jason}}
      uri: {prefix: /reviews}
    - queryParams: {u: {exact: jason}}
    route: [{destination: {host: reviews, subset: v2}}]
  - match: [{uri: {exact: /go}}]
    redirect: {uri: /reviews/1}
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 80}
    - {destination: {host: reviews, subset: v2}, weight: 20}
"""


@pytest.fixture
def reviews(mesh: Mesh) -> Mesh:
    mesh.deploy("reviews", FastAPI(), version="v1", replicas=2)
    mesh.deploy("reviews", FastAPI(), version="v2")
    mesh.deploy("ratings", FastAPI())
    return mesh


def rows(df: pd.DataFrame, **where: object) -> pd.DataFrame:
    for k, v in where.items():
        df = df[df[k] == v]
    return df.reset_index(drop=True)


def test_default_tables_before_any_istio_config(reviews: Mesh) -> None:
    routes = reviews.proxy_config("curl", "routes")
    assert list(routes.columns) == ["host", "route", "match", "destinations", "timeout", "retries", "from"]
    r = rows(routes, host=REVIEWS)
    assert r[["route", "match", "destinations", "from"]].values.tolist() == [
        ["default", "*", f"outbound|80||{REVIEWS} (100%)", "default"]]
    clusters = reviews.proxy_config("curl", "clusters")
    assert list(clusters.columns) == ["service", "port", "subset", "direction", "lb", "endpoints",
                                      "destination_rule"]
    c = rows(clusters, service=REVIEWS)
    assert c[["subset", "lb", "endpoints", "destination_rule"]].values.tolist() == [["-", "LEAST_REQUEST", 3, "-"]]


def test_routes_reflect_the_virtual_service(reviews: Mesh) -> None:
    reviews.apply(CONFIG)
    r = rows(reviews.proxy_config("curl", "routes"), host=REVIEWS)
    assert list(r["route"]) == ["jason", "reviews-1", "reviews-2"]
    assert r.loc[0, "match"] == "uri prefix /reviews; header end-user exact jason OR query u exact jason"
    assert r.loc[0, "destinations"] == f"outbound|80|v2|{REVIEWS} (100%)"
    assert r.loc[1, "match"] == "uri exact /go"
    assert r.loc[1, "destinations"] == "redirect to /reviews/1"
    assert r.loc[2, "match"] == "*"
    assert r.loc[2, "destinations"] == f"outbound|80|v1|{REVIEWS} (80%), outbound|80|v2|{REVIEWS} (20%)"
    assert set(r["from"]) == {"virtualservice/default/reviews"}
    untouched = rows(reviews.proxy_config("curl", "routes"), host="ratings.default.svc.cluster.local")
    assert list(untouched["from"]) == ["default"]


def test_clusters_reflect_the_destination_rule(reviews: Mesh) -> None:
    reviews.apply(CONFIG)
    c = rows(reviews.proxy_config("curl", "clusters"), service=REVIEWS).set_index("subset")
    assert c.loc["-", "lb"] == "ROUND_ROBIN" and c.loc["-", "endpoints"] == 3
    assert c.loc["v1", "lb"] == "ROUND_ROBIN" and c.loc["v1", "endpoints"] == 2
    assert c.loc["v2", "lb"] == "RING_HASH on header" and c.loc["v2", "endpoints"] == 1
    assert set(c["destination_rule"]) == {"destinationrule/default/reviews"}
    assert set(c["port"]) == {80} and set(c["direction"]) == {"outbound"}


def test_endpoints_table(reviews: Mesh) -> None:
    reviews.apply(CONFIG)
    e = reviews.proxy_config("curl", "endpoints")
    assert list(e.columns) == ["endpoint", "pod", "status", "outlier_check", "cluster"]
    v1 = rows(e, cluster=f"outbound|80|v1|{REVIEWS}")
    assert sorted(v1["pod"]) == ["reviews-v1-0", "reviews-v1-1"]
    assert set(v1["status"]) == {"HEALTHY"} and set(v1["outlier_check"]) == {"OK"}
    addresses = {r.name: r.sidecar.inbound.address for r in reviews.replicas("reviews")}
    assert all(addresses[p] == a for p, a in zip(v1["pod"], v1["endpoint"], strict=True))


def test_endpoints_follow_scaling_and_readiness(reviews: Mesh) -> None:
    reviews.scale("reviews", 3, version="v1")
    e = rows(reviews.proxy_config("curl", "endpoints"), cluster=f"outbound|80||{REVIEWS}")
    assert len(e) == 4
    reviews.replicas("reviews", "v1")[0].ready = False
    reviews.registry.changed()
    e = rows(reviews.proxy_config("curl", "endpoints"), cluster=f"outbound|80||{REVIEWS}").set_index("pod")
    assert e.loc["reviews-v1-0", "status"] == "UNHEALTHY"
    assert e.loc["reviews-v1-1", "status"] == "HEALTHY"


def test_tables_change_with_apply_and_delete(reviews: Mesh) -> None:
    reviews.apply(CONFIG)
    assert len(rows(reviews.proxy_config("reviews-v1-0", "routes"), host=REVIEWS)) == 3
    reviews.delete("VirtualService", "reviews")
    reviews.delete("DestinationRule", "reviews")
    assert list(rows(reviews.proxy_config("reviews-v1-0", "routes"), host=REVIEWS)["route"]) == ["default"]
    assert list(rows(reviews.proxy_config("curl", "clusters"), service=REVIEWS)["subset"]) == ["-"]


def test_ingress_gateway_routes_only_bound_virtual_services(reviews: Mesh) -> None:
    reviews.apply(CONFIG + """---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: edge}
spec:
  hosts: ["*"]
  gateways: [edge]
  http:
  - match: [{uri: {prefix: /api}}]
    route: [{destination: {host: ratings}}]
""")
    gw = reviews.proxy_config("istio-ingressgateway", "routes")
    assert gw[["host", "route", "match", "from"]].values.tolist() == [
        ["*", "edge-0", "uri prefix /api", "virtualservice/default/edge"]]
    assert reviews.proxy_config("ingress", "routes").equals(gw)
    mesh_routes = reviews.proxy_config("curl", "routes")
    assert "*" not in set(mesh_routes["host"])


def test_workload_names_and_errors(reviews: Mesh) -> None:
    by_pod = reviews.proxy_config("reviews-v2-0", "clusters")
    by_service = reviews.proxy_config("reviews", "clusters")
    assert by_pod.equals(by_service)
    with pytest.raises(ValueError, match="routes"):
        reviews.proxy_config("curl", "listeners")
    with pytest.raises(MeshError):
        reviews.proxy_config("nosuchservice", "routes")


@pytest.mark.parametrize(("spec", "text"), [
    ({}, "*"),
    ({"uri": {"regex": "/a/.*"}, "method": {"exact": "GET"}}, "uri regex /a/.*; method exact GET"),
    ({"authority": {"prefix": "shop"}}, "authority prefix shop"),
    ({"headers": {"x": {}}}, "header x present"),
    ({"withoutHeaders": {"end-user": {"exact": "jason"}}}, "without header end-user exact jason"),
    ({"sourceLabels": {"app": "web"}, "port": 9080}, "source labels {'app': 'web'}; port 9080"),
])
def test_describe_match(spec: dict, text: str) -> None:
    assert describe_match(HTTPMatchRequest.model_validate(spec)) == text
