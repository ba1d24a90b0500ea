"""Fidelity: Istio's own Bookinfo routing samples, applied unchanged, give Istio's outcomes.

The samples are read from ``../shared/istio/bookinfo-networking`` (taken unchanged from
istio/istio's samples/bookinfo/networking); every test is skipped when that folder is missing.
Bookinfo runs as in Istio's tasks (``meshlab.apps.bookinfo``: productpage, details, reviews
v1/v2/v3, ratings, all on port 9080) with ``destination-rule-all.yaml`` applied first.

Weighted splits are checked on 1000 sequential seeded calls against a binomial bound
(4.5 standard deviations: a correct implementation fails about once in 150 000 seeds), and the
seeded count must be identical in two fresh meshes with the same seed.
"""

from __future__ import annotations

import copy
import math
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from meshlab import Mesh
from meshlab.apps import bookinfo
from meshlab.config import load
from meshlab.proxy.filters.fault import fault_percentage

BOOKINFO = Path(__file__).resolve().parents[1].parent / "shared" / "istio" / "bookinfo-networking"

pytestmark = pytest.mark.skipif(
    not BOOKINFO.is_dir(),
    reason=f"Istio's Bookinfo samples are not at {BOOKINFO} (../shared/istio/bookinfo-networking "
           "relative to the repository root); the fidelity tests need them unchanged")

N = 1000  # sequential calls per weighted split


def sample(name: str) -> Path:
    return BOOKINFO / name


def start(seed: int) -> Mesh:
    """A fresh mesh with Bookinfo deployed and destination-rule-all applied (stop it yourself)."""
    mesh = Mesh(seed=seed).start()
    bookinfo.deploy(mesh)
    mesh.apply(sample("destination-rule-all.yaml"))
    return mesh


@pytest.fixture
def mesh(mesh: Mesh) -> Mesh:
    """conftest's ``mesh`` (seed 0) with Bookinfo deployed and destination-rule-all applied."""
    bookinfo.deploy(mesh)
    mesh.apply(sample("destination-rule-all.yaml"))
    return mesh


def page(mesh: Mesh, user: str | None = None) -> dict[str, Any]:
    headers = {"cookie": f"user={user}"} if user else None
    r = mesh.call("productpage", "/api/v1/products/0", headers=headers)
    assert r.status_code == 200
    return r.json()


def stars(p: dict[str, Any]) -> str | None:
    """What the page shows for the reviews: no stars (v1), black (v2) or red (v3)."""
    colours = {rv.get("rating", {}).get("color") for rv in p["reviews"]["reviews"]}
    assert len(colours) == 1
    return colours.pop()


def reviews_split(mesh: Mesh, n: int = N) -> tuple[Counter[str], list[str]]:
    """``n`` sequential calls to reviews from the client workload: versions seen, in order."""
    res = mesh.load("reviews", "/reviews/0", concurrency=1, requests=n, progress=False)
    assert set(res.df["status"]) == {200}
    seq = list(res.df["version"])
    return Counter(seq), seq


def within_binomial(count: int, n: int, percent: float, z: float = 4.5) -> bool:
    p = percent / 100
    return abs(count - n * p) <= z * math.sqrt(n * p * (1 - p))


# -- request routing ---------------------------------------------------------------------------

def test_samples_load_without_warnings() -> None:
    resources = load(BOOKINFO)
    assert resources and all(r.warnings == [] for r in resources)


def test_without_routing_rules_reviews_rotate_over_versions(mesh: Mesh) -> None:
    counts, _ = reviews_split(mesh, 60)
    assert set(counts) == {"v1", "v2", "v3"}


def test_virtual_service_all_v1(mesh: Mesh) -> None:
    mesh.apply(sample("virtual-service-all-v1.yaml"))
    for user in (None, "jason"):
        for _ in range(10):
            p = page(mesh, user)
            assert p["reviews"]["version"] == "v1" and stars(p) is None
            assert p["details"]["version"] == "v1"
    counts, _ = reviews_split(mesh, 100)
    assert counts == {"v1": 100}


def test_jason_v2_v3(mesh: Mesh) -> None:
    mesh.apply(sample("virtual-service-all-v1.yaml"))
    mesh.apply(sample("virtual-service-reviews-jason-v2-v3.yaml"))
    for _ in range(10):
        jason = page(mesh, "jason")
        assert (jason["reviews"]["version"], stars(jason)) == ("v2", "black")
        anonymous = page(mesh)
        assert (anonymous["reviews"]["version"], stars(anonymous)) == ("v3", "red")
        other = page(mesh, "alice")
        assert other["reviews"]["version"] == "v3"
    # the header itself, straight to reviews: exact match, lowercase name
    assert mesh.call("reviews", "/reviews/0", headers={"End-User": "jason"}).json()["version"] == "v2"
    assert mesh.call("reviews", "/reviews/0", headers={"end-user": "Jason"}).json()["version"] == "v3"


