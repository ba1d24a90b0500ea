"""Bookinfo, Istio's sample application, rebuilt small.

Four services, as in Istio's ``samples/bookinfo``::

    productpage ──> details
         └───────> reviews v1 (no stars)
                   reviews v2 ──> ratings   (black stars)
                   reviews v3 ──> ratings   (red stars)

``productpage`` forwards the ``end-user`` header (set when a user is logged in) and the trace
headers to the services it calls, so user-based routing (``end-user: jason``) works one hop
down, as in the original.

The original's hard-coded timeouts are kept, scaled down 10x like every delay in the guide:
productpage waits 3 s for reviews and retries once (here 0.3 s + 1 retry), reviews waits 10 s
for ratings (here 1.0 s). They are what Istio's fault-injection task exposes: a 7 s delay on
ratings (here 0.7 s) is longer than productpage is willing to wait in total (6 s, here 0.6 s),
so the page shows "reviews unavailable" although the delay is below reviews' own timeout.

Every service answers JSON a cell can read; ``/productpage`` also renders a small HTML page.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse

import meshlab

if TYPE_CHECKING:
    from ..mesh import Mesh

__all__ = ["PORT", "PRODUCTPAGE_TIMEOUT_S", "PRODUCTPAGE_RETRIES", "REVIEWS_TIMEOUT_S", "STAR_COLOR",
           "productpage", "details", "reviews", "ratings", "deploy"]

PORT = 9080  # every Bookinfo service listens on 9080
PRODUCTPAGE_TIMEOUT_S = 0.3  # Bookinfo: 3 s
PRODUCTPAGE_RETRIES = 1
REVIEWS_TIMEOUT_S = 1.0  # Bookinfo: 10 s
STAR_COLOR = {"v1": None, "v2": "black", "v3": "red"}

PRODUCT = {"id": 0, "title": "The Comedy of Errors",
           "descriptionHtml": "Wikipedia Summary: The Comedy of Errors is one of William Shakespeare's early plays."}
REVIEWS = [("Reviewer1", "An extremely entertaining play by Shakespeare. The slapstick humour is refreshing!"),
           ("Reviewer2", "Absolutely fun and entertaining. The play lacks thematic depth when compared to other plays "
                         "by Shakespeare.")]
RATINGS = {"Reviewer1": 5, "Reviewer2": 4}


def _user(request: Request) -> str | None:
    return request.headers.get("end-user") or request.cookies.get("user") or request.query_params.get("u")


def productpage() -> FastAPI:
    """The front page: calls details and reviews, renders the book."""
    app = FastAPI(title="productpage")

    async def fetch(url: str, headers: dict[str, str], timeout: float, retries: int) -> tuple[int, Any]:
        """GET ``url`` with the app's own timeout and retries; (status, json or error text)."""
        last: tuple[int, Any] = (0, "")
        for _ in range(retries + 1):
            try:
                r = await meshlab.client().get(url, headers=headers, timeout=timeout)
            except httpx.TimeoutException:
                last = (0, f"timed out after {timeout:g} s")
                continue
            if r.status_code == 200:
                return 200, r.json()
            last = (r.status_code, r.text.strip())
        return last

    async def product(request: Request) -> dict[str, Any]:
        headers = meshlab.propagation_headers(request)
        user = _user(request)
        if user:
            headers["end-user"] = user
        d_status, d = await fetch("http://details/details/0", headers, PRODUCTPAGE_TIMEOUT_S, PRODUCTPAGE_RETRIES)
        r_status, r = await fetch("http://reviews/reviews/0", headers, PRODUCTPAGE_TIMEOUT_S, PRODUCTPAGE_RETRIES)
        return {
            "product": PRODUCT, "user": user,
            "details": d if d_status == 200 else None,
            "details_error": None if d_status == 200 else "Sorry, product details are currently unavailable "
                                                          f"for this book. ({d_status or 'no response'}: {d})",
            "reviews": r if r_status == 200 else None,
            "reviews_error": None if r_status == 200 else "Sorry, product reviews are currently unavailable "
                                                          f"for this book. ({r_status or 'no response'}: {r})",
        }

    @app.get("/api/v1/products/0")
    async def product_json(request: Request) -> dict[str, Any]:
        """The product page's data as JSON (what the notebooks read)."""
        return await product(request)

    @app.get("/productpage", response_class=HTMLResponse)
    async def page(request: Request) -> str:
        """The product page as HTML."""
        p = await product(request)
        rows = []
        if p["reviews"]:
            for rv in p["reviews"]["reviews"]:
                stars = ""
                if rv.get("rating"):
                    stars = f' <span style="color:{rv["rating"]["color"]}">' + "★" * rv["rating"]["stars"] + "</span>"
                rows.append(f"<li><b>{rv['reviewer']}</b>: {rv['text']}{stars}</li>")
        reviews_html = "<ul>" + "".join(rows) + "</ul>" if rows else f"<p>{p['reviews_error']}</p>"
        details_html = (f"<p>{p['details']['author']}, {p['details']['year']}</p>" if p["details"]
                        else f"<p>{p['details_error']}</p>")
        who = f"signed in as {p['user']}" if p["user"] else "not signed in"
        return (f"<html><body><h1>{PRODUCT['title']}</h1><p><i>{who}</i></p>{details_html}"
                f"<h2>Reviews</h2>{reviews_html}</body></html>")

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    return app


