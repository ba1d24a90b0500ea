"""The e-commerce shop: the same features built as a monolith and as microservices.

Six features (login, product listing, product details, add to cart, checkout, payment) and a
storefront (the home page) are built three times from the *same feature code*:

* ``monolith()``: one FastAPI app with every route, deployed as ONE service, ``shop``. Features
  call each other in memory. A fatal fault in any feature takes the whole process down.
* ``microservices()``: one FastAPI app per service (``storefront``, ``login``, ``listing``,
  ``details``, ``cart``, ``checkout``, ``payment``). A service calls another by name through
  its sidecar (``meshlab.client()``): discovery, load balancing, retries and telemetry are the
  mesh's job.
* ``diy_microservices()``: the same services, each carrying its own copy of the communication
  code (``DiyComms``: discovery, round-robin, retries, request logging) and calling the other
  services' app ports directly, as microservices did before service meshes.

Call edges (the picture in ``images/monolith-vs-microservices.png``)::

    storefront ──> listing, details        checkout ──> cart, payment        login (alone)

Work model. Each feature spends a service time (``ServiceSpec.latency_ms`` plus an exponential
tail) while holding one of its pod's workers (``Work.capacity``); extra requests wait in a
queue of ``queue`` places, then get 503. A service pod has 4 workers; the monolith pod has
``MONOLITH_WORKERS`` for every feature together, and its memory footprint is the sum of all
features' (every replica loads all the code, caches and pools). Figures are illustrative and
scaled down: real service times are similar, but a real pod takes tens of seconds to restart,
here about one second.

Faults. ``Faults.crash("cart")`` arms a fatal fault in the cart code: the next request that
runs it crashes the *process* running it (``current_replica().crash(restart_after=...)``), the
monolith pod or the cart pod.
"""

from __future__ import annotations

import ast
import asyncio
import inspect
import io
import random
import textwrap
import threading
import time
import tokenize
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pandas as pd
from fastapi import FastAPI, HTTPException, Request
from pydantic import BaseModel

import meshlab
from meshlab.workload import Work, current_replica

if TYPE_CHECKING:
    from meshlab.mesh import Mesh

__all__ = [
    "BASELINE", "FEATURES", "availability", "MONOLITH", "MONOLITH_WORKERS", "SERVICES", "Crash", "DiyComms", "Faults",
    "Feature", "MeshCalls", "ServiceSpec", "Store", "Traffic", "business_lines", "code_lines", "communication_lines",
    "deploy_diy", "deploy_microservices", "deploy_monolith", "diy_microservices", "diy_url", "drive",
    "footprint_mb", "microservices", "monolith", "monolith_work", "service_table", "service_work",
]

MONOLITH = "shop"
MONOLITH_WORKERS = 8


@dataclass(frozen=True)
class ServiceSpec:
    """One service of the shop: its service time, workers per pod, queue, memory, calls."""

    name: str
    latency_ms: float
    workers: int
    queue: int
    footprint_mb: float
    calls: tuple[str, ...] = ()

    @property
    def jitter_ms(self) -> float:
        """Mean of the exponential tail added to the service time."""
        return self.latency_ms / 4


SERVICES: dict[str, ServiceSpec] = {s.name: s for s in [
    ServiceSpec("storefront", 10, 4, 16, 128, ("listing", "details")),
    ServiceSpec("login", 30, 4, 16, 192),
    ServiceSpec("listing", 30, 4, 16, 256),
    ServiceSpec("details", 15, 4, 16, 192),
    ServiceSpec("cart", 80, 4, 16, 160),
    ServiceSpec("checkout", 30, 4, 16, 192, ("cart", "payment")),
    ServiceSpec("payment", 40, 4, 16, 256),
]}


@dataclass(frozen=True)
class Feature:
    """What a user does: one request to one service."""

    name: str
    service: str
    method: str
    path: str
    body: dict[str, Any] | None = None


