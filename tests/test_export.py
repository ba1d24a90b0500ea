"""``meshlab.export``: the running mesh as Kubernetes + Istio manifests.

Every Kubernetes document is checked against the Kubernetes JSON schemas (kubernetes-validate,
strict: unknown fields fail); every Istio document against Istio's CRD schemas
(``../shared/tools/istio-schema-check``); and the Istio documents, re-applied to a fresh mesh,
must give the same routing (proxy-config tables and the versions that answer)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
import yaml

from meshlab import Mesh
from meshlab.apps import bookinfo, shop
from meshlab.config import load
from meshlab.export import (
    GENERATED,
    image_for,
    istio_documents,
    manifests,
    manifests_from_resources,
    parse_images,
    write_files,
    write_manifests,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
SCHEMA_CHECK = SHARED / "tools" / "istio-schema-check"
BOOKINFO = SHARED / "istio" / "bookinfo-networking"
CORPUS = SHARED / "istio" / "validation-testdata"
K8S_VERSION = "1.30"  # the manifests use only long-stable fields: an older release and the newest both accept them

needs_samples = pytest.mark.skipif(not BOOKINFO.is_dir(), reason="../shared/istio/bookinfo-networking is missing")
needs_schema_check = pytest.mark.skipif(not SCHEMA_CHECK.is_file(), reason="../shared/tools/istio-schema-check is missing")

PEER_AUTH = """\
apiVersion: security.istio.io/v1beta1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec:
  mtls: {mode: STRICT}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ratings-viewer}
spec:
  selector: {matchLabels: {app: ratings}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/bookinfo-reviews]}}]
    to: [{operation: {methods: [GET]}}]
