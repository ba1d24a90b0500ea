"""Route actions of a VirtualService HTTP route, applied by the router.

Each function is one Istio field: ``redirect``, ``directResponse``, ``rewrite``, ``headers``
(request and response operations), ``mirror``/``mirrors``; ``hash_key`` extracts the key of a
DestinationRule ``consistentHash`` load balancer.
"""

from __future__ import annotations

import base64
import re
from typing import TYPE_CHECKING, Any

from ..http1 import Headers, Request, Response
from ..match import query_params

if TYPE_CHECKING:
    from ..cluster import Cluster
    from ..route import Route
    from ..stream import Stream

__all__ = ["redirect", "direct_response", "rewrite", "request_headers", "response_headers", "mirror", "hash_key"]


def redirect(stream: Stream, r: Any) -> Response:
    """``redirect``: answer 301 (or ``redirectCode``) with a Location built from the request."""
    authority = r.authority or stream.authority
    if r.port:
        authority = f"{authority.rsplit(':', 1)[0]}:{r.port}"
    scheme = r.scheme or "http"
    path = stream.path
    if r.uri is not None:
        # Envoy's path_redirect: the whole path is replaced; the request's query string is kept
        # unless the new path carries one of its own.
        query = stream.path.partition("?")[2]
        path = r.uri if "?" in r.uri or not query else f"{r.uri}?{query}"
    code = r.redirectCode or 301
    return Response(code, Headers([("location", f"{scheme}://{authority}{path}")]), b"")


def direct_response(d: Any) -> Response:
    """``directResponse``: a fixed status and body, no upstream."""
    body = b""
    if d.body is not None:
        if d.body.string is not None:
            body = d.body.string.encode()
        elif d.body.bytes is not None:
            body = base64.b64decode(d.body.bytes)
    return Response(d.status, Headers([("content-type", "text/plain")]), body)


def rewrite(stream: Stream, rw: Any, route: Route) -> None:
    """``rewrite``: replace the matched prefix (or the whole path) and/or the authority."""
    if rw is None:
        return
    req = stream.request
    path, _, query = req.path.partition("?")
    if rw.uri is not None:
        prefix = _matched_prefix(stream, route)
        path = rw.uri + path[len(prefix):] if prefix is not None else rw.uri
        if path.startswith("//"):
            path = path[1:]
    elif rw.uriRegexRewrite is not None and rw.uriRegexRewrite.match is not None:
        path = re.sub(rw.uriRegexRewrite.match, _go_to_py_repl(rw.uriRegexRewrite.rewrite or ""), path)
    new_path = f"{path}?{query}" if query else path
    if new_path != req.path:
        req.headers.set("x-envoy-original-path", req.path)
        req.target = new_path
    if rw.authority is not None:
        req.headers.set("host", rw.authority)
        stream.authority = rw.authority


def _go_to_py_repl(repl: str) -> str:
    return re.sub(r"\\(\d)", r"\\g<\1>", repl)


def _matched_prefix(stream: Stream, route: Route) -> str | None:
    """The prefix Envoy's ``prefix_rewrite`` replaces: the matched ``uri.prefix``; ``/`` when the
    match block has no uri condition (or the route no match), since Istio then matches prefix
    ``/``; None for exact and regex matches (the whole path is replaced)."""
    raw = route.action.get("raw_matches") or ()
    if not raw:
        return "/"
    idx = stream.extra.get("match_index")
    if idx is None or idx >= len(raw):
        return None
    uri = raw[idx].uri
    if uri is None:
        return "/"
    return uri.prefix if uri.prefix is not None else None


def request_headers(headers: Headers, ops: Any) -> None:
    """``headers.request`` operations (set, add, remove) on the request going upstream."""
    _apply(headers, getattr(ops, "request", None) if ops is not None else None)


def response_headers(headers: Headers, ops: Any) -> None:
    """``headers.response`` operations on the response going back."""
    _apply(headers, getattr(ops, "response", None) if ops is not None else None)


def _apply(headers: Headers, op: Any) -> None:
    if op is None:
        return
    for k, v in (op.set or {}).items():
        headers.set(k, v)
    for k, v in (op.add or {}).items():
        headers.add(k, v)
    for k in op.remove or []:
        headers.remove(k)


def mirror(stream: Stream, cluster_name: str, percent: float) -> None:
    """``mirror``: send a copy (Host suffixed ``-shadow``) and ignore its response."""
    sidecar = stream.sidecar
    if percent < 100.0 and sidecar.rng.random() * 100.0 >= percent:
        return
    cluster = sidecar.cluster(stream.snapshot, cluster_name)
    if cluster is None:
        return
    host = cluster.choose()
    if host is None:
        return
    req = stream.request
    headers = req.headers.copy()
    authority = stream.authority.split(":")[0]
    headers.set("host", f"{authority}-shadow")
    headers.set("x-envoy-peer-metadata-id", sidecar.identity.header_value())
    copy = Request(req.method, req.path, headers, req.body)
    ep = host.endpoint
    sidecar.stats["mirror.rq_total"] += 1
    sidecar.spawn(_fire(sidecar, ep.host, ep.port, copy))


async def _fire(sidecar: Any, host: str, port: int, req: Request) -> None:
    try:
        await sidecar.pools.send(host, port, req, req.path)
    except (TimeoutError, ConnectionError):
        sidecar.stats["mirror.rq_failed"] += 1


def hash_key(stream: Stream, cluster: Cluster) -> str | None:
    """The consistent-hash key of a request for ``cluster`` (None: no key, random host)."""
    how = cluster.config.hash_on
    if how is None:
        return None
    req = stream.request
    kind = how[0]
    if kind == "header":
        return req.headers.get(how[1])
    if kind == "query":
        return query_params(req.path).get(how[1])
    if kind == "source_ip":
        return stream.sidecar.identity.pod or stream.downstream_remote.split(":")[0]
    if kind == "cookie":
        name, ttl = how[1], how[2]
        for part in (req.headers.get("cookie") or "").split(";"):
            k, _, v = part.strip().partition("=")
            if k == name:
                return v
        if ttl:
            value = f"{stream.sidecar.rng.getrandbits(64):016x}"
            stream.extra["set_cookie"] = f"{name}={value}; Max-Age={int(ttl)}; HttpOnly"
            return value
    return None