FEATURES: dict[str, Feature] = {f.name: f for f in [
    Feature("home", "storefront", "GET", "/"),
    Feature("login", "login", "POST", "/login", {"user": "alice", "password": "wonderland"}),
    Feature("listing", "listing", "GET", "/products"),
    Feature("details", "details", "GET", "/products/3"),
    Feature("cart", "cart", "POST", "/cart/items", {"user": "alice", "product": 3, "quantity": 1}),
    Feature("checkout", "checkout", "POST", "/checkout", {"user": "alice"}),
]}

#: Everyday traffic, requests per second per feature.
BASELINE: dict[str, float] = {f: 12.0 for f in FEATURES}


def service_work(name: str) -> Work:
    """The work model of one pod of service ``name`` (workers, queue, footprint)."""
    s = SERVICES[name]
    return Work(capacity=s.workers, queue=s.queue, footprint_mb=s.footprint_mb)


def monolith_work() -> Work:
    """The work model of one monolith pod: ``MONOLITH_WORKERS`` workers, every feature's memory."""
    return Work(capacity=MONOLITH_WORKERS, queue=4 * MONOLITH_WORKERS,
                footprint_mb=sum(s.footprint_mb for s in SERVICES.values()))


def service_table() -> pd.DataFrame:
    """The services, their work model and calls, and the monolith pod for comparison."""
    rows = [{"service": s.name, "service time (ms)": s.latency_ms, "workers per pod": s.workers,
             "memory per pod (MB)": s.footprint_mb, "calls": ", ".join(s.calls) or "-"} for s in SERVICES.values()]
    mono = monolith_work()
    rows.append({"service": f"{MONOLITH} (monolith)", "service time (ms)": float("nan"),
                 "workers per pod": mono.capacity, "memory per pod (MB)": mono.footprint_mb,
                 "calls": "everything, in memory"})
    return pd.DataFrame(rows).set_index("service")


# -- data and faults ------------------------------------------------------------------------
PRODUCTS = {i: {"id": i, "name": name, "price": price} for i, (name, price) in enumerate(
    [("mug", 8.0), ("t-shirt", 15.0), ("hoodie", 35.0), ("sneakers", 60.0), ("backpack", 45.0),
     ("cap", 12.0), ("socks", 5.0), ("scarf", 18.0)], start=1)}


class Store:
    """The shop's database (one per shop, shared by its services): carts, orders, payments."""

    def __init__(self) -> None:
        self.carts: dict[str, dict[int, int]] = {}
        self.orders = 0
        self.payments = 0

    def add_to_cart(self, user: str, product: int, quantity: int) -> dict[str, Any]:
        """Add ``quantity`` of ``product`` to ``user``'s cart."""
        if product not in PRODUCTS:
            raise HTTPException(404, f"no product {product}")
        cart = self.carts.setdefault(user, {})
        cart[product] = cart.get(product, 0) + quantity
        return {"user": user, "items": sum(cart.values())}

    def cart(self, user: str) -> dict[str, Any]:
        """``user``'s cart with its total."""
        items = [{"product": p, "quantity": q, "price": PRODUCTS[p]["price"]}
                 for p, q in sorted(self.carts.get(user, {}).items())]
        return {"user": user, "items": items, "total": sum(i["quantity"] * i["price"] for i in items)}

    def pay(self, user: str, amount: float) -> dict[str, Any]:
        """Capture a payment."""
        self.payments += 1
        return {"payment": self.payments, "user": user, "amount": amount, "status": "captured"}

    def order(self, user: str, cart: dict[str, Any], payment: dict[str, Any]) -> dict[str, Any]:
        """Record an order."""
        self.orders += 1
        return {"order": self.orders, "user": user, "items": len(cart["items"]), "total": cart["total"],
                "paid": payment["status"] == "captured"}


@dataclass(frozen=True)
class Crash:
    """One crash caused by a fault: when (``time.perf_counter()``), which pod, which feature code."""

    t: float
    pod: str
    service: str


