"""How apps call other services: by name, through their own sidecar.

Inside a request handler of a service deployed in a mesh::

    r = await meshlab.client().get("http://cart/items", headers=meshlab.propagation_headers(request))
    r.status_code, r.json()

The call goes to the *outbound listener of the sidecar of the replica handling the current
request* (an HTTP proxy: the URL names the destination service), exactly as an app's traffic
is captured by its sidecar in Istio. The response is an ``httpx.Response``.

Apps must forward a few headers from the request they are serving to the calls they make, or
distributed traces break and header-based routing (``end-user: jason``) stops working one hop
later; ``propagation_headers(request)`` returns them.
"""

from __future__ import annotations

import asyncio
import json as jsonlib
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode, urlsplit

import httpx

from .proxy.http1 import Headers, Request
from .proxy.pool import PoolSet
from .workload import current_replica

__all__ = ["MeshClient", "client", "propagation_headers", "PROPAGATED_HEADERS", "NotInMesh"]

#: Headers Istio asks applications to copy from incoming to outgoing requests (tracing), plus
#: the ``end-user`` header Bookinfo forwards for user-based routing.
PROPAGATED_HEADERS = (
    "x-request-id", "traceparent", "tracestate", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
    "x-b3-sampled", "x-b3-flags", "b3", "x-ot-span-context", "x-cloud-trace-context", "grpc-trace-bin",
    "end-user",
)


class NotInMesh(RuntimeError):
    """``meshlab.client()`` was used outside a request handled by a mesh replica."""


def propagation_headers(request: Any) -> dict[str, str]:
    """The headers of ``request`` (a FastAPI/Starlette request, or any mapping of headers) that an
    app should forward to the services it calls."""
    headers = getattr(request, "headers", request)
    out = {}
    for name in PROPAGATED_HEADERS:
        value = headers.get(name)
        if value is not None:
            out[name] = value
    return out


def build_request(method: str, url: str, headers: Mapping[str, str] | None = None, json: Any = None,
                  content: bytes | str | None = None, params: Mapping[str, Any] | None = None) -> Request:
    """A proxy-form request (absolute URL as target, Host header set) for a sidecar's outbound."""
    parts = urlsplit(url if "://" in url else f"http://{url}")
    path = parts.path or "/"
    query = parts.query
    if params:
        query = f"{query}&{urlencode(params)}" if query else urlencode(params)
    if query:
        path = f"{path}?{query}"
    h = Headers(list((headers or {}).items()))
    body = b""
    if json is not None:
        body = jsonlib.dumps(json).encode()
        h.setdefault("content-type", "application/json")
    elif content is not None:
        body = content.encode() if isinstance(content, str) else content
    h.setdefault("host", parts.netloc)
    return Request(method.upper(), f"http://{parts.netloc}{path}", h, body)


def to_httpx(method: str, url: str, status: int, headers: Headers, body: bytes) -> httpx.Response:
    """Wrap a response as an ``httpx.Response`` (status_code, headers, json(), text)."""
    return httpx.Response(status, headers=headers.items(), content=body, request=httpx.Request(method, url))


class MeshClient:
    """An async HTTP client whose requests go through one sidecar's outbound listener."""

    def __init__(self, host: str, port: int, pools: PoolSet) -> None:
        self.host, self.port, self.pools = host, port, pools

    async def request(self, method: str, url: str, *, headers: Mapping[str, str] | None = None, json: Any = None,
                      content: bytes | str | None = None, params: Mapping[str, Any] | None = None,
                      timeout: float | None = None) -> httpx.Response:
        """Send one request; ``url`` names the service: ``http://cart/items``. ``timeout``
        (seconds) is the *application's* own timeout: when it expires ``httpx.TimeoutException``
        is raised, as httpx does."""
        req = build_request(method, url, headers, json, content, params)
        try:
            resp = await asyncio.wait_for(self.pools.send(self.host, self.port, req), timeout)
        except TimeoutError:
            raise httpx.ReadTimeout(f"{method} {url}: no response within {timeout} s") from None
        return to_httpx(req.method, req.target, resp.status, resp.headers, resp.body)

    async def get(self, url: str, **kw: Any) -> httpx.Response:
        """GET ``url``."""
        return await self.request("GET", url, **kw)

    async def post(self, url: str, **kw: Any) -> httpx.Response:
        """POST ``url``."""
        return await self.request("POST", url, **kw)

    async def put(self, url: str, **kw: Any) -> httpx.Response:
        """PUT ``url``."""
        return await self.request("PUT", url, **kw)

    async def delete(self, url: str, **kw: Any) -> httpx.Response:
        """DELETE ``url``."""
        return await self.request("DELETE", url, **kw)


def client() -> MeshClient:
    """The client for the replica handling the current request (its sidecar's outbound)."""
    replica = current_replica()
    if replica is None or replica.sidecar is None:
        raise NotInMesh(
            "meshlab.client() only works inside a request handled by a service deployed in a mesh; "
            "from a notebook cell use mesh.call(service, path) instead"
        )
    sc = replica.sidecar
    return MeshClient(sc.outbound.host, sc.outbound.port, sc.app_pools)
