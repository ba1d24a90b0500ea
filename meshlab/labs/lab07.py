"""Lab 07, timeouts and retries: two VirtualServices and one number, checked on a running mesh.

    from meshlab.labs.lab07 import q1, q2, q3, trial, ____

    fail_fast_vs = '''...'''        # the learner writes real Istio YAML
    trial(fail_fast_vs, "/delay/0.6")  # what it does, on a fresh mesh, without checking
    q1.check()

Theory of operation
-------------------
Each check starts a fresh mesh (``Mesh(seed=SEED)``) running two replicas of httpbin (no
DestinationRule, no other rule), applies the learner's YAML exactly as ``kubectl apply`` would,
sends real requests from the client workload and judges what happened; the YAML itself is only
read through the mesh (which route the client's sidecar uses):

* q1 (fail fast): httpbin normally answers in about 10 ms (``/delay/0.01``) but sometimes hangs
  for 0.6 s (``/delay/0.6``; 6 s on a real cluster). Over 20 requests of each, the hung ones must
  fail with ``504`` and the flag ``UT`` and no caller may wait more than 0.2 s: the median latency
  of the hung requests must be under ``BUDGET_MS`` and their p99 under ``MAX_MS`` (room for the
  proxies' own time on a busy laptop, where one slow sample can move a p99 of 20 requests), while
  every normal request still succeeds.
* q2 (retries): ``/flaky/percent/30`` answers 503 to 30 % of requests. Over ``FLAKY_REQUESTS``
  sequential requests at least 99 % must succeed, a request that keeps failing may be tried at
  most ``MAX_TRIES`` times, and a ``500`` (in this service: processed, failed for good) must never
  be retried. Requests are sequential and the mesh seeded, so the same YAML always gives the same
  count (retries draw from the same seeded sources whatever ``retryOn`` lists).
* q3 (retry storm, a number): A calls B, B calls C, both hops with Istio's default retries, C
  always answers 503. The answer is compared with the arithmetic, then measured on a fresh mesh
  (``relay`` apps for A and B, httpbin for C, the call into A not retried) and the measured
  counts are reported.

Apps still busy with a request whose caller gave up (q1) are waited for before the mesh stops.
Messages point at the concept that is missing (no route timeout by default, timeout vs
per-try timeout, retryOn and the retriable status codes, attempts vs tries, multiplication
along a chain) without writing the YAML or the number for the learner.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from meshlab.config import Resource
from meshlab.labs.core import (
    Incorrect,
    Question,
    bind_questions,
    describe_kinds,
    load_yaml_answer,
    playground_yaml,
)

__all__ = ["SEED", "BUDGET_MS", "MAX_MS", "MAX_TRIES", "FLAKY_REQUESTS", "httpbin_mesh", "relay", "trial"]

#: The mesh seed every check uses: the same YAML gives the same counts every time.
SEED = 7
#: q1: highest acceptable median latency of a hung request (0.2 s asked, plus the proxies' time).
BUDGET_MS = 220.0
#: q1: highest acceptable p99 latency of a hung request (a p99 of 20 samples is their maximum).
MAX_MS = 400.0
#: q2: most tries (first try + retries) a failing request may get.
MAX_TRIES = 5
#: q2: sequential requests to the flaky endpoint.
FLAKY_REQUESTS = 200

FQDN = "httpbin.default.svc.cluster.local"
NORMAL_PATH = "/delay/0.01"
HUNG_PATH = "/delay/0.6"
FLAKY_PATH = "/flaky/percent/30"


@contextmanager
def httpbin_mesh(seed: int = SEED) -> Iterator[Any]:
    """A fresh, started mesh running two replicas of httpbin; stopped on exit (after the apps
    have finished any request still running)."""
    from meshlab import Mesh
    from meshlab.apps import httpbin

    mesh = Mesh(seed=seed).start()
    try:
        mesh.deploy("httpbin", httpbin.make_app(), replicas=2)
        yield mesh
    finally:
        _settle(mesh)
        mesh.stop()


def _settle(mesh: Any, limit_s: float = 3.0) -> None:
    """Wait until no app is still working on a request (a timeout frees the caller only)."""
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline and any(
        r.in_flight for name in mesh.services for r in mesh.replicas(name)
    ):
        time.sleep(0.02)


# -- reading the learner's YAML -------------------------------------------------------------------


def _parse(text: Any, var: str) -> list[Resource]:
    """The learner's VirtualService for httpbin, validated like Istio's admission; Incorrect if unusable."""
    resources = load_yaml_answer(
        text, var, "a whole VirtualService in YAML, several lines long, starting with `apiVersion:` and `kind:`."
    )
    if [r.kind for r in resources] != ["VirtualService"]:
        raise Incorrect(
            f"`{var}` should hold exactly one VirtualService, for httpbin (found {describe_kinds(resources)})."
        )
    return resources


def _apply(mesh: Any, resources: list[Resource]) -> None:
    """Apply the learner's VirtualService and make sure the client's sidecar routes httpbin with it."""
    mesh.apply(resources)
    vs = resources[0]
    routes = mesh.proxy_config("curl")
    mine = routes[(routes["host"] == FQDN) & (routes["from"] == f"virtualservice/{vs.namespace}/{vs.name}")]
    if mine.empty:
        raise Incorrect(
            "your VirtualService does not change how the sidecars route to `httpbin`: check "
            "`spec.hosts` (the service it is for), the namespace, and `gateways` (without it, "
            "the rules apply to every sidecar of the mesh)."
        )


# -- sending traffic --------------------------------------------------------------------------------


def _tries(response: Any) -> int:
    return int(response.headers.get("x-meshlab-attempts") or 1)


def _flags(response: Any) -> str:
    return response.headers.get("x-meshlab-response-flags") or "-"


def _routing_problem(status: int, flags: str, path: str) -> None:
    """Incorrect for answers that show the route itself is broken (no route, no subset, fault)."""
    if status == 404 and "NR" in flags:
        raise Incorrect(
            f"`{path}` found no route (404, flag NR): once a VirtualService exists for a host, "
            "requests that match none of its routes are refused. Every path of httpbin needs a route."
        )
    if status == 503 and "NC" in flags:
        raise Incorrect(
            f"`{path}` got 503 NC: your route names a subset, and no DestinationRule defines "
            "subsets for httpbin here. Route to the host alone."
        )
    if "FI" in flags or "DI" in flags:
        raise Incorrect(
            f"`{path}` was answered by fault injection (flag {flags}): this exercise is about what "
            "the sidecar does with a real service, so leave `fault` out. (An injected fault is "
            "never cut by a timeout nor retried: the fault filter runs before the router.)"
        )


# -- a playground -----------------------------------------------------------------------------------


def trial(
    vs_yaml: Any, path: str = HUNG_PATH, requests: int = 20, concurrency: int = 5
) -> pd.DataFrame | None:
    """Apply ``vs_yaml`` to a fresh mesh running httpbin and send ``requests`` requests to ``path``
    (``concurrency`` at a time): a place to try a VirtualService before checking it. Returns one
    row per (status, response flags) with the count, the p50/p99 latency in ms and the tries each
    request made on average (from httpbin's access log)."""
    resources = playground_yaml(vs_yaml, "trial()")
    if resources is None:
        return None
    with httpbin_mesh() as mesh:
        mesh.apply(resources)
        result = mesh.load("httpbin", path, concurrency=concurrency, requests=requests, progress=False)
        received = len(mesh.access_log(service="httpbin", reporter="destination"))
    df = result.df
    table = df.groupby(["status", "response_flags"])["latency_ms"].agg(
        requests="size", p50_ms=lambda s: s.quantile(0.5), p99_ms=lambda s: s.quantile(0.99)
    )
    table["tries_per_request"] = received / len(df) if len(df) else 0.0
    return table.round(1)


# -- the questions ------------------------------------------------------------------------------------

FAIL_FAST_SOLUTION = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin
  http:
  - route:
    - destination:
        host: httpbin
    timeout: 0.1s
"""

RETRIES_SOLUTION = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: httpbin
spec:
  hosts:
  - httpbin
  http:
  - route:
    - destination:
        host: httpbin
    retries:
      attempts: 4
      retryOn: connect-failure,refused-stream,503
"""


class FailFast(Question):
    """A route timeout for httpbin: hung requests fail fast (504 UT), normal ones still work."""

    _vars = ["fail_fast_vs"]
    _error_prefix = "checking your VirtualService raised an error"
    _solution_lang = "yaml"
    _solution = FAIL_FAST_SOLUTION
    _hint = [
        "Istio sets no route timeout unless you write one: without it, a caller waits as long as the "
        "service takes.",
        "A route of a VirtualService can say how long the caller's sidecar waits for the whole answer. "
        "When that time is up, the sidecar answers 504 with the response flag UT.",
        "Pick a value well above the normal latency (about 10 ms, plus a few ms for the proxies) and "
        "below the 0.2 s budget. Durations are written like `1.5s` or `300ms`.",
    ]

    REQUESTS = 20

    def check(self, fail_fast_vs: Any) -> str:
        resources = _parse(fail_fast_vs, "fail_fast_vs")
        with httpbin_mesh() as mesh:
            _apply(mesh, resources)
            probe = mesh.call("httpbin", HUNG_PATH)
            normal = mesh.load("httpbin", NORMAL_PATH, concurrency=2, requests=self.REQUESTS, progress=False)
            hung = mesh.load("httpbin", HUNG_PATH, concurrency=5, requests=self.REQUESTS, progress=False)
        _routing_problem(probe.status_code, _flags(probe), HUNG_PATH)
        n = self.REQUESTS
        normal_failed = normal.df[normal.df["status"] != 200]
        if len(normal_failed):
            flags = Counter(normal_failed["response_flags"])
            if flags.get("UT"):
                raise Incorrect(
                    f"{len(normal_failed)} of {n} normal requests (`{NORMAL_PATH}`, about 10 ms of work) "
                    "failed with 504 UT: your timeout does not leave the service time for its normal "
                    "answers. A timeout should sit well above the usual latency."
                )
            _routing_problem(
                int(normal_failed["status"].iloc[0]),
                str(normal_failed["response_flags"].iloc[0]),
                NORMAL_PATH,
            )
            raise Incorrect(
                f"{len(normal_failed)} of {n} normal requests failed ({_counts(normal_failed)}). "
                "Look at `mesh.access_log(service='httpbin')` in a `trial()` to see why."
            )
        p50, p99 = (float(v) for v in hung.percentiles((50, 99)).values())
        statuses = Counter(hung.df["status"])
        ut = int(hung.df["response_flags"].str.contains("UT").sum())
        if statuses.get(200, 0) == n:
            raise Incorrect(
                f"every hung request (`{HUNG_PATH}`) still got its answer, after about {p99:.0f} ms: "
                "nothing stops a slow request. Istio sets no route timeout unless a route asks "
                "for one."
            )
        if ut < n:
            raise Incorrect(
                f"only {ut} of {n} hung requests ended with 504 UT ({_counts(hung.df)}): every "
                "request that hangs should be cut off by the caller's sidecar."
            )
        if p50 > BUDGET_MS or p99 > MAX_MS:
            raise Incorrect(
                f"hung requests now fail with 504 UT, but only after about {p50:.0f} ms: the "
                "budget is 0.2 s. If you also set retries, remember that the route timeout bounds "
                "all the tries together, and `perTryTimeout` each one."
            )
        return (
            "hung requests fail fast with 504 UT, within the 0.2 s budget, and normal requests still "
            "succeed: the caller's sidecar enforces the route timeout."
        )


def _counts(df: pd.DataFrame) -> str:
    pairs = Counter(zip(df["status"], df["response_flags"], strict=True))
    return ", ".join(f"{n} x {s} {f}" for (s, f), n in sorted(pairs.items()))


class FlakyRetries(Question):
    """Retries that take /flaky/percent/30 above 99 % success, without retrying a 500."""

    _vars = ["retries_vs"]
    _error_prefix = "checking your VirtualService raised an error"
    _solution_lang = "yaml"
    _solution = RETRIES_SOLUTION
    _hint = [
        "If 30 % of tries fail, independently, a request fails only when all its tries fail: "
        "0.3 to the power of the number of tries. How many tries give less than 1 % failures?",
        "`retries.attempts` counts retries, not tries: the first try comes on top.",
        "Istio's default retry conditions include 503 but not 500. If you write `retryOn`, it replaces "
        "them: `5xx` retries every 5xx, a status code such as `503` in the list retries just that one.",
    ]

    def check(self, retries_vs: Any) -> str:
        resources = _parse(retries_vs, "retries_vs")
        with httpbin_mesh() as mesh:
            _apply(mesh, resources)
            r500 = mesh.call("httpbin", "/status/500")
            r503 = mesh.call("httpbin", "/status/503")
            if (
                r500.status_code == 500
                and _tries(r500) == 1
                and r503.status_code == 503
                and 1 < _tries(r503) <= MAX_TRIES
            ):
                flaky = mesh.load(
                    "httpbin", FLAKY_PATH, concurrency=1, requests=FLAKY_REQUESTS, progress=False
                )
            else:
                flaky = None
        for r, path in ((r500, "/status/500"), (r503, "/status/503")):
            _routing_problem(r.status_code, _flags(r), path)
        if _tries(r500) > 1:
            raise Incorrect(
                f"a 500 was tried {_tries(r500)} times. In this service a 500 means the request was "
                "processed and failed for good: trying again only repeats the work. Which retry "
                "conditions did you list?"
            )
        tries_503 = _tries(r503)
        if tries_503 == 1:
            raise Incorrect(
                "a 503 is not retried at all with your VirtualService. Check `attempts`, and if you "
                "wrote `retryOn`, that it still covers 503 (it replaces Istio's default conditions)."
            )
        if tries_503 > MAX_TRIES:
            raise Incorrect(
                f"a request that keeps failing was tried {tries_503} times; at most {MAX_TRIES} are "
                "allowed. When a service is really down, every extra try is extra load on it."
            )
        assert flaky is not None
        ok = int((flaky.df["status"] == 200).sum())
        n = len(flaky.df)
        if ok < 0.99 * n:
            raise Incorrect(
                f"{ok} of {n} requests succeeded ({ok / n:.1%}), below 99 %: each failing request "
                f"got {tries_503} tries. How many tries make 0.3 ** tries smaller than 1 %?"
            )
        return (
            f"{ok} of {n} requests to `{FLAKY_PATH}` succeeded, a failing request gets {tries_503} tries, "
            "and a 500 is never retried."
        )


class StormCount(Question):
    """How many requests reach B and C when two hops retry with Istio's default and C always fails."""

    _vars = ["requests_to_b", "requests_to_c"]
    _solution_lang = ""
    _solution = (
        "`requests_to_b = 3` and `requests_to_c = 9`. A's sidecar tries B 3 times (Istio's "
        "default: 2 retries); each of those requests makes B call C, and B's sidecar tries C "
        "3 times: 3 x 3 = 9."
    )
    _hint = [
        "Istio's default is 2 retries: how many tries is that per hop?",
        "Each request that B receives starts B's own call to C from scratch, with its own retries.",
    ]

    def check(self, requests_to_b: Any, requests_to_c: Any) -> str:
        for name, value in (("requests_to_b", requests_to_b), ("requests_to_c", requests_to_c)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise Incorrect(f"`{name}` should be a whole number (an int), not `{type(value).__name__}`.")
        if requests_to_b != 3:
            if requests_to_b in (1, 2):
                raise Incorrect(
                    f"B receives more than {requests_to_b}: A's sidecar retries, and Istio's default "
                    "is 2 *retries*, on top of the first try."
                )
            raise Incorrect(
                f"B receives the tries of A's sidecar only (the call into A is not retried); "
                f"{requests_to_b} is not the number of tries of Istio's default policy."
            )
        if requests_to_c != 9:
            if requests_to_c == 3:
                raise Incorrect(
                    "3 is what C would get if only B's sidecar retried. A's sidecar retries too, and "
                    "each request B receives makes B call C again, with its own retries."
                )
            if requests_to_c == 6:
                raise Incorrect(
                    "retries along a chain multiply, they do not add up: every request B receives "
                    "starts a whole new series of tries to C."
                )
            if requests_to_c == 27:
                raise Incorrect(
                    "27 would need three retrying hops. Here the call into A is not retried: only "
                    "the hops A -> B and B -> C retry."
                )
            raise Incorrect(
                f"C does not receive {requests_to_c}: count the tries B's sidecar makes for *each* "
                "request B receives."
            )
        measured = _measure_storm()
        return (
            f"B receives 3 and C receives 3 x 3 = 9. Measured on a fresh mesh: B received {measured['b']} "
            f"and C {measured['c']} for one user request, which failed anyway."
        )


def relay(next_service: str) -> FastAPI:
    """A service that calls ``next_service`` with the same path (GET) and passes its status on."""
    import meshlab

    app = FastAPI(title=f"relay to {next_service}")

    @app.get("/{path:path}")
    async def forward(path: str, request: Request) -> JSONResponse:
        r = await meshlab.client().get(
            f"http://{next_service}/{path}", headers=meshlab.propagation_headers(request)
        )
        return JSONResponse({"via": next_service, "status": r.status_code}, status_code=r.status_code)

    return app


NO_RETRIES_INTO_A = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: a
spec:
  hosts:
  - a
  http:
  - route:
    - destination:
        host: a
    retries:
      attempts: 0
"""


def _measure_storm() -> dict[str, int]:
    """One request into a -> b -> c (c: always 503); requests received per service."""
    from meshlab import Mesh
    from meshlab.apps import httpbin

    mesh = Mesh(seed=SEED).start()
    try:
        mesh.deploy("a", relay("b"))
        mesh.deploy("b", relay("c"))
        mesh.deploy("c", httpbin.make_app("c"))
        mesh.apply(NO_RETRIES_INTO_A)
        mesh.call("a", "/status/503")
        received = mesh.access_log(reporter="destination")["destination_workload"].value_counts()
    finally:
        mesh.stop()
    return {svc: int(received.get(f"{svc}-v1", 0)) for svc in ("a", "b", "c")}


q1 = FailFast()
q2 = FlakyRetries()
q3 = StormCount()

__all__ = [*__all__, *bind_questions(globals())]
