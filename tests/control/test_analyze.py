"""``analyze`` (istioctl analyze in small): one test per finding code, a clean configuration gives
no message, and ``mesh.analyze()`` checks against the services actually running."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi import FastAPI

from meshlab import Mesh
from meshlab.config import Resource, load
from meshlab.config.virtual_service import VirtualService
from meshlab.control.analyze import Analysis, Message, analyze

BOOKINFO = Path(__file__).resolve().parents[2].parent / "shared" / "istio" / "bookinfo-networking"
REVIEWS = "reviews.default.svc.cluster.local"
#: the running services, as Mesh.analyze() describes them: FQDN -> pod labels seen
SERVICES = {REVIEWS: {"app": {"reviews"}, "version": {"v1", "v2"}},
            "ratings.default.svc.cluster.local": {"app": {"ratings"}, "version": {"v1"}}}

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


def vs(name: str, route: str, hosts: str = "[reviews]", gateways: str | None = None) -> str:
    gw = f"\n  gateways: {gateways}" if gateways else ""
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}}}
spec:
  hosts: {hosts}{gw}
  http:
  - route: {route}
"""


def gateway(name: str = "edge") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: {name}}}
spec:
  selector: {{istio: ingressgateway}}
  servers: [{{port: {{number: 80, name: http, protocol: HTTP}}, hosts: ["*"]}}]
"""


def run(*docs: str, services: dict | None = SERVICES) -> Analysis:
    return analyze(load("---".join(docs)), services)


def codes(result: Analysis) -> list[tuple[str, str, str]]:
    return [(m.level, m.code, m.resource) for m in result]


def test_clean_configuration_has_no_messages() -> None:
    result = run(DR, vs("reviews", "[{destination: {host: reviews, subset: v1}}]"))
    assert result == []
    assert repr(result) == "✔ No validation issues found when analyzing the mesh."
    assert result.errors == [] and result.df.empty


def test_ist0101_host_not_found() -> None:
    result = run(vs("ghost", "[{destination: {host: ghost}}]", hosts="[ghost]"))
    assert codes(result) == [("Error", "IST0101", "VirtualService/default/ghost")]
    assert "'ghost'" in result[0].text and "spec.http[0].route[0].destination.host" in result[0].text
    dr = run(DR.replace("host: reviews", "host: ghost"))
    assert codes(dr) == [("Error", "IST0101", "DestinationRule/default/reviews")]


def test_ist0101_subset_not_found() -> None:
    result = run(DR, vs("reviews", "[{destination: {host: reviews, subset: v3}}]"))
    assert codes(result) == [("Error", "IST0101", "VirtualService/default/reviews")]
    assert '"reviews+v3"' in result[0].text and "503 NC" in result[0].text
    no_rule = run(vs("reviews", "[{destination: {host: reviews, subset: v1}}]"))
    assert codes(no_rule) == [("Error", "IST0101", "VirtualService/default/reviews")]


def test_ist0101_gateway_not_found() -> None:
    result = run(vs("edge", "[{destination: {host: reviews}}]", hosts='["*"]', gateways="[missing]"))
    assert codes(result) == [("Error", "IST0101", "VirtualService/default/edge")]
    assert "gateway" in result[0].text and "'missing'" in result[0].text


def test_gateway_in_another_namespace_is_found() -> None:
    gw = gateway().replace("metadata: {name: edge}", "metadata: {name: edge, namespace: istio-system}")
    result = run(gw, vs("edge", "[{destination: {host: reviews}}]", hosts='["*"]',
                        gateways="[istio-system/edge]"))
    assert result == []


def test_ist0109_conflicting_hosts() -> None:
    result = run(DR, vs("one", "[{destination: {host: reviews, subset: v1}}]"),
                 vs("two", "[{destination: {host: reviews, subset: v2}}]",
                    hosts="[reviews.default.svc.cluster.local]"))
    assert codes(result) == [("Error", "IST0109", "VirtualService/default/two")]
    assert "VirtualService/default/one" in result[0].text


def test_same_host_on_a_gateway_is_not_a_conflict() -> None:
    result = run(DR, gateway(), vs("one", "[{destination: {host: reviews, subset: v1}}]"),
                 vs("two", "[{destination: {host: reviews, subset: v2}}]", gateways="[edge]"))
    assert result == []


def test_ml0002_weights_not_adding_up_to_100() -> None:
    """Validation refuses such weights in YAML, so build the resource directly (as a program might)."""
    spec = VirtualService.model_validate({"hosts": ["reviews"], "http": [{"route": [
        {"destination": {"host": "reviews", "subset": "v1"}, "weight": 50},
        {"destination": {"host": "reviews", "subset": "v2"}, "weight": 30}]}]})
    res = Resource("VirtualService", "networking.istio.io/v1", "reviews", "default", spec, {})
    result = analyze([*load(DR), res], SERVICES)
    assert codes(result) == [("Warning", "ML0002", "VirtualService/default/reviews")]
    assert "80" in result[0].text
    assert result.errors == []


def test_ml0003_unbound_gateway() -> None:
    result = run(gateway())
    assert codes(result) == [("Warning", "ML0003", "Gateway/default/edge")]
    bound = run(gateway(), vs("edge", "[{destination: {host: reviews}}]", hosts='["*"]', gateways="[edge]"))
    assert bound == []


def test_ml0001_subset_selects_no_pod() -> None:
    result = run(DR.replace("version: v2", "version: v7"))
    assert codes(result) == [("Info", "ML0001", "DestinationRule/default/reviews")]
    assert result.errors == []


def test_without_services_hosts_are_not_checked() -> None:
    result = run(vs("ghost", "[{destination: {host: ghost}}]", hosts="[ghost]"), services=None)
    assert result == []
    assert codes(run(vs("r", "[{destination: {host: reviews, subset: v1}}]"), services=None)) == [
        ("Error", "IST0101", "VirtualService/default/r")]


def test_service_entry_hosts_are_known() -> None:
    se = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
"""
    assert run(se, vs("api", "[{destination: {host: api.example.com}}]", hosts="[api.example.com]")) == []


