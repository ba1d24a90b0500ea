"""Bookinfo (``meshlab.apps.bookinfo``) in a mesh: the product page as JSON and HTML, the three
reviews versions and their stars, ratings, user and trace header forwarding, and productpage's
own timeout (0.3 s + 1 retry) turning a slow reviews service into "reviews unavailable"."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from meshlab import Mesh
from meshlab.apps import bookinfo

SUBSETS = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
  - {name: v3, labels: {version: v3}}
"""


def only(version: str) -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: reviews}}
spec:
  hosts: [reviews]
  http: [{{route: [{{destination: {{host: reviews, subset: {version}}}}}]}}]
"""


@pytest.fixture
def shop(mesh: Mesh) -> Mesh:
    bookinfo.deploy(mesh)
    mesh.apply(SUBSETS)
    return mesh


def page(mesh: Mesh, **kw: Any) -> dict[str, Any]:
    r = mesh.call("productpage", "/api/v1/products/0", **kw)
    assert r.status_code == 200
    return r.json()


def test_deploy_creates_the_four_services_on_port_9080(shop: Mesh) -> None:
    assert shop.services == ["details", "productpage", "ratings", "reviews"]
    assert [r.version for r in shop.replicas("reviews")] == ["v1", "v2", "v3"]
    assert {shop.registry.service(s).port for s in shop.services} == {bookinfo.PORT} == {9080}


def test_product_page_json(shop: Mesh) -> None:
    shop.apply(only("v1"))
    p = page(shop)
    assert p["product"]["title"] == "The Comedy of Errors"
    assert p["user"] is None
    assert (p["details"]["author"], p["details"]["year"], p["details"]["version"]) == (
        "William Shakespeare", 1595, "v1")
    assert p["details_error"] is None and p["reviews_error"] is None
    assert [rv["reviewer"] for rv in p["reviews"]["reviews"]] == ["Reviewer1", "Reviewer2"]
    assert p["reviews"]["podname"] == "reviews-v1-0"


@pytest.mark.parametrize(("version", "color"), [("v1", None), ("v2", "black"), ("v3", "red")])
def test_reviews_versions_and_stars(shop: Mesh, version: str, color: str | None) -> None:
    assert bookinfo.STAR_COLOR[version] == color
    shop.apply(only(version))
    body = shop.call("reviews", "/reviews/0").json()
    assert body["version"] == version and body["ratings_error"] is None
    ratings = [rv.get("rating") for rv in body["reviews"]]
    if color is None:
        assert ratings == [None, None]  # v1 never calls ratings
    else:
        assert ratings == [{"stars": 5, "color": color}, {"stars": 4, "color": color}]


def test_ratings(shop: Mesh) -> None:
    body = shop.call("ratings", "/ratings/0").json()
    assert body == {"id": 0, "ratings": {"Reviewer1": 5, "Reviewer2": 4}, "version": "v1"}


def test_reviews_rejects_unknown_version() -> None:
    with pytest.raises(ValueError, match="v1"):
        bookinfo.reviews("v4")


def test_product_page_html(shop: Mesh) -> None:
    shop.apply(only("v3"))
    html = shop.call("productpage", "/productpage").text
    assert "<h1>The Comedy of Errors</h1>" in html
    assert "not signed in" in html
    assert "William Shakespeare, 1595" in html
    assert html.count('<span style="color:red">') == 2
    assert '<span style="color:red">★★★★★</span>' in html and '<span style="color:red">★★★★</span>' in html
    shop.apply(only("v1"))
    html = shop.call("productpage", "/productpage?u=jason").text
    assert "signed in as jason" in html
    assert "★" not in html and "Reviewer1" in html


@pytest.mark.parametrize("how", ["header", "cookie", "query"])
def test_the_user_is_forwarded_as_end_user(shop: Mesh, how: str) -> None:
    shop.apply(bookinfo_test_v2())
    kw: dict[str, Any] = {"headers": {"end-user": "jason"}} if how == "header" else (
        {"headers": {"cookie": "user=jason"}} if how == "cookie" else {})
    path = "/api/v1/products/0" + ("?u=jason" if how == "query" else "")
    p = shop.call("productpage", path, **kw).json()
    assert p["user"] == "jason"
    assert p["reviews"]["version"] == "v2"  # routed on end-user one hop down
    assert page(shop)["reviews"]["version"] == "v1"


def bookinfo_test_v2() -> str:
    return """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""


