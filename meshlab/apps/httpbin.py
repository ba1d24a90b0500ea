"""httpbin: a test service for the resilience chapters, modelled on https://httpbin.org.

Istio's own task pages (fault injection, circuit breaking, retries, egress) use the ``httpbin``
sample; this is a tiny FastAPI version of it with a few extra endpoints that fail on purpose,
so a chapter can show what a timeout, a retry or an outlier ejection does with a service whose
misbehaviour is known in advance::

    from meshlab import Mesh
    from meshlab.apps.httpbin import make_app

    with Mesh(seed=0) as mesh:
        mesh.deploy("httpbin", make_app(), replicas=2)
        mesh.call("httpbin", "/status/200,500").status_code     # 200 or 500, seeded
        mesh.call("httpbin", "/flaky/fail/2").status_code       # each replica fails its first 2

==========================  ====================================================================
endpoint                    what it is for in the guide
==========================  ====================================================================
``/``                       which service, version and replica answered (load balancing)
``/status/{codes}``         answer a status: ``/status/503``; or pick one at random from a
                            comma list with optional weights, ``/status/200:3,503:1`` (retries,
                            outlier detection)
``/delay/{seconds}``        answer after a delay, capped at 10 s (timeouts, circuit breaking)
``/headers``                echo the request headers (what the sidecar added: x-request-id,
                            trace headers; header-based routing)
``/get``                    echo method, query arguments, headers, origin and URL
``/anything[/{path}]``      the same for any method, with the body (rewrites, mirroring)
``/flaky/fail/{n}``         fail the first ``n`` requests with 503, then succeed (retries)
``/flaky/percent/{p}``      fail ``p`` percent of requests with 503 (retries, outlier detection)
``/ip``                     the caller's address as the app sees it
``/uuid``                   a UUID (seeded in a mesh)
``/reset``                  forget every ``/flaky/fail`` counter of this app (GET or POST)
==========================  ====================================================================

Randomness and state
--------------------
Inside a mesh every random draw comes from the random source of the replica handling the
request (``meshlab.current_replica().rng``, seeded from ``Mesh(seed=...)``), so the same
notebook gives the same 200/503 counts every run. Outside a mesh (tests, ``TestClient``) the
app uses its own ``random.Random(seed)``. A request for a single status code draws nothing.

``/flaky/fail`` counters live in the app instance, keyed by replica name (``httpbin-v1-0``;
``"local"`` outside a mesh) and by the ``key`` query parameter, so each replica fails its own
first ``n`` requests, as separate pods would; ``?key=...`` starts an independent count.

Mind Istio's default retry policy: the caller's sidecar retries a 503 twice (three tries in all)
before giving up, so ``mesh.call`` shows the outcome *after* retries, while the access log of
the replicas' sidecars (``mesh.access_log(reporter="destination")``) shows every try. Use 500
(``/status/500``) for a failure that is not retried by default.
"""

from __future__ import annotations

import json
import random
import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import FastAPI, Path, Request, Response
from fastapi.responses import JSONResponse

from ..timers import sleep_at_least
from ..workload import current_replica

__all__ = ["make_app", "HttpbinState", "parse_codes", "MAX_DELAY_S", "LOCAL"]

#: The longest ``/delay`` honoured, in seconds (httpbin caps it at 10 s too).
MAX_DELAY_S = 10.0

#: Counter key used for requests outside a mesh.
LOCAL = "local"

ANY_METHOD = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]


@dataclass
class HttpbinState:
    """What one httpbin app instance remembers: its random source outside a mesh and the
    ``/flaky/fail`` counters, ``{(replica, key): requests seen}``. Available as
    ``app.state.httpbin``."""

    rng: random.Random
    counters: dict[tuple[str, str], int] = field(default_factory=dict)

    def random(self) -> random.Random:
        """The random source for the current request: the replica's in a mesh, else our own."""
        replica = current_replica()
        return replica.rng if replica is not None else self.rng

    def count(self, key: str) -> tuple[str, int]:
        """Count one more request for ``key`` on the current replica: (replica, count so far)."""
        who = replica_name()
        n = self.counters.get((who, key), 0) + 1
        self.counters[(who, key)] = n
        return who, n

    def reset(self) -> int:
        """Forget every flaky counter; returns how many there were."""
        n = len(self.counters)
        self.counters.clear()
        return n


def replica_name() -> str:
    """The pod handling the current request (``httpbin-v1-0``), or ``"local"`` outside a mesh."""
    replica = current_replica()
    return replica.name if replica is not None else LOCAL


def parse_codes(spec: str) -> list[tuple[int, float]]:
    """Parse ``/status`` codes: ``"503"``, ``"200,503"`` or ``"200:3,503:1"`` (code:weight, as
    httpbin). Raises ValueError naming the bad part."""
    out = []
    for part in spec.split(","):
        code_s, _, weight_s = part.strip().partition(":")
        try:
            code = int(code_s)
            weight = float(weight_s) if weight_s else 1.0
        except ValueError:
            raise ValueError(f"invalid status code or weight: {part.strip()!r}") from None
        if not 200 <= code <= 599:
            raise ValueError(f"status code {code} is outside 200-599")
        if weight < 0:
            raise ValueError(f"weight {weight:g} of {code} is negative")
        out.append((code, weight))
    if sum(w for _, w in out) <= 0:
        raise ValueError("the weights add up to 0")
    return out