"""


def sample(name: str) -> Path:
    return BOOKINFO / name


def docs_of(text: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(text) if d]


def all_docs(files: dict[str, str]) -> list[dict[str, Any]]:
    return [d for name, text in sorted(files.items()) if name.endswith(".yaml") for d in docs_of(text)]


def run_schema_check(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCHEMA_CHECK), str(path)], capture_output=True, text=True, timeout=120)


def configure_bookinfo(mesh: Mesh) -> None:
    """Bookinfo with subsets (one DestinationRule file written as v1alpha3), jason to v2 and
    everyone else to v3, the ingress gateway, a fault, mTLS STRICT and an AuthorizationPolicy."""
    bookinfo.deploy(mesh)
    rules = yaml.safe_load_all(sample("destination-rule-all.yaml").read_text())
    mesh.apply([{**d, "apiVersion": "networking.istio.io/v1alpha3"} for d in rules if d])
    mesh.apply(sample("virtual-service-reviews-jason-v2-v3.yaml"))
    mesh.apply(sample("bookinfo-gateway.yaml"))
    mesh.apply(sample("fault-injection-details-v1.yaml"))
    mesh.apply(PEER_AUTH)


@pytest.fixture
def bookinfo_mesh() -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = Mesh(seed=0).start()
        try:
            configure_bookinfo(m)
            yield m
        finally:
            m.stop()


# -- the files ------------------------------------------------------------------------------------

@needs_samples
def test_file_names_and_kinds(bookinfo_mesh: Mesh) -> None:
    files = manifests(bookinfo_mesh)
    assert sorted(files) == ["00-namespace.yaml", "10-details.yaml", "10-productpage.yaml", "10-ratings.yaml",
                             "10-reviews.yaml", "20-istio.yaml", "README.md"]
    for name, text in files.items():
        if name.endswith(".yaml"):
            assert text.startswith(GENERATED + "\n")
    [ns] = docs_of(files["00-namespace.yaml"])
    assert ns == {"apiVersion": "v1", "kind": "Namespace",
                  "metadata": {"name": "default", "labels": {"istio-injection": "enabled"}}}
    kinds = [d["kind"] for d in docs_of(files["10-reviews.yaml"])]
    assert kinds == ["ServiceAccount", "Service", "Deployment", "Deployment", "Deployment"]
    istio = docs_of(files["20-istio.yaml"])
    assert {d["apiVersion"] for d in istio} == {"networking.istio.io/v1", "security.istio.io/v1"}
    assert len(istio) == len(bookinfo_mesh.config_store.list()) == 10


@needs_samples
def test_service_deployments_and_accounts(bookinfo_mesh: Mesh) -> None:
    bookinfo_mesh.scale("reviews", 2, version="v2")
    bookinfo_mesh.scale("reviews", 0, version="v3")
    sa, svc, *deps = docs_of(manifests(bookinfo_mesh)["10-reviews.yaml"])
    assert sa["metadata"] == {"name": "bookinfo-reviews", "namespace": "default"}
    assert svc["spec"] == {"selector": {"app": "reviews"},
                           "ports": [{"name": "http", "port": 9080, "targetPort": 9080}]}
    assert [(d["metadata"]["name"], d["spec"]["replicas"]) for d in deps] == [
        ("reviews-v1", 1), ("reviews-v2", 2), ("reviews-v3", 0)]
    v2 = deps[1]["spec"]
    assert v2["selector"]["matchLabels"] == {"app": "reviews", "version": "v2"}
    assert v2["template"]["metadata"]["labels"] == {"app": "reviews", "version": "v2"}
    pod = v2["template"]["spec"]
    assert pod["serviceAccountName"] == "bookinfo-reviews"
    [container] = pod["containers"]
    assert container["image"] == "REPLACE-ME/reviews:v2"
    assert container["ports"] == [{"name": "http", "containerPort": 9080}]


def test_extra_labels_namespaces_and_default_service_account() -> None:
    with Mesh(seed=0) as mesh:
        shop.deploy_microservices(mesh, namespace="shop")
        mesh.deploy("hello", bookinfo.details(), labels={"tier": "front"})
        mesh.apply("apiVersion: security.istio.io/v1\nkind: PeerAuthentication\n"
                   "metadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n")
        files = manifests(mesh)
    assert "10-cart.shop.yaml" in files and "10-hello.yaml" in files
    assert [d["metadata"]["name"] for d in docs_of(files["00-namespace.yaml"])] == ["default", "shop"]
    sa, svc, dep = docs_of(files["10-hello.yaml"])
    assert sa["metadata"]["name"] == "hello" and svc["spec"]["ports"][0]["port"] == 80
    assert dep["spec"]["template"]["metadata"]["labels"] == {"app": "hello", "version": "v1", "tier": "front"}
    assert dep["spec"]["selector"]["matchLabels"] == {"app": "hello", "version": "v1"}
    assert docs_of(files["10-cart.shop.yaml"])[1]["metadata"]["namespace"] == "shop"
    [pa] = docs_of(files["20-istio.yaml"])
    assert pa["metadata"]["namespace"] == "istio-system"


def test_empty_mesh_has_a_namespace_and_a_readme() -> None:
    with Mesh(seed=0) as mesh:
        files = manifests(mesh)
    assert sorted(files) == ["00-namespace.yaml", "README.md"]


@needs_samples
def test_output_is_deterministic(bookinfo_mesh: Mesh) -> None:
    assert manifests(bookinfo_mesh) == manifests(bookinfo_mesh)


@needs_samples
def test_readme_names_files_and_commands(bookinfo_mesh: Mesh) -> None:
    text = manifests(bookinfo_mesh)["README.md"]
    for expected in ("`10-reviews.yaml`", "istioctl install --set profile=demo -y", "kubectl apply -f 00-namespace.yaml",
                     "kubectl apply -f .", "REPLACE-ME/reviews:v3", "samples/addons", "istioctl dashboard kiali"):
        assert expected in text
    assert "REPLACE-ME" not in manifests(bookinfo_mesh, image="img/{service}:{version}")["README.md"]


def test_readme_carries_the_outbound_traffic_policy() -> None:
    with Mesh(seed=0, outbound_traffic_policy="REGISTRY_ONLY") as mesh:
        text = manifests(mesh)["README.md"]
    assert "--set meshConfig.outboundTrafficPolicy.mode=REGISTRY_ONLY" in text


# -- images ---------------------------------------------------------------------------------------

def test_image_forms() -> None:
    assert image_for(None, "reviews", "v2") == "REPLACE-ME/reviews:v2"
    assert image_for("docker.io/istio/examples-bookinfo-{service}-{version}:1.20.3", "reviews", "v2") == \
        "docker.io/istio/examples-bookinfo-reviews-v2:1.20.3"
    mapping = {"reviews": "r/{version}", "reviews:v3": "r3:1", "ratings": "rt:1"}
    assert [image_for(mapping, "reviews", v) for v in ("v1", "v3")] == ["r/v1", "r3:1"]
    assert image_for(mapping, "details", "v1") == "REPLACE-ME/details:v1"
    assert parse_images("reviews=r:1, ratings:v1=localhost:5000/rt:2") == {"reviews": "r:1",
                                                                           "ratings:v1": "localhost:5000/rt:2"}
    assert image_for("reviews=r:1,ratings=rt:2", "ratings", "v1") == "rt:2"
    with pytest.raises(ValueError, match="SERVICE=IMAGE"):
        parse_images("reviews=r:1,oops")
    with pytest.raises(ValueError, match="only {service}, {version}, {namespace}"):
        image_for("img/{app}", "reviews", "v1")


@needs_samples
def test_images_reach_the_deployments(bookinfo_mesh: Mesh) -> None:
    files = manifests(bookinfo_mesh, image={"reviews": "registry.example/reviews:{version}"})
    images = {d["metadata"]["name"]: d["spec"]["template"]["spec"]["containers"][0]["image"]
              for d in all_docs(files) if d["kind"] == "Deployment"}
    assert images == {"details-v1": "REPLACE-ME/details:v1", "productpage-v1": "REPLACE-ME/productpage:v1",
                      "ratings-v1": "REPLACE-ME/ratings:v1", "reviews-v1": "registry.example/reviews:v1",
                      "reviews-v2": "registry.example/reviews:v2", "reviews-v3": "registry.example/reviews:v3"}


# -- schemas --------------------------------------------------------------------------------------

@needs_samples
def test_kubernetes_documents_are_valid_for_their_kind(bookinfo_mesh: Mesh) -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    kube = [d for d in all_docs(manifests(bookinfo_mesh)) if ".istio.io/" not in d["apiVersion"]]
    assert len(kube) == 1 + 4 * 2 + 6  # Namespace; ServiceAccount + Service per service; 6 Deployments
    for version in (K8S_VERSION, kv.latest_version()):
        for doc in kube:
            kv.validate(doc, version, strict=True)


def test_the_kubernetes_validator_catches_mistakes() -> None:
    kv = pytest.importorskip("kubernetes_validate", reason="kubernetes-validate is not installed")
    with Mesh(seed=0) as mesh:
        mesh.deploy("hello", bookinfo.details())
        dep = next(d for d in all_docs(manifests(mesh)) if d["kind"] == "Deployment")
    dep["spec"]["replicas"] = "2"
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, K8S_VERSION, strict=True)
    dep["spec"]["replicas"] = 2
    dep["spec"]["template"]["spec"]["serviceAccount_name"] = "x"
    with pytest.raises(kv.ValidationError):
        kv.validate(dep, K8S_VERSION, strict=True)


@needs_samples
@needs_schema_check
def test_istio_documents_pass_istios_schemas(bookinfo_mesh: Mesh, tmp_path: Path) -> None:
    write_manifests(bookinfo_mesh, tmp_path)
    result = run_schema_check(tmp_path)
    assert result.returncode == 0, result.stdout
    assert result.stdout.strip().splitlines()[-1] == "10 Istio documents checked, 0 invalid, 15 non-Istio skipped"


@needs_schema_check
@pytest.mark.skipif(not CORPUS.is_dir(), reason="../shared/istio/validation-testdata is missing")
def test_istios_valid_corpus_re_serialised_as_v1_passes_the_schemas(tmp_path: Path) -> None:
    """Istio's own valid documents (v1alpha3, v1beta1 and v1) through load -> v1 -> schema check."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        resources = load([CORPUS / f"{k}-valid.yaml" for k in ("destinationrule", "serviceentry", "peerauth",
                                                               "authz", "reqauth")])
    docs = istio_documents(resources)
    assert len(docs) == len(resources) > 10
    assert all(d["apiVersion"].endswith("/v1") for d in docs)
    (tmp_path / "corpus.yaml").write_text(yaml.safe_dump_all(docs, sort_keys=False))
    result = run_schema_check(tmp_path)
    assert result.returncode == 0, result.stdout