def test_reviews_test_v2(mesh: Mesh) -> None:
    mesh.apply(sample("virtual-service-all-v1.yaml"))
    mesh.apply(sample("virtual-service-reviews-test-v2.yaml"))
    for _ in range(5):
        assert page(mesh, "jason")["reviews"]["version"] == "v2"
        assert page(mesh)["reviews"]["version"] == "v1"


def test_reviews_v3(mesh: Mesh) -> None:
    mesh.apply(sample("virtual-service-reviews-v3.yaml"))
    for user in (None, "jason"):
        p = page(mesh, user)
        assert (p["reviews"]["version"], stars(p)) == ("v3", "red")
    counts, _ = reviews_split(mesh, 50)
    assert counts == {"v3": 50}


def test_details_v2(mesh: Mesh) -> None:
    mesh.apply(sample("virtual-service-all-v1.yaml"))
    mesh.apply(sample("virtual-service-details-v2.yaml"))
    p = page(mesh)  # no details v2 pod yet: the subset has no endpoints
    assert p["details"] is None and "unavailable" in p["details_error"]
    r = mesh.call("details", "/details/0")
    assert (r.status_code, r.headers["x-meshlab-response-flags"]) == (503, "UH")
    mesh.deploy("details", bookinfo.details("v2"), version="v2", port=bookinfo.PORT)
    for _ in range(5):
        assert page(mesh)["details"]["version"] == "v2"


# -- traffic shifting: seeded weighted splits -----------------------------------------------------

def test_reviews_80_20_is_seeded_and_deterministic() -> None:
    """1000 sequential calls split within the binomial bound, and two fresh meshes with the same
    seed make the very same draws; another seed makes other draws."""
    runs = []
    for seed, n in ((0, N), (0, N), (1, 200)):
        mesh = start(seed)
        try:
            mesh.apply(sample("virtual-service-reviews-80-20.yaml"))
            runs.append(reviews_split(mesh, n))
        finally:
            mesh.stop()
    (counts, seq), (counts_again, seq_again), (_, seq_other) = runs
    assert set(counts) == {"v1", "v2"}
    assert within_binomial(counts["v2"], N, 20) and within_binomial(counts["v1"], N, 80), counts
    assert counts_again == counts and seq_again == seq
    assert seq_other != seq[:200]


def test_reviews_90_10(mesh: Mesh) -> None:
    mesh.apply(sample("virtual-service-reviews-90-10.yaml"))
    counts, _ = reviews_split(mesh)
    assert set(counts) == {"v1", "v2"}
    assert within_binomial(counts["v2"], N, 10), counts


@pytest.mark.parametrize(("name", "weights"), [
    ("virtual-service-reviews-50-v3.yaml", {"v1": 50, "v3": 50}),
    ("virtual-service-reviews-v2-v3.yaml", {"v2": 50, "v3": 50}),
])
def test_fifty_fifty(mesh: Mesh, name: str, weights: dict[str, int]) -> None:
    mesh.apply(sample(name))
    counts, _ = reviews_split(mesh, 200)
    assert set(counts) == set(weights)
    assert all(within_binomial(counts[v], 200, p) for v, p in weights.items()), counts


def test_shift_in_steps_like_the_traffic_shifting_task(mesh: Mesh) -> None:
    """Istio's task: all v1, then 50/50 v1/v3, then all v3."""
    expected = {"virtual-service-all-v1.yaml": {"v1"}, "virtual-service-reviews-50-v3.yaml": {"v1", "v3"},
                "virtual-service-reviews-v3.yaml": {"v3"}}
    for name, versions in expected.items():
        mesh.apply(sample(name))
        counts, _ = reviews_split(mesh, 60)
        assert set(counts) == versions, name


# -- ingress -------------------------------------------------------------------------------------

def test_bookinfo_gateway(mesh: Mesh) -> None:
    mesh.apply(sample("bookinfo-gateway.yaml"))
    base = mesh.ingress_url
    r = httpx.get(f"{base}/productpage", timeout=10)
    assert r.status_code == 200 and "The Comedy of Errors" in r.text
    assert httpx.get(f"{base}/api/v1/products/0", timeout=10).json()["product"]["id"] == 0
    assert httpx.get(f"{base}/productpage", headers={"host": "bookinfo.example.com"}, timeout=10).status_code == 200
    r = httpx.get(f"{base}/details/0", timeout=10)  # not among the gateway's routes
    assert (r.status_code, r.headers["x-meshlab-response-flags"]) == (404, "NR")


