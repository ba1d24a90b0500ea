"""The networking compiler (pilot's job): Istio resources -> the snapshot sidecars route with.

The first tests call the pure helpers (policy merge, load-balancer choice); the rest apply
configuration to a mesh and read the compiled snapshot (``mesh.pilot.snapshot``): clusters per
subset, their endpoints and policies, virtual hosts per context (mesh / gateway), conflicts.
"""

from __future__ import annotations

import pytest
from fastapi import FastAPI

import meshlab
from meshlab import Mesh
from meshlab.config.destination_rule import TrafficPolicy
from meshlab.control.networking import hash_source, lb_policy, merge_policy

CLUSTER = "outbound|{port}|{subset}|{host}"
REVIEWS = "reviews.default.svc.cluster.local"


def policy(**spec):  # type: ignore[no-untyped-def]
    return TrafficPolicy.model_validate(spec)


# -- helpers ----------------------------------------------------------------------------------

def test_merge_policy_replaces_sections_whole() -> None:
    base = policy(loadBalancer={"simple": "RANDOM"},
                  connectionPool={"tcp": {"maxConnections": 10}, "http": {"http1MaxPendingRequests": 5}},
                  outlierDetection={"consecutive5xxErrors": 3, "interval": "1s"})
    subset = policy(connectionPool={"http": {"http2MaxRequests": 7}},
                    loadBalancer={"consistentHash": {"httpHeaderName": "x-user"}})
    merged = merge_policy(base, subset)
    assert merged.loadBalancer.simple is None  # the subset's loadBalancer replaces the rule's
    assert merged.loadBalancer.consistentHash.httpHeaderName == "x-user"
    assert merged.connectionPool.tcp is None  # sections are not merged field by field
    assert merged.connectionPool.http.http2MaxRequests == 7
    assert merged.outlierDetection.consecutive5xxErrors == 3  # not overridden: inherited
    assert merge_policy(None, subset) is subset and merge_policy(base, None) is base
    assert base.loadBalancer.simple == "RANDOM"  # inputs untouched


@pytest.mark.parametrize(("lb", "expected"), [
    (None, ("LEAST_REQUEST", None)),
    ({"simple": "ROUND_ROBIN"}, ("ROUND_ROBIN", None)),
    ({"simple": "RANDOM"}, ("RANDOM", None)),
    ({"simple": "LEAST_REQUEST"}, ("LEAST_REQUEST", None)),
    ({"consistentHash": {"httpHeaderName": "X-User"}}, ("RING_HASH", ("header", "x-user"))),
    ({"consistentHash": {"httpCookie": {"name": "s", "ttl": "30s"}}}, ("RING_HASH", ("cookie", "s", 30.0))),
    ({"consistentHash": {"httpCookie": {"name": "s"}}}, ("RING_HASH", ("cookie", "s", 0.0))),
    ({"consistentHash": {"useSourceIp": True}}, ("RING_HASH", ("source_ip",))),
    ({"consistentHash": {"httpQueryParameterName": "u"}}, ("RING_HASH", ("query", "u"))),
    ({"consistentHash": {"httpHeaderName": "x", "maglev": {"tableSize": 65537}}}, ("MAGLEV", ("header", "x"))),
])
def test_lb_policy(lb: dict | None, expected: tuple) -> None:
    p = policy(loadBalancer=lb) if lb is not None else None
    assert lb_policy(p) == expected


def test_hash_source_none_without_consistent_hash() -> None:
    assert hash_source(None) is None
    assert hash_source(policy(loadBalancer={"simple": "RANDOM"}).loadBalancer) is None


# -- compiled snapshot ------------------------------------------------------------------------

def app() -> FastAPI:
    a = FastAPI()

    @a.get("/{path:path}")
    async def me(path: str) -> dict[str, str | None]:
        r = meshlab.current_replica()
        return {"pod": r.name if r else None, "version": r.version if r else None}

    return a


@pytest.fixture
def reviews(mesh: Mesh) -> Mesh:
    mesh.deploy("reviews", app(), version="v1", replicas=2)
    mesh.deploy("reviews", app(), version="v2")
    mesh.deploy("reviews", app(), version="v3", labels={"track": "canary"})
    return mesh


DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy: {loadBalancer: {simple: RANDOM}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - name: canary
    labels: {track: canary}
    trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}
  - {name: nobody, labels: {version: v9}}
"""


def pods(mesh: Mesh, cluster: str) -> list[str]:
    return sorted(e.pod for e in mesh.pilot.snapshot.clusters[cluster].endpoints)


def test_registry_alone_gives_one_cluster_and_one_default_route(reviews: Mesh) -> None:
    snap = reviews.pilot.snapshot
    name = CLUSTER.format(port=80, subset="", host=REVIEWS)
    assert pods(reviews, name) == ["reviews-v1-0", "reviews-v1-1", "reviews-v2-0", "reviews-v3-0"]
    assert snap.clusters[name].lb_policy == "LEAST_REQUEST"
    [route] = snap.virtual_hosts[REVIEWS].routes
    assert [(c.cluster, c.weight) for c in route.clusters] == [(name, 100)]


def test_destination_rule_subsets_become_clusters(reviews: Mesh) -> None:
    reviews.apply(DR)
    clusters = reviews.pilot.snapshot.clusters
    base = clusters[CLUSTER.format(port=80, subset="", host=REVIEWS)]
    assert base.lb_policy == "RANDOM" and base.source == "destinationrule/default/reviews"
    assert pods(reviews, CLUSTER.format(port=80, subset="v1", host=REVIEWS)) == ["reviews-v1-0", "reviews-v1-1"]
    assert pods(reviews, CLUSTER.format(port=80, subset="canary", host=REVIEWS)) == ["reviews-v3-0"]
    assert pods(reviews, CLUSTER.format(port=80, subset="nobody", host=REVIEWS)) == []
    assert clusters[CLUSTER.format(port=80, subset="v1", host=REVIEWS)].lb_policy == "RANDOM"
    assert clusters[CLUSTER.format(port=80, subset="canary", host=REVIEWS)].lb_policy == "ROUND_ROBIN"


def test_subset_with_no_pods_is_503_uh(reviews: Mesh) -> None:
    reviews.apply(DR + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: nobody}}]}]
""")
    r = reviews.call("reviews", "/")
    assert (r.status_code, r.headers["x-meshlab-response-flags"]) == (503, "UH")


def test_subset_endpoints_follow_scaling(reviews: Mesh) -> None:
    reviews.apply(DR)
    reviews.scale("reviews", 3, version="v1")
    assert pods(reviews, CLUSTER.format(port=80, subset="v1", host=REVIEWS)) == [
        "reviews-v1-0", "reviews-v1-1", "reviews-v1-2"]


def test_destination_rule_for_an_unknown_host_is_ignored(reviews: Mesh) -> None:
    before = set(reviews.pilot.snapshot.clusters)
    reviews.apply(DR.replace("host: reviews", "host: ghost").replace("name: reviews", "name: ghost"))
    assert set(reviews.pilot.snapshot.clusters) == before
    assert reviews.call("reviews", "/").status_code == 200


def test_virtual_service_compiles_routes_in_order(reviews: Mesh) -> None:
    reviews.apply(DR + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - name: jason
    match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: canary}}]
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 90}
    - {destination: {host: reviews}, weight: 10}
""")
    routes = reviews.pilot.snapshot.virtual_hosts[REVIEWS].routes
    assert [r.name for r in routes] == ["jason", "reviews-1"]
    assert [(c.cluster, c.weight) for c in routes[1].clusters] == [
        (CLUSTER.format(port=80, subset="v1", host=REVIEWS), 90),
        (CLUSTER.format(port=80, subset="", host=REVIEWS), 10)]
    assert routes[0].action["source"] == "virtualservice/default/reviews"


def test_gateway_only_virtual_service_stays_out_of_the_mesh_table(reviews: Mesh) -> None:
    reviews.apply("""
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
  http: [{route: [{destination: {host: reviews}}]}]