class Faults:
    """Fatal faults placed in feature code. ``crash("cart")`` arms one: the next ``times``
    requests that run the cart code crash the process running them (``times=None``: every one,
    a crash loop, until ``clear()``)."""

    def __init__(self) -> None:
        self._armed: dict[str, tuple[int | None, float]] = {}
        self.crashes: list[Crash] = []
        self._lock = threading.Lock()

    def crash(self, service: str, times: int | None = 1, restart_after: float = 1.0) -> None:
        """Arm a fatal fault in the code of ``service`` (pods restart after ``restart_after`` s)."""
        if service not in SERVICES:
            raise ValueError(f"no service {service!r} in the shop; services: {', '.join(SERVICES)}")
        with self._lock:
            self._armed[service] = (times, restart_after)

    def clear(self) -> None:
        """Disarm every fault."""
        with self._lock:
            self._armed.clear()

    def _take(self, service: str) -> float | None:
        with self._lock:
            armed = self._armed.get(service)
            if armed is None:
                return None
            times, restart_after = armed
            if times is not None:
                if times <= 1:
                    del self._armed[service]
                else:
                    self._armed[service] = (times - 1, restart_after)
            return restart_after

    async def trip(self, service: str) -> None:
        """Called by feature code: crash the current process if a fault is armed here."""
        restart_after = self._take(service)
        if restart_after is None:
            return
        replica = current_replica()
        if replica is None:  # outside a mesh (unit tests): a fatal error
            raise RuntimeError(f"fatal fault in {service}")
        self.crashes.append(Crash(time.perf_counter(), replica.name, service))
        replica.crash(restart_after=restart_after)
        await asyncio.sleep(60)  # the crash closes the server and cancels this request
        raise RuntimeError(f"fatal fault in {service}")


class _Code:
    """What every build shares: the store, the faults, and the time each feature's work takes."""

    def __init__(self, store: Store | None, faults: Faults | None, fixed: Iterable[str]) -> None:
        self.store = store or Store()
        self.faults = faults or Faults()
        self.fixed = frozenset(fixed)

    async def work(self, service: str) -> None:
        """The work of one request of ``service``'s code (and its fault, unless fixed)."""
        spec = SERVICES[service]
        replica = current_replica()
        rng = replica.rng if replica is not None else random.Random(0)
        await asyncio.sleep((spec.latency_ms + rng.expovariate(1.0 / spec.jitter_ms)) / 1000.0)
        if service not in self.fixed:
            await self.faults.trip(service)


class Login(BaseModel):
    """Login form."""

    user: str
    password: str


class CartItem(BaseModel):
    """Add-to-cart form."""

    user: str
    product: int
    quantity: int = 1


class Checkout(BaseModel):
    """Checkout form."""

    user: str


class Payment(BaseModel):
    """A payment request."""

    user: str
    amount: float


def _health(app: FastAPI) -> None:
    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}


