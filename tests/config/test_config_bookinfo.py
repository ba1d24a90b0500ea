"""Istio's Bookinfo samples load, read back the values written in them, round-trip, and the exported
documents pass Istio's CRD schema (../shared/tools/istio-schema-check)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from meshlab.config import load, parse_duration

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
BOOKINFO = SHARED / "istio" / "bookinfo-networking"
SCHEMA_CHECK = SHARED / "tools" / "istio-schema-check"

pytestmark = pytest.mark.skipif(not BOOKINFO.is_dir(), reason="../shared/istio/bookinfo-networking is missing")


def _one(name: str, kind: str = "VirtualService", resource: str | None = None):
    found = [r for r in load(BOOKINFO / name) if r.kind == kind and (resource is None or r.name == resource)]
    assert len(found) == 1, found
    return found[0]


def test_every_bookinfo_document_loads() -> None:
    files = sorted(BOOKINFO.glob("*.yaml"))
    expected = sum(1 for f in files for doc in yaml.safe_load_all(f.read_text()) if doc)
    resources = load(BOOKINFO)
    assert len(resources) == expected
    assert {r.source for r in resources} == {str(f) for f in files}
    assert all(r.warnings == [] for r in resources)


def test_weights_80_20() -> None:
    vs = _one("virtual-service-reviews-80-20.yaml")
    route = vs.spec.http[0].route
    assert [(d.destination.host, d.destination.subset, d.weight) for d in route] == [
        ("reviews", "v1", 80), ("reviews", "v2", 20)]
    assert vs.api_version == "networking.istio.io/v1"
    assert vs.key == ("VirtualService", "default", "reviews")


def test_jason_header_match() -> None:
    vs = _one("virtual-service-reviews-jason-v2-v3.yaml")
    first, fallback = vs.spec.http
    assert first.match[0].headers["end-user"].exact == "jason"
    assert first.match[0].headers["end-user"].prefix is None
    assert first.route[0].destination.subset == "v2"
    assert fallback.match is None and fallback.route[0].destination.subset == "v3"


def test_fault_injection_values() -> None:
    abort = _one("fault-injection-details-v1.yaml").spec.http[0].fault.abort
    assert (abort.httpStatus, abort.percentage.value) == (555, 100.0)
    delay = _one("virtual-service-ratings-test-delay.yaml").spec.http[0].fault.delay
    assert delay.fixedDelay == "7s" and parse_duration(delay.fixedDelay) == 7.0
    assert delay.percentage.value == 100.0 and delay.percent is None


def test_gateway_and_its_virtual_service() -> None:
    gw = _one("bookinfo-gateway.yaml", "Gateway")
    server = gw.spec.servers[0]
    assert (server.port.number, server.port.protocol, server.hosts) == (8080, "HTTP", ["*"])
    assert gw.spec.selector == {"istio": "ingressgateway"}
    vs = _one("bookinfo-gateway.yaml")
    assert vs.spec.gateways == ["bookinfo-gateway"]
    uris = [(m.uri.exact, m.uri.prefix) for m in vs.spec.http[0].match]
    assert uris[:2] == [("/productpage", None), (None, "/static")]
    assert vs.spec.http[0].route[0].destination.port.number == 9080


def test_namespaces_default_or_explicit() -> None:
    assert {r.namespace for r in load(BOOKINFO / "certmanager-gateway.yaml")} == {"istio-system"}
    assert {r.namespace for r in load(BOOKINFO / "bookinfo-gateway.yaml", default_namespace="shop")} == {"shop"}


def test_destination_rules() -> None:
    mtls = _one("destination-rule-all-mtls.yaml", "DestinationRule", "ratings")
    assert mtls.spec.trafficPolicy.tls.mode == "ISTIO_MUTUAL"
    assert [s.name for s in mtls.spec.subsets] == ["v1", "v2", "v2-mysql", "v2-mysql-vm"]
    assert mtls.spec.subsets[3].labels == {"version": "v2-mysql-vm"}
    lb = _one("destination-rule-reviews.yaml", "DestinationRule").spec.trafficPolicy.loadBalancer
    assert lb.simple == "RANDOM"
    egress = _one("egress-rule-google-apis.yaml", "DestinationRule").spec.trafficPolicy
    assert egress.portLevelSettings[0].port.number == 443 and egress.portLevelSettings[0].tls.mode == "SIMPLE"
    se = _one("egress-rule-google-apis.yaml", "ServiceEntry")
    assert se.spec.resolution == "DNS" and [p.number for p in se.spec.ports] == [80, 443]


def test_deprecated_percent_next_to_percentage_and_v1alpha3() -> None:
    """Real YAML mixes API versions and the deprecated integer ``percent`` with ``percentage.value``."""
    [vs] = load("""
apiVersion: networking.istio.io/v1alpha3
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - fault:
      delay: {percent: 10, fixedDelay: 5s}
      abort: {percentage: {value: 0.1}, httpStatus: 400}
    route:
    - destination: {host: ratings, subset: v1}
""")
    assert vs.api_version == "networking.istio.io/v1alpha3"
    fault = vs.spec.http[0].fault
    assert fault.delay.percent == 10 and fault.delay.percentage is None
    assert fault.abort.percentage.value == 0.1
    assert vs.to_dict()["spec"]["http"][0]["fault"]["delay"] == {"percent": 10, "fixedDelay": "5s"}


def test_round_trip_to_dict_and_yaml() -> None:
    for resource in load(BOOKINFO):
        document = resource.to_dict()
        assert set(document) == {"apiVersion", "kind", "metadata", "spec"}
        [again] = load(document)
        assert again.to_dict() == document
        assert again.key == resource.key
        [from_yaml] = load(yaml.safe_dump(document))
        assert from_yaml.to_dict() == document
        assert from_yaml.spec == resource.spec


def test_to_dict_keeps_only_written_fields() -> None:
    raw = yaml.safe_load((BOOKINFO / "virtual-service-reviews-80-20.yaml").read_text())
    [vs] = load(raw)
    assert vs.to_dict()["spec"] == raw["spec"]
    assert vs.to_dict()["metadata"] == {"name": "reviews", "namespace": "default"}
    assert vs.raw is raw


@pytest.mark.skipif(not SCHEMA_CHECK.exists(), reason="../shared/tools/istio-schema-check is missing")
def test_exported_documents_pass_istio_crd_schema(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        documents = [r.to_dict() for r in load(BOOKINFO)]
    exported = tmp_path / "bookinfo-export.yaml"
    exported.write_text(yaml.safe_dump_all(documents))
    # A control document with an invented field shows that the same run can reject something.
    control = tmp_path / "control.yaml"
    control.write_text(yaml.safe_dump({**documents[0], "spec": {**documents[0]["spec"], "inventedField": True}}))
    result = subprocess.run([sys.executable, str(SCHEMA_CHECK), str(exported), str(control)],
                            capture_output=True, text=True, timeout=120)
    invalid = [line for line in result.stdout.splitlines() if line.startswith("INVALID")]
    assert invalid and all("control.yaml" in line and "inventedField" in line for line in invalid), result.stdout
    assert f"{len(documents) + 1} Istio documents checked, 1 invalid" in result.stdout
    assert result.returncode == 1