# -- fault injection: percent and percentage ---------------------------------------------------------
# This copy of the samples only writes ``percentage.value``; the deprecated ``percent`` (integer,
# delay only) is checked on the delay sample with its percentage rewritten in that older form.

def _delay_with_percent(delay: str) -> dict[str, Any]:
    """The ratings delay sample with the deprecated ``percent: 100`` instead of ``percentage``."""
    doc = yaml.safe_load(sample("virtual-service-ratings-test-delay.yaml").read_text())
    fault = doc["spec"]["http"][0]["fault"]["delay"]
    del fault["percentage"]
    fault["percent"] = 100
    fault["fixedDelay"] = delay
    return doc


def test_percent_and_percentage_parse_to_the_same_share() -> None:
    [with_percentage] = load(sample("virtual-service-ratings-test-delay.yaml"))
    [with_percent] = load(_delay_with_percent("7s"))
    new = with_percentage.spec.http[0].fault.delay
    old = with_percent.spec.http[0].fault.delay
    assert (new.percentage.value, new.percent) == (100.0, None)
    assert (old.percentage, old.percent) == (None, 100)
    assert fault_percentage(new) == fault_percentage(old) == 100.0
    [abort] = load(sample("fault-injection-details-v1.yaml"))[:1]
    assert fault_percentage(abort.spec.http[0].fault.abort) == 100.0


@pytest.mark.parametrize("form", ["percentage", "percent"])
def test_delay_is_injected_with_either_form(mesh: Mesh, form: str) -> None:
    mesh.apply(sample("virtual-service-all-v1.yaml"))
    if form == "percentage":
        doc = yaml.safe_load(sample("virtual-service-ratings-test-delay.yaml").read_text())
        doc["spec"]["http"][0]["fault"]["delay"]["fixedDelay"] = "10ms"  # 7 s in the sample
    else:
        doc = _delay_with_percent("10ms")
    mesh.apply(copy.deepcopy(doc))
    r = mesh.call("ratings", "/ratings/0", headers={"end-user": "jason"})
    assert (r.status_code, r.headers.get("x-meshlab-response-flags")) == (200, "DI")
    r = mesh.call("ratings", "/ratings/0")
    assert r.headers.get("x-meshlab-response-flags") is None


def test_details_abort_sample(mesh: Mesh) -> None:
    mesh.apply(sample("fault-injection-details-v1.yaml"))
    r = mesh.call("details", "/details/0")
    assert (r.status_code, r.headers["x-meshlab-response-flags"]) == (555, "FI")
    p = page(mesh)
    assert p["details"] is None and "555" in p["details_error"]


def test_ratings_abort_sample_for_jason(mesh: Mesh) -> None:
    """Istio's fault-injection task: all v1, reviews v2 for jason, then abort ratings for jason."""
    mesh.apply(sample("virtual-service-all-v1.yaml"))
    mesh.apply(sample("virtual-service-reviews-test-v2.yaml"))
    mesh.apply(sample("virtual-service-ratings-test-abort.yaml"))
    jason = page(mesh, "jason")
    assert jason["reviews"]["version"] == "v2"
    assert {rv["rating"].get("error") for rv in jason["reviews"]["reviews"]} == {
        "Ratings service is currently unavailable"}
    assert page(mesh)["reviews"]["version"] == "v1"  # others never call ratings


def test_ratings_delay_scaled_breaks_the_page_for_jason(mesh: Mesh) -> None:
    """The task's lesson, scaled 10x: a 0.7 s delay (7 s in the sample) on ratings is below
    reviews' timeout (1 s) but above what productpage waits in total (0.3 s + 1 retry), so
    jason sees "reviews unavailable"; everyone else is fine."""
    mesh.apply(sample("virtual-service-all-v1.yaml"))
    mesh.apply(sample("virtual-service-reviews-test-v2.yaml"))
    doc = yaml.safe_load(sample("virtual-service-ratings-test-delay.yaml").read_text())
    doc["spec"]["http"][0]["fault"]["delay"]["fixedDelay"] = "700ms"
    mesh.apply(doc)
    jason = page(mesh, "jason")
    assert jason["reviews"] is None
    assert "reviews are currently unavailable" in jason["reviews_error"]
    assert page(mesh)["reviews"]["version"] == "v1"