# -- the monolith ---------------------------------------------------------------------------
def monolith(store: Store | None = None, faults: Faults | None = None, fixed: Iterable[str] = ()) -> FastAPI:
    """The whole shop as one app. ``fixed``: services whose fault is fixed in this build."""
    code = _Code(store, faults, fixed)
    db = code.store
    app = FastAPI(title="shop (monolith)")
    _health(app)

    async def list_products() -> list[dict[str, Any]]:
        await code.work("listing")
        return list(PRODUCTS.values())

    async def product(pid: int) -> dict[str, Any]:
        await code.work("details")
        if pid not in PRODUCTS:
            raise HTTPException(404, f"no product {pid}")
        return PRODUCTS[pid]

    async def view_cart(user: str) -> dict[str, Any]:
        await code.work("cart")
        return db.cart(user)

    async def pay(user: str, amount: float) -> dict[str, Any]:
        await code.work("payment")
        return db.pay(user, amount)

    @app.get("/")
    async def home() -> dict[str, Any]:
        await code.work("storefront")
        products = await list_products()
        featured = await product(products[2]["id"])
        return {"products": len(products), "featured": featured["name"]}

    @app.post("/login")
    async def login(form: Login) -> dict[str, str]:
        await code.work("login")
        return {"user": form.user, "token": f"token-{form.user}"}

    @app.get("/products")
    async def products() -> list[dict[str, Any]]:
        return await list_products()

    @app.get("/products/{pid}")
    async def details(pid: int) -> dict[str, Any]:
        return await product(pid)

    @app.post("/cart/items")
    async def add_to_cart(item: CartItem) -> dict[str, Any]:
        await code.work("cart")
        return db.add_to_cart(item.user, item.product, item.quantity)

    @app.get("/cart")
    async def cart(user: str) -> dict[str, Any]:
        return await view_cart(user)

    @app.post("/checkout")
    async def checkout(form: Checkout) -> dict[str, Any]:
        await code.work("checkout")
        contents = await view_cart(form.user)
        payment = await pay(form.user, contents["total"])
        return db.order(form.user, contents, payment)

    @app.post("/payment")
    async def payment(form: Payment) -> dict[str, Any]:
        return await pay(form.user, form.amount)

    return app


# -- microservices --------------------------------------------------------------------------
class MeshCalls:
    """How a service calls another in a mesh: name it; the sidecar does the rest."""

    async def request(self, incoming: Request, method: str, service: str, path: str,
                      json: Any = None) -> httpx.Response:
        """Send ``method path`` to ``service`` through this pod's sidecar."""
        headers = meshlab.propagation_headers(incoming)
        return await meshlab.client().request(method, f"http://{service}{path}", json=json, headers=headers)


async def _call(comms: Any, incoming: Request, method: str, service: str, path: str, json: Any = None) -> Any:
    """Call ``service`` and return its JSON; a failed dependency makes this request fail (503)."""
    r = await comms.request(incoming, method, service, path, json)
    if r.status_code >= 500:
        raise HTTPException(503, f"{service} unavailable ({r.status_code})")
    return r.json()


def _service_apps(code: _Code, comms: Callable[[str], Any]) -> dict[str, FastAPI]:
    """The seven services; ``comms(name)`` gives each its way of calling the others."""
    db = code.store
    apps = {name: FastAPI(title=name) for name in SERVICES}
    for name, app in apps.items():
        app.state.comms = comms(name)
        _health(app)
    front, login_, listing, details_, cart_, checkout_, payment_ = apps.values()

    @front.get("/")
    async def home(request: Request) -> dict[str, Any]:
        await code.work("storefront")
        products = await _call(front.state.comms, request, "GET", "listing", "/products")
        featured = await _call(front.state.comms, request, "GET", "details", f"/products/{products[2]['id']}")
        return {"products": len(products), "featured": featured["name"]}

    @login_.post("/login")
    async def login(form: Login) -> dict[str, str]:
        await code.work("login")
        return {"user": form.user, "token": f"token-{form.user}"}

    @listing.get("/products")
    async def products() -> list[dict[str, Any]]:
        await code.work("listing")
        return list(PRODUCTS.values())

    @details_.get("/products/{pid}")
    async def details(pid: int) -> dict[str, Any]:
        await code.work("details")
        if pid not in PRODUCTS:
            raise HTTPException(404, f"no product {pid}")
        return PRODUCTS[pid]

    @cart_.post("/cart/items")
    async def add_to_cart(item: CartItem) -> dict[str, Any]:
        await code.work("cart")
        return db.add_to_cart(item.user, item.product, item.quantity)

    @cart_.get("/cart")
    async def cart(user: str) -> dict[str, Any]:
        await code.work("cart")
        return db.cart(user)

    @checkout_.post("/checkout")
    async def checkout(form: Checkout, request: Request) -> dict[str, Any]:
        await code.work("checkout")
        contents = await _call(checkout_.state.comms, request, "GET", "cart", f"/cart?user={form.user}")
        payment = await _call(checkout_.state.comms, request, "POST", "payment", "/payment",
                              {"user": form.user, "amount": contents["total"]})
        return db.order(form.user, contents, payment)

    @payment_.post("/payment")
    async def payment(form: Payment) -> dict[str, Any]:
        await code.work("payment")
        return db.pay(form.user, form.amount)

    return apps