def test_message_and_analysis_formatting() -> None:
    m = Message("Error", "IST0101", "VirtualService/default/x", "Referenced host not found")
    assert str(m) == "Error [IST0101] (VirtualService/default/x) Referenced host not found"
    a = Analysis([m])
    assert repr(a) == str(m)
    assert list(a.df.columns) == ["level", "code", "resource", "text"]


@pytest.mark.skipif(not BOOKINFO.is_dir(), reason="../shared/istio/bookinfo-networking is missing")
def test_bookinfo_samples_are_clean_together() -> None:
    resources = load([BOOKINFO / "destination-rule-all.yaml", BOOKINFO / "virtual-service-all-v1.yaml",
                      BOOKINFO / "bookinfo-gateway.yaml"])
    assert analyze(resources, None) == []


# -- against a running mesh ------------------------------------------------------------------

def test_mesh_analyze_uses_running_services(mesh: Mesh) -> None:
    mesh.deploy("reviews", FastAPI(), version="v1")
    mesh.apply(DR + "---" + vs("reviews", "[{destination: {host: reviews, subset: v2}}]"))
    result = mesh.analyze()
    assert codes(result) == [("Info", "ML0001", "DestinationRule/default/reviews")]  # no v2 pod yet
    mesh.deploy("reviews", FastAPI(), version="v2")
    assert mesh.analyze() == []
    mesh.apply(vs("ratings", "[{destination: {host: ratings}}]", hosts="[ratings]"))
    assert codes(mesh.analyze()) == [("Error", "IST0101", "VirtualService/default/ratings")]


SERVICE_ENTRY = """
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api}
spec:
  hosts: [api.example.com]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}]
"""


def test_mesh_analyze_external_service_with_service_entry(mesh: Mesh) -> None:
    mesh.external("api.example.com", FastAPI())
    mesh.apply(SERVICE_ENTRY + "---" + vs("api", "[{destination: {host: api.example.com}}]",
                                          hosts="[api.example.com]"))
    assert mesh.analyze() == []



def test_mesh_analyze_external_service_without_service_entry(mesh: Mesh) -> None:
    mesh.external("api.example.com", FastAPI())
    mesh.apply(vs("api", "[{destination: {host: api.example.com}}]", hosts="[api.example.com]"))
    r = mesh.call("api.example.com", "/")
    assert (r.status_code, r.headers["x-meshlab-response-flags"]) == (503, "NC")
    assert codes(mesh.analyze()) == [("Error", "IST0101", "VirtualService/default/api")]