# -- writing --------------------------------------------------------------------------------------

@needs_samples
def test_write_replaces_a_previous_export_and_keeps_other_files(bookinfo_mesh: Mesh, tmp_path: Path) -> None:
    (tmp_path / "10-gone.yaml").write_text(f"{GENERATED}\n---\nkind: Service\n")
    (tmp_path / "mine.yaml").write_text("# my own notes\n")
    paths = bookinfo_mesh.export_k8s(tmp_path)
    assert [p.name for p in paths] == sorted(manifests(bookinfo_mesh))
    assert not (tmp_path / "10-gone.yaml").exists()
    assert (tmp_path / "mine.yaml").read_text() == "# my own notes\n"
    assert (tmp_path / "20-istio.yaml").read_text() == manifests(bookinfo_mesh)["20-istio.yaml"]


def test_write_refuses_a_file_as_folder(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(NotADirectoryError):
        write_files({"README.md": "x"}, tmp_path / "f")


@needs_samples
def test_from_files_only_istio(tmp_path: Path) -> None:
    files = manifests_from_resources(load(sample("virtual-service-all-v1.yaml")))
    assert sorted(files) == ["20-istio.yaml", "README.md"]
    assert [d["kind"] for d in docs_of(files["20-istio.yaml"])] == ["VirtualService"] * 4
    assert "kubectl apply -f 00-namespace.yaml" not in files["README.md"]


@needs_samples
def test_admin_api_serves_the_same_export(bookinfo_mesh: Mesh) -> None:
    address = bookinfo_mesh.serve_admin(write_context=False)
    r = httpx.get(f"http://{address}/export", params={"image": "reviews=r:1"}, timeout=30, trust_env=False)
    assert r.status_code == 200
    assert r.json() == manifests(bookinfo_mesh, image="reviews=r:1")


# -- round trip -----------------------------------------------------------------------------------

WORKLOADS = ("curl", "productpage-v1-0", "reviews-v2-0", "istio-ingressgateway")


def routing(mesh: Mesh) -> dict[str, Any]:
    """What decides where requests go: every proxy's routes and clusters, and who answers."""
    seen: dict[str, Any] = {}
    for w in WORKLOADS:
        for what in ("routes", "clusters"):
            seen[f"{w} {what}"] = mesh.proxy_config(w, what)
    for user in ("jason", None):
        headers = {"end-user": user} if user else None
        versions = [mesh.call("reviews", "/reviews/0", headers=headers).json()["version"] for _ in range(20)]
        seen[f"reviews as {user}"] = sorted(set(versions))
    seen["details"] = [mesh.call("details", "/details/0").status_code for _ in range(3)]
    return seen


@needs_samples
def test_round_trip_gives_the_same_routing(tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with Mesh(seed=0) as original:
            configure_bookinfo(original)
            before = routing(original)
            specs = {r.key: r.to_dict()["spec"] for r in original.config_store.list()}
            original.export_k8s(tmp_path)
        with Mesh(seed=0) as fresh:
            bookinfo.deploy(fresh)
            fresh.apply(tmp_path / "20-istio.yaml")
            after = routing(fresh)
            assert {r.key: r.to_dict()["spec"] for r in fresh.config_store.list()} == specs
            assert {r.api_version for r in fresh.config_store.list()} == {"networking.istio.io/v1",
                                                                         "security.istio.io/v1"}
    assert before.keys() == after.keys()
    for key, value in before.items():
        if isinstance(value, pd.DataFrame):
            pd.testing.assert_frame_equal(value, after[key], obj=key)
        else:
            assert value == after[key], key
    assert before["reviews as jason"] == ["v2"] and before["reviews as None"] == ["v3"]
    assert before["details"] == [555, 555, 555]  # fault-injection-details-v1.yaml: abort 555 for everyone
