"""Ingress and egress: a Gateway plus the VirtualServices bound to it (``gateways:``), called
from outside the mesh with httpx at ``mesh.ingress_url``; and ``mesh.external`` + a ServiceEntry
for a service outside the mesh reached from inside."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from fastapi import FastAPI, Request

import meshlab
from meshlab import Mesh


def echo(version: str) -> FastAPI:
    app = FastAPI()

    @app.get("/{path:path}")
    async def anything(path: str, request: Request) -> dict[str, Any]:
        return {"version": version, "path": request.url.path, "host": request.headers.get("host")}

    return app


def gateway(hosts: str, name: str = "edge") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: 80, name: http, protocol: HTTP}}
    hosts: {hosts}
"""


def bound_vs(hosts: str, subset: str = "v2", gateways: str = "[edge]", name: str = "edge-routes") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: {hosts}
  gateways: {gateways}
  http:
  - match: [{{uri: {{prefix: /reviews}}}}]
    route: [{{destination: {{host: reviews, subset: {subset}}}}}]
"""


DR = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"""


@pytest.fixture
def edge(mesh: Mesh) -> Mesh:
    mesh.deploy("reviews", echo("v1"), version="v1")
    mesh.deploy("reviews", echo("v2"), version="v2")
    mesh.apply(DR)
    return mesh


#: A VirtualService bound to a gateway with ``hosts: [reviews]`` serves the service's FQDN: the
#: gateway's virtual host domains are the VirtualService hosts, short names expanded with the
#: VirtualService's namespace (no DNS search path at the edge).
REVIEWS = "reviews.default.svc.cluster.local"


def get(mesh: Mesh, path: str, host: str | None = None) -> httpx.Response:
    headers = {"host": host} if host is not None else {}
    return httpx.get(mesh.ingress_url + path, headers=headers, timeout=10)


def test_nothing_is_exposed_without_a_gateway(edge: Mesh) -> None:
    r = get(edge, "/reviews/1", host=REVIEWS)
    assert r.status_code == 404
    assert r.headers["x-meshlab-response-flags"] == "NR"


def test_wildcard_gateway_accepts_any_host(edge: Mesh) -> None:
    edge.apply(gateway('["*"]') + "---" + bound_vs('["*"]'))
    for host in (None, "bookinfo.example.com", "10.1.2.3:8080", "anything"):
        r = get(edge, "/reviews/1", host)
        assert r.status_code == 200, host
        assert r.json()["version"] == "v2"
    r = get(edge, "/other")
    assert (r.status_code, r.headers["x-meshlab-response-flags"]) == (404, "NR")  # no route matches


def test_exact_host(edge: Mesh) -> None:
    edge.apply(gateway('["bookinfo.example.com"]') + "---" + bound_vs('["bookinfo.example.com"]'))
    assert get(edge, "/reviews/1", "bookinfo.example.com").json()["version"] == "v2"
    assert get(edge, "/reviews/1", "BookInfo.Example.com:80").status_code == 200
    for host in ("other.example.com", "example.com", "bookinfo.example.com.evil"):
        assert get(edge, "/reviews/1", host).status_code == 404, host


def test_wildcard_subdomain_host(edge: Mesh) -> None:
    edge.apply(gateway('["*.example.com"]') + "---" + bound_vs('["*.example.com"]'))
    assert get(edge, "/reviews/1", "shop.example.com").json()["version"] == "v2"
    assert get(edge, "/reviews/1", "a.b.example.com").status_code == 200
    assert get(edge, "/reviews/1", "example.org").status_code == 404
    assert get(edge, "/reviews/1", "example.com").status_code == 404


def test_virtual_service_host_narrower_than_the_gateway(edge: Mesh) -> None:
    edge.apply(gateway('["*"]') + "---" + bound_vs('["shop.example.com"]'))
    assert get(edge, "/reviews/1", "shop.example.com").status_code == 200
    assert get(edge, "/reviews/1", "books.example.com").status_code == 404


def test_two_virtual_services_on_one_gateway_by_host(edge: Mesh) -> None:
    edge.apply(gateway('["*.example.com"]') + "---" + bound_vs('["old.example.com"]', "v1", name="old")
               + "---" + bound_vs('["new.example.com"]', "v2", name="new"))
    assert get(edge, "/reviews/1", "old.example.com").json()["version"] == "v1"
    assert get(edge, "/reviews/1", "new.example.com").json()["version"] == "v2"