def details(version: str = "v1") -> FastAPI:
    """Book details (author, year, pages, ...)."""
    app = FastAPI(title=f"details-{version}")

    @app.get("/details/{pid}")
    async def get_details(pid: int) -> dict[str, Any]:
        return {"id": pid, "author": "William Shakespeare", "year": 1595, "type": "paperback", "pages": 200,
                "publisher": "PublisherA", "language": "English", "ISBN-10": "1234567890",
                "ISBN-13": "123-1234567890", "version": version}

    return app


def reviews(version: str) -> FastAPI:
    """Reviews of the book. v1: no ratings; v2: ratings as black stars; v3: red stars."""
    if version not in STAR_COLOR:
        raise ValueError(f"reviews version must be one of {sorted(STAR_COLOR)}")
    app = FastAPI(title=f"reviews-{version}")
    color = STAR_COLOR[version]

    @app.get("/reviews/{pid}")
    async def get_reviews(pid: int, request: Request) -> JSONResponse:
        out: list[dict[str, Any]] = [{"reviewer": who, "text": text} for who, text in REVIEWS]
        ratings_error = None
        if color is not None:
            try:
                r = await meshlab.client().get(f"http://ratings/ratings/{pid}",
                                               headers=meshlab.propagation_headers(request), timeout=REVIEWS_TIMEOUT_S)
                if r.status_code == 200:
                    stars = r.json()["ratings"]
                    for rv in out:
                        rv["rating"] = {"stars": stars.get(rv["reviewer"], 0), "color": color}
                else:
                    ratings_error = f"ratings service answered {r.status_code}"
            except httpx.TimeoutException:
                ratings_error = f"ratings service timed out after {REVIEWS_TIMEOUT_S:g} s"
            if ratings_error:
                for rv in out:
                    rv["rating"] = {"error": "Ratings service is currently unavailable"}
        pod = meshlab.current_replica()
        return JSONResponse({"id": pid, "version": version, "podname": pod.name if pod else None,
                             "reviews": out, "ratings_error": ratings_error})

    return app


def ratings(version: str = "v1") -> FastAPI:
    """Star ratings per reviewer."""
    app = FastAPI(title=f"ratings-{version}")

    @app.get("/ratings/{pid}")
    async def get_ratings(pid: int) -> dict[str, Any]:
        return {"id": pid, "ratings": dict(RATINGS), "version": version}

    return app


def deploy(mesh: Mesh, replicas: int = 1, reviews_versions: tuple[str, ...] = ("v1", "v2", "v3")) -> None:
    """Deploy Bookinfo in ``mesh``: productpage v1, details v1, reviews (v1, v2, v3), ratings v1,
    each with ``replicas`` pods, labelled app/version, on port 9080 and with the service accounts
    ``bookinfo-<service>`` as in Istio's sample."""
    mesh.deploy("productpage", productpage(), replicas=replicas, version="v1", port=PORT,
                service_account="bookinfo-productpage")
    mesh.deploy("details", details(), replicas=replicas, version="v1", port=PORT, service_account="bookinfo-details")
    for v in reviews_versions:
        mesh.deploy("reviews", reviews(v), replicas=replicas, version=v, port=PORT, service_account="bookinfo-reviews")
    mesh.deploy("ratings", ratings(), replicas=replicas, version="v1", port=PORT, service_account="bookinfo-ratings")