def microservices(store: Store | None = None, faults: Faults | None = None,
                  fixed: Iterable[str] = ()) -> dict[str, FastAPI]:
    """The shop as seven services that call each other through their sidecars."""
    code = _Code(store, faults, fixed)
    apps = _service_apps(code, lambda name: MeshCalls())
    for name, app in apps.items():
        app.state.communication_code = [MeshCalls] if SERVICES[name].calls else []
    return apps


# -- microservices without a mesh: every service carries its own communication code ---------
class DiyComms:
    """The communication code each service carries when there is no mesh.

    Discovery: ask the registry (``lookup``, like a Consul or Eureka client) for the addresses
    of a service, cached for ``cache_ttl`` seconds. Load balancing: round-robin. Retries: up to
    ``retries`` more attempts on connection errors and 502/503/504. Telemetry: every request in
    and out is written to ``log``."""

    RETRIABLE = (502, 503, 504)

    def __init__(self, service: str, lookup: Callable[[str], list[str]], retries: int = 2,
                 timeout: float = 2.0, cache_ttl: float = 0.5, log_size: int = 10_000) -> None:
        self.service = service
        self.lookup = lookup
        self.retries = retries
        self.timeout = timeout
        self.cache_ttl = cache_ttl
        self.log: deque[dict[str, Any]] = deque(maxlen=log_size)
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._next: dict[str, int] = {}
        self._http: httpx.AsyncClient | None = None

    def endpoints(self, service: str) -> list[str]:
        """Service discovery: the addresses of ``service``, from the cache or the registry."""
        now = time.monotonic()
        cached = self._cache.get(service)
        if cached is None or now - cached[0] > self.cache_ttl:
            cached = (now, list(self.lookup(service)))
            self._cache[service] = cached
        return cached[1]

    def pick(self, service: str) -> str:
        """Load balancing: the next address of ``service``, round-robin."""
        addresses = self.endpoints(service)
        if not addresses:
            raise httpx.ConnectError(f"no endpoints for {service}")
        i = self._next.get(service, 0)
        self._next[service] = i + 1
        return addresses[i % len(addresses)]

    def record(self, direction: str, method: str, target: str, status: int, started: float) -> None:
        """Request logging: one line per request in or out."""
        self.log.append({"service": self.service, "direction": direction, "method": method, "target": target,
                         "status": status, "duration_ms": round((time.perf_counter() - started) * 1000, 2)})

    def http(self) -> httpx.AsyncClient:
        """The HTTP client (no keep-alive: each call opens and closes its connection)."""
        if self._http is None:
            limits = httpx.Limits(max_keepalive_connections=0)
            self._http = httpx.AsyncClient(timeout=self.timeout, limits=limits)
        return self._http

    async def request(self, incoming: Request, method: str, service: str, path: str,
                      json: Any = None) -> httpx.Response:
        """Call ``service`` with discovery, round-robin, retries and logging."""
        headers = {"x-request-id": incoming.headers.get("x-request-id", "")}
        response = httpx.Response(503, text=f"{service}: no attempt made")
        for _attempt in range(self.retries + 1):
            started = time.perf_counter()
            try:
                address = self.pick(service)
                response = await self.http().request(method, f"http://{address}{path}", json=json, headers=headers)
            except httpx.TransportError as exc:
                response = httpx.Response(503, text=f"{service}: {exc}")
            self.record("out", method, f"{service}{path}", response.status_code, started)
            if response.status_code not in self.RETRIABLE:
                break
        return response