def test_mesh_virtual_service_does_not_apply_at_the_gateway(edge: Mesh) -> None:
    edge.apply(gateway('["*"]') + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
""")
    assert get(edge, "/reviews/1", REVIEWS).status_code == 404
    assert {edge.call("reviews", "/").json()["version"] for _ in range(10)} == {"v1"}


def test_gateway_virtual_service_does_not_apply_in_the_mesh(edge: Mesh) -> None:
    edge.apply(gateway('["*"]') + "---" + bound_vs("[reviews]", "v2"))
    assert get(edge, "/reviews/1", REVIEWS).json()["version"] == "v2"
    assert {edge.call("reviews", "/reviews/1").json()["version"] for _ in range(30)} == {"v1", "v2"}


def test_one_virtual_service_bound_to_gateway_and_mesh(edge: Mesh) -> None:
    edge.apply(gateway('["*"]') + "---" + bound_vs("[reviews]", "v1", gateways="[edge, mesh]"))
    assert get(edge, "/reviews/1", REVIEWS).json()["version"] == "v1"
    assert {edge.call("reviews", "/reviews/1").json()["version"] for _ in range(10)} == {"v1"}


def test_match_level_gateways(edge: Mesh) -> None:
    edge.apply(gateway('["*"]') + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  gateways: [edge, mesh]
  http:
  - match: [{gateways: [edge], uri: {prefix: /}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
""")
    assert get(edge, "/x", REVIEWS).json()["version"] == "v2"
    assert {edge.call("reviews", "/x").json()["version"] for _ in range(10)} == {"v1"}


def test_unbound_gateway_routes_nothing(edge: Mesh) -> None:
    edge.apply(gateway('["*"]') + "---" + bound_vs('["*"]', gateways="[other]"))
    assert get(edge, "/reviews/1").status_code == 404


def test_gateway_selector_must_match_the_ingress(edge: Mesh) -> None:
    edge.apply(gateway('["*"]').replace("istio: ingressgateway", "istio: egressgateway") + "---"
               + bound_vs('["*"]'))
    assert get(edge, "/reviews/1").status_code == 404


def test_ingress_access_log_and_upstream(edge: Mesh) -> None:
    edge.apply(gateway('["*"]') + "---" + bound_vs('["*"]'))
    r = get(edge, "/reviews/7", "shop.example.com")
    assert r.headers["x-meshlab-upstream"] == "reviews-v2-0"
    log = edge.access_log(reporter="source")
    row = log[log["workload"] == "istio-ingressgateway"].iloc[-1]
    assert (row["path"], row["response_code"], row["upstream_pod"]) == ("/reviews/7", 200, "reviews-v2-0")


# -- egress ------------------------------------------------------------------------------------

SERVICE_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: weather}
spec:
  hosts: [api.weather.example]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
"""


def weather(calls: list[str]) -> FastAPI:
    app = FastAPI()

    @app.get("/{path:path}")
    async def forecast(path: str, request: Request) -> dict[str, Any]:
        calls.append(request.url.path)
        return {"forecast": "sunny", "in_mesh": meshlab.current_replica() is not None}

    return app


def frontend() -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def page() -> dict[str, Any]:
        r = await meshlab.client().get("http://api.weather.example/today")
        return {"status": r.status_code, "body": r.json() if r.status_code == 200 else r.text}

    return app


def test_service_entry_makes_an_external_service_reachable() -> None:
    calls: list[str] = []
    with Mesh(seed=0, outbound_traffic_policy="REGISTRY_ONLY") as mesh:
        _service_entry_opens_the_way(mesh, calls)


def test_allow_any_passes_unregistered_hosts_through(mesh: Mesh) -> None:
    calls: list[str] = []
    mesh.external("api.weather.example", weather(calls))
    mesh.deploy("frontend", frontend())
    assert mesh.call("frontend", "/").json()["status"] == 200 and calls == ["/today"]
    log = mesh.access_log(pod="frontend-v1-0", reporter="source")
    assert log["upstream_cluster"].iloc[-1].startswith("PassthroughCluster")


def _service_entry_opens_the_way(mesh: Mesh, calls: list[str]) -> None:
    address = mesh.external("api.weather.example", weather(calls))
    assert address.startswith("127.0.0.1:")
    mesh.deploy("frontend", frontend())
    before = mesh.call("frontend", "/").json()
    assert before["status"] == 502 and calls == []  # REGISTRY_ONLY: BlackHoleCluster
    mesh.apply(SERVICE_ENTRY)
    after = mesh.call("frontend", "/").json()
    assert after == {"status": 200, "body": {"forecast": "sunny", "in_mesh": False}}
    assert calls == ["/today"]
    r = mesh.call("api.weather.example", "/tomorrow")  # from the client workload too
    assert r.status_code == 200 and calls[-1] == "/tomorrow"
    clusters = mesh.proxy_config("frontend", "clusters")
    assert "api.weather.example" in set(clusters["service"])


def test_virtual_service_on_an_external_host(mesh: Mesh) -> None:
    calls: list[str] = []
    mesh.external("api.weather.example", weather(calls))
    mesh.apply(SERVICE_ENTRY + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: weather}
spec:
  hosts: [api.weather.example]
  http:
  - match: [{uri: {prefix: /v1/}}]
    rewrite: {uri: /}
    route: [{destination: {host: api.weather.example}}]
""")
    assert mesh.call("api.weather.example", "/v1/today").status_code == 200
    assert calls == ["/today"]
    assert mesh.call("api.weather.example", "/today").status_code == 404