def test_headers_are_forwarded_two_hops_down(shop: Mesh) -> None:
    """reviews forwards end-user and the trace headers to ratings: a rule on ratings for jason
    (a subset nobody defines: 503 NC) only breaks jason's ratings."""
    shop.apply(only("v2") + """---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: ratings, subset: missing}}]
  - route: [{destination: {host: ratings}}]
""")
    jason = page(shop, headers={"cookie": "user=jason", "x-request-id": "req-jason-1"})
    assert jason["reviews"]["ratings_error"] == "ratings service answered 503"
    assert {rv["rating"]["error"] for rv in jason["reviews"]["reviews"]} == {"Ratings service is currently unavailable"}
    assert page(shop)["reviews"]["reviews"][0]["rating"] == {"stars": 5, "color": "black"}
    log = shop.access_log(reporter="source")
    hops = log[log["request_id"] == "req-jason-1"]
    assert {"productpage", "details", "reviews", "ratings"} <= set(hops["destination_service"].str.split(".").str[0])
    nc = hops[hops["response_flags"] == "NC"]
    assert list(nc["workload"]) == ["reviews-v2"]


def slow(app: Any, delay_s: float, hits: list[str]) -> Callable[..., Any]:
    """Wrap an ASGI app: record each request on arrival, then take ``delay_s`` before answering."""

    async def wrapped(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            hits.append(scope["path"])
            await asyncio.sleep(delay_s)
        await app(scope, receive, send)

    return wrapped


def test_productpage_timeout_and_retry_show_reviews_unavailable(mesh: Mesh) -> None:
    hits: list[str] = []
    mesh.deploy("productpage", bookinfo.productpage(), port=bookinfo.PORT)
    mesh.deploy("details", bookinfo.details(), port=bookinfo.PORT)
    mesh.deploy("reviews", slow(bookinfo.reviews("v1"), 0.5, hits), port=bookinfo.PORT)
    p = page(mesh)
    assert p["reviews"] is None
    assert p["reviews_error"].startswith("Sorry, product reviews are currently unavailable for this book.")
    assert f"timed out after {bookinfo.PRODUCTPAGE_TIMEOUT_S:g} s" in p["reviews_error"]
    assert hits == ["/reviews/0"] * (1 + bookinfo.PRODUCTPAGE_RETRIES)  # 0.3 s, then one retry
    assert p["details"]["author"] == "William Shakespeare"  # the rest of the page still renders
    html = mesh.call("productpage", "/productpage").text
    assert "Sorry, product reviews are currently unavailable" in html


def test_slow_reviews_within_the_timeout_are_shown(mesh: Mesh) -> None:
    hits: list[str] = []
    mesh.deploy("productpage", bookinfo.productpage(), port=bookinfo.PORT)
    mesh.deploy("details", bookinfo.details(), port=bookinfo.PORT)
    mesh.deploy("reviews", slow(bookinfo.reviews("v1"), 0.05, hits), port=bookinfo.PORT)
    p = page(mesh)
    assert p["reviews"]["version"] == "v1" and p["reviews_error"] is None
    assert hits == ["/reviews/0"]


def test_details_down_is_reported_on_the_page(mesh: Mesh) -> None:
    mesh.deploy("productpage", bookinfo.productpage(), port=bookinfo.PORT)
    mesh.deploy("reviews", bookinfo.reviews("v1"), port=bookinfo.PORT)
    p = page(mesh)
    assert p["details"] is None
    assert p["details_error"].startswith("Sorry, product details are currently unavailable")
    assert p["reviews"]["version"] == "v1"