def pick_code(codes: list[tuple[int, float]], rng: random.Random) -> int:
    """A weighted draw from ``codes`` (no draw when there is only one)."""
    if len(codes) == 1:
        return codes[0][0]
    x = rng.random() * sum(w for _, w in codes)
    for code, weight in codes:
        x -= weight
        if x < 0:
            return code
    return codes[-1][0]


def _headers(request: Request) -> dict[str, str]:
    out: dict[str, str] = {}
    for k, v in request.headers.items():
        out[k] = f"{out[k]},{v}" if k in out else v
    return out


def _args(request: Request) -> dict[str, str | list[str]]:
    out: dict[str, str | list[str]] = {}
    for k in request.query_params:
        values = request.query_params.getlist(k)
        out[k] = values[0] if len(values) == 1 else values
    return out


def _origin(request: Request) -> str:
    forwarded = request.headers.get("x-forwarded-for")
    if forwarded:
        return forwarded.split(",")[0].strip()
    return request.client.host if request.client else ""


def _echo(request: Request) -> dict[str, Any]:
    return {"method": request.method, "args": _args(request), "headers": _headers(request),
            "origin": _origin(request), "url": str(request.url)}


def make_app(name: str = "httpbin", seed: int = 0) -> FastAPI:
    """A new httpbin app (see the module docstring). ``name`` is the service name it reports;
    ``seed`` seeds its random source for requests outside a mesh."""
    app = FastAPI(title=name, description="httpbin-like test service (meshlab)")
    state = HttpbinState(random.Random(seed))
    app.state.httpbin = state

    @app.get("/")
    async def root() -> dict[str, Any]:
        """Who answered: service, version and replica (watch load balancing spread requests)."""
        replica = current_replica()
        return {"service": name, "version": replica.version if replica else None,
                "replica": replica_name()}

    @app.api_route("/status/{codes}", methods=ANY_METHOD)
    async def status(codes: str) -> Response:
        """Answer with a status code (empty body): ``/status/503``, or a seeded random pick from a
        weighted list ``/status/200:9,503:1``. The retries and outlier-detection chapters use
        it to make a service fail a known share of requests."""
        try:
            choices = parse_codes(codes)
        except ValueError as exc:
            return JSONResponse({"error": str(exc)}, status_code=400)
        return Response(status_code=pick_code(choices, state.random()))

    @app.get("/delay/{seconds}")
    async def delay(request: Request, seconds: float) -> dict[str, Any]:
        """Answer after ``seconds`` (at most 10): a slow service for the timeouts chapter."""
        wait = min(max(seconds, 0.0), MAX_DELAY_S)
        await sleep_at_least(wait)
        return {**_echo(request), "delay": wait}

    @app.get("/headers")
    async def headers(request: Request) -> dict[str, Any]:
        """The request headers as the app received them, e.g. the ``x-request-id`` the sidecar
        added and the trace headers an app must forward."""
        return {"headers": _headers(request)}

    @app.get("/get")
    async def get(request: Request) -> dict[str, Any]:
        """Echo of the request: method, query arguments, headers, origin and URL."""
        return _echo(request)

    @app.api_route("/anything", methods=ANY_METHOD)
    @app.api_route("/anything/{path:path}", methods=ANY_METHOD)
    async def anything(request: Request) -> dict[str, Any]:
        """Echo of any request, any method, with its body (``data``, and ``json`` when it parses):
        shows what a rewrite, a redirect or a mirror actually delivered."""
        body = await request.body()
        try:
            parsed = json.loads(body) if body else None
        except ValueError:
            parsed = None
        return {**_echo(request), "data": body.decode("utf-8", "replace"), "json": parsed}

    @app.api_route("/flaky/fail/{n}", methods=ANY_METHOD)
    async def flaky_fail(n: int = Path(ge=0), key: str = "default") -> JSONResponse:
        """Fail the first ``n`` requests of each replica (and ``key``) with 503, then succeed:
        with enough retries the caller never notices, with too few it does."""
        who, attempt = state.count(key)
        code = 503 if attempt <= n else 200
        return JSONResponse({"replica": who, "key": key, "attempt": attempt, "fail_first": n,
                             "failed": code == 503}, status_code=code)

    @app.api_route("/flaky/percent/{p}", methods=ANY_METHOD)
    async def flaky_percent(p: float = Path(ge=0, le=100)) -> JSONResponse:
        """Fail ``p`` percent of requests with 503 (seeded): a partly broken service for retries
        and outlier detection."""
        failed = state.random().random() * 100.0 < p
        return JSONResponse({"replica": replica_name(), "percent": p, "failed": failed},
                            status_code=503 if failed else 200)

    @app.get("/ip")
    async def ip(request: Request) -> dict[str, str]:
        """The caller's address as the app sees it (in a mesh: its own sidecar, 127.0.0.1)."""
        return {"origin": _origin(request)}

    @app.get("/uuid")
    async def make_uuid() -> dict[str, str]:
        """A version-4 UUID, drawn from the seeded random source."""
        return {"uuid": str(uuid.UUID(int=state.random().getrandbits(128), version=4))}

    @app.api_route("/reset", methods=["GET", "POST"])
    async def reset() -> dict[str, int]:
        """Forget every ``/flaky/fail`` counter of this app (all replicas), to start an
        experiment again."""
        return {"cleared": state.reset()}

    return app