def _log_requests(app: FastAPI) -> Callable[..., Any]:
    """Request logging for incoming requests (an HTTP middleware writing to the app's DiyComms log)."""

    async def log_request(request: Request, call_next: Callable[..., Any]) -> Any:
        started = time.perf_counter()
        response = await call_next(request)
        app.state.comms.record("in", request.method, request.url.path, response.status_code, started)
        return response

    app.middleware("http")(log_request)
    return log_request


def diy_microservices(lookup: Callable[[str], list[str]], store: Store | None = None,
                      faults: Faults | None = None, fixed: Iterable[str] = ()) -> dict[str, FastAPI]:
    """The seven services, each with its own ``DiyComms``; ``lookup(name)`` is the registry."""
    code = _Code(store, faults, fixed)
    apps = _service_apps(code, lambda name: DiyComms(name, lookup))
    for app in apps.values():
        middleware = _log_requests(app)
        app.state.communication_code = [DiyComms, middleware]
    return apps


# -- deploying ------------------------------------------------------------------------------
def deploy_monolith(mesh: Mesh, replicas: int = 1, *, store: Store | None = None,
                    faults: Faults | None = None) -> FastAPI:
    """Deploy the monolith as one service, ``shop``."""
    app = monolith(store, faults)
    mesh.deploy(MONOLITH, app, replicas=replicas, work=monolith_work())
    return app


def deploy_microservices(mesh: Mesh, replicas: int | dict[str, int] = 1, *, store: Store | None = None,
                         faults: Faults | None = None, namespace: str | None = None) -> dict[str, FastAPI]:
    """Deploy the seven services (``replicas``: one number, or per service)."""
    apps = microservices(store, faults)
    for name, app in apps.items():
        n = replicas if isinstance(replicas, int) else replicas.get(name, 1)
        mesh.deploy(name, app, replicas=n, work=service_work(name), namespace=namespace)
    return apps


def deploy_diy(mesh: Mesh, namespace: str = "diy", replicas: int = 1, *, store: Store | None = None,
               faults: Faults | None = None) -> dict[str, FastAPI]:
    """Deploy the do-it-yourself services in ``namespace``. meshlab hosts their pods, but they
    call each other's app ports directly, never through a sidecar."""

    def lookup(name: str) -> list[str]:
        return [r.server.address for r in mesh.replicas(name, namespace=namespace)
                if r.ready and r.server is not None]

    apps = diy_microservices(lookup, store, faults)
    for name, app in apps.items():
        mesh.deploy(name, app, replicas=replicas, work=service_work(name), namespace=namespace)
    return apps


def diy_url(mesh: Mesh, service: str, namespace: str = "diy") -> str:
    """Base URL of the first pod of a do-it-yourself service (its app port, no sidecar)."""
    replica = mesh.replicas(service, namespace=namespace)[0]
    assert replica.server is not None
    return f"http://{replica.server.address}"


def footprint_mb(mesh: Mesh, services: Iterable[str], namespace: str | None = None) -> float:
    """Memory reserved by the pods of ``services`` (replicas x footprint), in MB."""
    return float(sum(r.work.footprint_mb for s in services for r in mesh.replicas(s, namespace=namespace)))


# -- traffic --------------------------------------------------------------------------------
class Traffic:
    """A mixed load run in progress (``drive(..., background=True)``)."""

    def __init__(self, future: Future[pd.DataFrame], started: dict[str, float]) -> None:
        self.future = future
        self._started = started

    @property
    def t0(self) -> float:
        """When the run started (``time.perf_counter()``); NaN if it has not started yet."""
        return self._started.get("t0", float("nan"))

    def since_start(self, t: float) -> float:
        """A ``time.perf_counter()`` value (e.g. ``Crash.t``) as seconds since the run started."""
        return t - self.t0

    def done(self) -> bool:
        """Whether the run finished."""
        return self.future.done()

    def result(self, timeout: float | None = None) -> pd.DataFrame:
        """Wait for the run and return one row per request (see ``drive``)."""
        return self.future.result(timeout)