""")
    snap = reviews.pilot.snapshot
    assert "*" not in snap.virtual_hosts
    assert snap.virtual_hosts[REVIEWS].routes[0].name == "default"
    assert set(snap.gateways["default/edge"]) == {"*"}
    assert snap.gateway_servers["default/edge"] == ({"istio": "ingressgateway"}, ("*",))


def test_short_hosts_are_expanded_with_the_resource_namespace(mesh: Mesh) -> None:
    mesh.deploy("reviews", app(), namespace="books")
    mesh.apply("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: books}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews}}], headers: {response: {set: {x-vs: books}}}}]
""")
    snap = mesh.pilot.snapshot
    assert snap.virtual_hosts["reviews.books.svc.cluster.local"].routes[0].action["source"] == \
        "virtualservice/books/reviews"
    r = mesh.call("reviews.books", "/")
    assert (r.status_code, r.headers.get("x-vs")) == (200, "books")


def test_destination_port_selects_the_service_port(mesh: Mesh) -> None:
    mesh.deploy("details", app(), port=9080)
    mesh.apply("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details}
spec:
  hosts: [details]
  http:
  - match: [{uri: {prefix: /wrong}}]
    route: [{destination: {host: details, port: {number: 8080}}}]
  - route: [{destination: {host: details, port: {number: 9080}}}]
""")
    assert "outbound|9080||details.default.svc.cluster.local" in mesh.pilot.snapshot.clusters
    assert mesh.call("details", "/ok").status_code == 200
    r = mesh.call("details", "/wrong")  # no such port on the service: no such cluster
    assert (r.status_code, r.headers["x-meshlab-response-flags"]) == (503, "NC")


def _vs(name: str, subset: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: [reviews]
  http: [{{route: [{{destination: {{host: reviews, subset: {subset}}}}}]}}]
"""


def test_two_virtual_services_for_one_host_oldest_wins(reviews: Mesh) -> None:
    reviews.apply(DR)
    reviews.apply(_vs("zz-first", "v1"))
    reviews.apply(_vs("aa-second", "canary"))  # sorts first by name, but is younger
    assert {reviews.call("reviews", "/").json()["version"] for _ in range(5)} == {"v1"}
    reviews.delete("VirtualService", "zz-first")
    assert {reviews.call("reviews", "/").json()["version"] for _ in range(5)} == {"v3"}


def test_one_batch_is_ordered_by_name(reviews: Mesh) -> None:
    """Created together, two VirtualServices share a creation time; Istio then takes the name order."""
    reviews.apply([DR, _vs("zz-later", "v1"), _vs("aa-first", "canary")])
    assert {reviews.call("reviews", "/").json()["version"] for _ in range(5)} == {"v3"}


def test_recreated_virtual_service_is_younger(reviews: Mesh) -> None:
    reviews.apply(DR)
    reviews.apply(_vs("first", "v1"))
    reviews.apply(_vs("second", "canary"))
    reviews.delete("VirtualService", "first")
    reviews.apply(_vs("first", "v1"))  # now the youngest: "second" owns the host
    assert {reviews.call("reviews", "/").json()["version"] for _ in range(5)} == {"v3"}


def test_service_entry_clusters_and_endpoints(mesh: Mesh) -> None:
    mesh.apply("""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static}
spec:
  hosts: [db.example.internal]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  endpoints: [{address: 10.0.0.7}, {address: 10.0.0.8}]
""")
    snap = mesh.pilot.snapshot
    cl = snap.clusters["outbound|5432||db.example.internal"]
    assert [(e.host, e.port) for e in cl.endpoints] == [("10.0.0.7", 5432), ("10.0.0.8", 5432)]
    assert cl.source == "serviceentry/default/static"
    assert "db.example.internal" in snap.virtual_hosts


def test_every_change_pushes_a_new_snapshot_version(reviews: Mesh) -> None:
    v0 = reviews.pilot.snapshot.version
    reviews.apply(DR)
    v1 = reviews.pilot.snapshot.version
    assert v1 > v0
    assert reviews.pilot.snapshot.version == v1  # no change, no rebuild
    reviews.delete("DestinationRule", "reviews")
    assert reviews.pilot.snapshot.version > v1
    assert CLUSTER.format(port=80, subset="v1", host=REVIEWS) not in reviews.pilot.snapshot.clusters
