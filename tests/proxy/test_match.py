"""Request matching (``meshlab.proxy.match``) on plain request objects: no mesh, no sockets.

Each test compiles one Istio ``HTTPMatchRequest`` (as the control plane does) and checks which
requests it accepts: conditions in one block are ANDed, string matches are exact / prefix /
full-match regex, header names are lowercase, ``{}`` means "present".
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import pytest

from meshlab.config.virtual_service import HTTPMatchRequest
from meshlab.proxy.http1 import Headers, Request
from meshlab.proxy.match import compile_match, compile_string_match, query_params
from meshlab.proxy.route import Route, VirtualHost, WeightedCluster


def match(**spec: Any):  # type: ignore[no-untyped-def]
    return compile_match(HTTPMatchRequest.model_validate(spec))


def request(path: str = "/", method: str = "GET", headers: dict[str, str] | None = None,
            authority: str = "reviews") -> Request:
    h = Headers(list((headers or {}).items()))
    h.setdefault("host", authority)
    return Request(method, f"http://{authority}{path}", h)


def stream(req: Request, labels: dict[str, str] | None = None, namespace: str = "default",
           port: int | None = None) -> SimpleNamespace:
    extra: dict[str, Any] = {} if port is None else {"port": port}
    sidecar = SimpleNamespace(labels=labels or {"app": "curl"}, namespace=namespace)
    return SimpleNamespace(authority=req.authority, extra=extra, sidecar=sidecar)


def accepts(m, req: Request, **kw: Any) -> bool:  # type: ignore[no-untyped-def]
    return m(req, stream(req, **kw))


# -- string matches --------------------------------------------------------------------------

def test_string_match_kinds() -> None:
    sm = HTTPMatchRequest.model_validate({"uri": {"exact": "/a"}}).uri
    exact = compile_string_match(sm)
    assert exact("/a") and not exact("/a/") and not exact("/A") and not exact(None)
    prefix = compile_string_match(HTTPMatchRequest.model_validate({"uri": {"prefix": "/a"}}).uri)
    assert prefix("/a") and prefix("/ab") and not prefix("/b/a") and not prefix(None)
    regex = compile_string_match(HTTPMatchRequest.model_validate({"uri": {"regex": "/a/[0-9]+"}}).uri)
    assert regex("/a/12") and not regex(None)


def test_regex_is_a_full_match() -> None:
    """RE2 in Envoy matches the whole value: a regex is not a search."""
    m = match(uri={"regex": "/reviews/[0-9]+"})
    assert accepts(m, request("/reviews/7"))
    assert not accepts(m, request("/reviews/7/extra"))
    assert not accepts(m, request("/api/reviews/7"))


def test_uri_ignores_query_string() -> None:
    assert accepts(match(uri={"exact": "/reviews/1"}), request("/reviews/1?u=jason"))
    assert accepts(match(uri={"regex": "/reviews/[0-9]"}), request("/reviews/1?x=1"))


def test_ignore_uri_case_exact_and_prefix() -> None:
    exact = match(uri={"exact": "/Reviews"}, ignoreUriCase=True)
    assert accepts(exact, request("/reviews")) and accepts(exact, request("/REVIEWS"))
    prefix = match(uri={"prefix": "/API/"}, ignoreUriCase=True)
    assert accepts(prefix, request("/api/v1")) and not accepts(prefix, request("/apiv1"))
    case_sensitive = match(uri={"exact": "/Reviews"})
    assert not accepts(case_sensitive, request("/reviews"))


def test_ignore_uri_case_does_not_apply_to_regex() -> None:
    """Istio: "the case will be ignored only in the case of exact and prefix URI matches"."""
    m = match(uri={"regex": "/reviews/[a-z]+"}, ignoreUriCase=True)
    assert accepts(m, request("/reviews/abc"))
    assert not accepts(m, request("/REVIEWS/abc"))


# -- headers ---------------------------------------------------------------------------------

@pytest.mark.parametrize(("condition", "value", "expected"), [
    ({"exact": "jason"}, "jason", True),
    ({"exact": "jason"}, "jason2", False),
    ({"exact": "jason"}, "Jason", False),
    ({"prefix": "ja"}, "jason", True),
    ({"prefix": "ja"}, "mája", False),
    ({"regex": "j.*n"}, "jason", True),
    ({"regex": "j.*n"}, "jasons", False),
    ({}, "anything", True),
    ({}, "", True),
])
def test_header_condition(condition: dict[str, str], value: str, expected: bool) -> None:
    m = match(headers={"end-user": condition})
    assert accepts(m, request(headers={"end-user": value})) is expected


@pytest.mark.parametrize("condition", [{"exact": "jason"}, {"prefix": "j"}, {"regex": ".*"}, {}])
def test_absent_header_never_matches(condition: dict[str, str]) -> None:
    assert not accepts(match(headers={"end-user": condition}), request())


def test_header_names_are_case_insensitive_on_the_request() -> None:
    """Config names are lowercase (validation insists); requests may spell them any way."""
    m = match(headers={"end-user": {"exact": "jason"}})
    assert accepts(m, request(headers={"End-User": "jason"}))
    assert accepts(m, request(headers={"END-USER": "jason"}))


def test_without_headers() -> None:
    not_jason = match(withoutHeaders={"end-user": {"exact": "jason"}})
    assert accepts(not_jason, request())
    assert accepts(not_jason, request(headers={"end-user": "alice"}))
    assert not accepts(not_jason, request(headers={"end-user": "jason"}))
    anonymous = match(withoutHeaders={"end-user": {}})
    assert accepts(anonymous, request())
    assert not accepts(anonymous, request(headers={"end-user": "alice"}))


# -- query, method, authority, port, source ---------------------------------------------------

def test_query_params_exact_and_regex() -> None:
    m = match(queryParams={"u": {"exact": "jason"}})
    assert accepts(m, request("/p?u=jason"))
    assert accepts(m, request("/p?x=1&u=jason"))
    assert not accepts(m, request("/p?u=jasonx"))
    assert not accepts(m, request("/p"))
    r = match(queryParams={"id": {"regex": "[0-9]+"}})
    assert accepts(r, request("/p?id=42")) and not accepts(r, request("/p?id=42a"))


def test_query_params_helper_first_value_wins() -> None:
    assert query_params("/p?a=1&a=2&b=") == {"a": "1", "b": ""}
    assert query_params("/p") == {}


def test_method() -> None:
    post = match(method={"exact": "POST"})
    assert accepts(post, request(method="POST")) and not accepts(post, request(method="GET"))
    either = match(method={"regex": "GET|HEAD"})
    assert accepts(either, request(method="HEAD")) and not accepts(either, request(method="PUT"))


def test_authority() -> None:
    m = match(authority={"prefix": "reviews.default"})
    assert accepts(m, request(authority="reviews.default.svc.cluster.local"))
    assert not accepts(m, request(authority="reviews"))


def test_port() -> None:
    m = match(port=9080)
    assert accepts(m, request(), port=9080)
    assert not accepts(m, request(), port=80)


def test_source_labels_and_namespace() -> None:
    m = match(sourceLabels={"app": "productpage", "version": "v1"})
    assert accepts(m, request(), labels={"app": "productpage", "version": "v1", "extra": "x"})
    assert not accepts(m, request(), labels={"app": "productpage", "version": "v2"})
    assert not accepts(m, request(), labels={"app": "curl"})
    ns = match(sourceNamespace="shop")
    assert accepts(ns, request(), namespace="shop") and not accepts(ns, request(), namespace="default")


# -- AND inside a block, OR across blocks, first route wins -------------------------------------

def test_conditions_in_one_block_are_anded() -> None:
    m = match(uri={"prefix": "/reviews"}, headers={"end-user": {"exact": "jason"}}, method={"exact": "GET"})
    assert accepts(m, request("/reviews/1", headers={"end-user": "jason"}))
    assert not accepts(m, request("/reviews/1"))
    assert not accepts(m, request("/ratings/1", headers={"end-user": "jason"}))
    assert not accepts(m, request("/reviews/1", method="POST", headers={"end-user": "jason"}))


def test_empty_block_matches_everything() -> None:
    assert accepts(match(), request("/anything", method="DELETE"))


def _route(name: str, *blocks: dict[str, Any]) -> Route:
    return Route(name, (WeightedCluster(name),), tuple(match(**b) for b in blocks))


def test_blocks_are_ored_and_the_matching_block_is_recorded() -> None:
    route = _route("r", {"uri": {"prefix": "/a"}}, {"headers": {"x": {}}})
    for req, index in ((request("/a"), 0), (request("/b", headers={"x": "1"}), 1)):
        s = stream(req)
        assert route.matches_request(req, s)
        assert s.extra["match_index"] == index
    assert not route.matches_request(request("/b"), stream(request("/b")))


def test_first_matching_route_wins() -> None:
    vh = VirtualHost("reviews", (
        _route("jason", {"headers": {"end-user": {"exact": "jason"}}}),
        _route("prefix", {"uri": {"prefix": "/reviews"}}),
        _route("catch-all"),
        _route("never"),
    ))
    def pick(req: Request) -> str | None:
        r = vh.select(req, stream(req))
        return r.name if r else None

    assert pick(request("/reviews/1", headers={"end-user": "jason"})) == "jason"
    assert pick(request("/reviews/1")) == "prefix"
    assert pick(request("/other")) == "catch-all"
    only_specific = VirtualHost("x", (_route("a", {"uri": {"exact": "/a"}}),))
    assert only_specific.select(request("/b"), stream(request("/b"))) is None