def drive(mesh: Mesh, rates: dict[str, float], duration: float, *, build: str = "microservices",
          namespace: str | None = None, background: bool = False) -> pd.DataFrame | Traffic:
    """Send a mix of features at once, each at its own rate (requests/s, open loop), for
    ``duration`` seconds, to the monolith (``build="monolith"``) or the microservices.

    Returns one DataFrame (``mesh.load`` columns plus ``feature``, ``build`` and ``done``: ``t``
    is when a request was due to be sent and ``done`` when its answer arrived, in seconds since
    the run started), or with ``background=True`` a ``Traffic`` at once."""
    if build not in ("monolith", "microservices"):
        raise ValueError("drive: build is 'monolith' or 'microservices'")
    unknown = sorted(set(rates) - set(FEATURES))
    if unknown:
        raise ValueError(f"drive: unknown features {unknown}; features: {', '.join(FEATURES)}")
    started: dict[str, float] = {}

    async def run() -> pd.DataFrame:
        import json

        started["t0"] = time.perf_counter()
        jobs, names = [], []
        for name, rate in rates.items():
            if rate <= 0:
                continue
            f = FEATURES[name]
            service = MONOLITH if build == "monolith" else f.service
            if namespace:
                service = f"{service}.{namespace}"
            body = json.dumps(f.body).encode() if f.body is not None else None
            headers = {"content-type": "application/json"} if body is not None else None
            jobs.append(mesh.aload(service, f.path, method=f.method, body=body, headers=headers,
                                   rate=rate, duration=duration))
            names.append(name)
        results = await asyncio.gather(*jobs)
        frames = [r.df.assign(feature=name, build=build) for name, r in zip(names, results, strict=True)]
        df = pd.concat(frames, ignore_index=True).sort_values("t", kind="stable").reset_index(drop=True)
        df["done"] = df["t"] + df["latency_ms"] / 1000.0
        df.attrs["t0"] = started["t0"]
        return df

    traffic = Traffic(mesh.runtime.submit(run()), started)
    return traffic if background else traffic.result()


def availability(df: pd.DataFrame, by: str = "feature", start: float | None = None,
                 end: float | None = None, time: str = "t") -> pd.Series:
    """Per ``by`` value, the share of requests answered without a 5xx (or a failed connection),
    among those whose ``time`` (``"t"``: sent, ``"done"``: answered) is in ``[start, end)``."""
    t = df[time]
    window = df[(t >= (start if start is not None else -1e18)) & (t < (end if end is not None else 1e18))]
    ok = (window["status"] > 0) & (window["status"] < 500)
    return ok.groupby(window[by], sort=False).mean().rename("availability")


# -- measuring code -------------------------------------------------------------------------
def code_lines(obj: Any) -> int:
    """Lines of code of a function or class: not blank, not comments, not docstrings."""
    source = textwrap.dedent(inspect.getsource(obj))
    docstrings: set[int] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                    first.value.value, str):
                docstrings.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    lines: set[int] = set()
    skip = {tokenize.COMMENT, tokenize.NL, tokenize.NEWLINE, tokenize.INDENT, tokenize.DEDENT, tokenize.ENDMARKER}
    for tok in tokenize.generate_tokens(io.StringIO(source).readline):
        if tok.type not in skip:
            lines.update(range(tok.start[0], tok.end[0] + 1))
    return len(lines - docstrings)


def business_lines(app: FastAPI) -> int:
    """Lines of the service's own request handlers (its business logic)."""
    from fastapi.routing import APIRoute

    return sum(code_lines(r.endpoint) for r in app.routes if isinstance(r, APIRoute))


def communication_lines(app: FastAPI) -> int:
    """Lines of communication code (discovery, balancing, retries, logging) a service carries."""
    return sum(code_lines(obj) for obj in getattr(app.state, "communication_code", []))

