"""Lab 06: gateways. Expose Bookinfo at the edge, then make users stick to one pod.

Every check starts a fresh mesh with Bookinfo (productpage, details, reviews v1-v3, ratings,
all on port 9080 as in Istio's sample), applies the learner's YAML and sends real requests:
through the ingress gateway (``mesh.ingress_url``) with a chosen ``Host`` header for q1 and q2,
from the client workload's sidecar for q3. The verdict comes from what the requests did; the
YAML is only read to explain a failure (which part of the chain did not connect)::

    request --Host--> Gateway (selector, servers[].hosts) --gateways:--> VirtualService
            (hosts, http[].match) --destination--> productpage:9080 --lb--> pod

Questions:

- q1 ``shop_yaml``: a Gateway and a VirtualService exposing productpage at
  ``shop.example.com`` only.
- q2 ``api_yaml``: the same host, but only the JSON API (every path under
  ``/api/v1/products``), not the HTML page ``/productpage``.
- q3 ``sticky_yaml``: a DestinationRule so that every request of a user (header ``end-user``)
  reaches the same productpage pod.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import yaml

from meshlab.labs.core import Incorrect, Question, bind_questions
from meshlab.mesh import Mesh
from meshlab.proxy.gateway import INGRESS_LABELS, host_matches

HOST = "shop.example.com"
OTHER_HOSTS = ("www.example.com", "shop.example.org")

SOLUTION_Q1 = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: shop-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 8080
      name: http
      protocol: HTTP
    hosts:
    - shop.example.com
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: shop
spec:
  hosts:
  - shop.example.com
  gateways:
  - shop-gateway
  http:
  - match:
    - uri:
        exact: /productpage
    route:
    - destination:
        host: productpage
        port:
          number: 9080
"""

SOLUTION_Q2 = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: shop-gateway
spec:
  selector:
    istio: ingressgateway
  servers:
  - port:
      number: 8080
      name: http
      protocol: HTTP
    hosts:
    - shop.example.com
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: shop
spec:
  hosts:
  - shop.example.com
  gateways:
  - shop-gateway
  http:
  - match:
    - uri:
        prefix: /api/v1/products
    route:
    - destination:
        host: productpage
        port:
          number: 9080
"""

SOLUTION_Q3 = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: productpage
spec:
  host: productpage
  trafficPolicy:
    loadBalancer:
      consistentHash:
        httpHeaderName: end-user
"""

STICKY_USERS = tuple(f"user-{i}" for i in range(10))
STICKY_CALLS = 6
PRODUCTPAGE_REPLICAS = 3


# -- running the answer ------------------------------------------------------------------------

@contextmanager
def bookinfo_mesh(productpage_replicas: int = 1) -> Iterator[Mesh]:
    """A fresh, started mesh with Bookinfo deployed (stopped on exit)."""
    from meshlab.apps import bookinfo

    mesh = Mesh(seed=0).start()
    try:
        bookinfo.deploy(mesh)
        if productpage_replicas != 1:
            mesh.scale("productpage", productpage_replicas)
        yield mesh
    finally:
        mesh.stop()


def _documents(answer: Any, variable: str) -> list[dict[str, Any]]:
    """The YAML documents of an answer (raises Incorrect if it is not YAML text)."""
    if not isinstance(answer, str):
        raise Incorrect(f"`{variable}` should be a string holding YAML; yours is a `{type(answer).__name__}`.")
    docs = [d for d in yaml.safe_load_all(answer) if d is not None]
    if not docs or not all(isinstance(d, dict) for d in docs):
        raise Incorrect(f"`{variable}` should hold Istio resources (YAML documents separated by `---`).")
    return docs


def _kinds(docs: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [d for d in docs if d.get("kind") == kind]


def _spec(doc: dict[str, Any]) -> dict[str, Any]:
    spec = doc.get("spec")
    return spec if isinstance(spec, dict) else {}


def _name(doc: dict[str, Any]) -> str:
    meta = doc.get("metadata")
    return str(meta.get("name", "")) if isinstance(meta, dict) else ""


def _require_gateway_and_vs(docs: list[dict[str, Any]], variable: str) -> None:
    if not _kinds(docs, "Gateway"):
        raise Incorrect(f"`{variable}` has no Gateway: the ingress gateway only accepts the ports and hosts "
                        "that a Gateway resource opens on it.")
    if not _kinds(docs, "VirtualService"):
        raise Incorrect(f"`{variable}` has no VirtualService: a Gateway opens a port for some hosts, and a "
                        "VirtualService bound to it says where their requests go.")


def _edge_get(mesh: Mesh, host: str, path: str) -> httpx.Response:
    """GET ``path`` through the ingress gateway with ``Host: host`` (a client outside the mesh)."""
    return httpx.get(mesh.ingress_url + path, headers={"Host": host}, timeout=10.0)


def _served_by(resp: httpx.Response) -> str:
    return resp.headers.get("x-meshlab-upstream") or ""


def _describe(resp: httpx.Response) -> str:
    flags = resp.headers.get("x-meshlab-response-flags") or "-"
    pod = _served_by(resp)
    return f"{resp.status_code} (response flag {flags}" + (f", served by {pod})" if pod else ")")


def _explain_unreachable(docs: list[dict[str, Any]], path: str, resp: httpx.Response) -> str:
    """Why ``GET path`` with ``Host: shop.example.com`` did not reach productpage (no answer given away)."""
    seen = f"GET {path} with `Host: {HOST}` through the gateway got {_describe(resp)}"
    gateways = _kinds(docs, "Gateway")
    selecting = [g for g in gateways if _selects_ingress(_spec(g).get("selector"))]
    if not selecting:
        return (f"{seen}. No gateway proxy picked up your Gateway: its `selector` must match the labels of "
                "Istio's ingress gateway pods (look at the Gateway in the notebook).")
    open_for_host = [g for g in selecting if any(host_matches(h, HOST) for h in _gateway_hosts(g))]
    if not open_for_host:
        return f"{seen}. Your Gateway's servers do not accept the host `{HOST}`."
    names = {_name(g) for g in open_for_host}
    vss = _kinds(docs, "VirtualService")
    bound = [v for v in vss if names & {str(n).split("/")[-1] for n in (_spec(v).get("gateways") or [])}]
    if not bound:
        if all(not _spec(v).get("gateways") for v in vss):
            return (f"{seen}. Your VirtualService has no `gateways` field, so it applies only to the sidecars "
                    "inside the mesh, not to the ingress gateway.")
        return f"{seen}. Your VirtualService's `gateways` list does not name your Gateway ({', '.join(sorted(names))})."
    if not any(any(_vs_host_matches(h) for h in (_spec(v).get("hosts") or [])) for v in bound):
        return f"{seen}. The gateway accepts `{HOST}`, but your VirtualService's `hosts` do not include it."
    flags = resp.headers.get("x-meshlab-response-flags") or ""
    if flags == "NR":
        return f"{seen}. The host is accepted, but no route of your VirtualService matches the path {path}."
    if flags == "NC":
        return (f"{seen}. The route's destination is a cluster that does not exist: check the destination's "
                "host and port (Bookinfo's services listen on port 9080).")
    pod = _served_by(resp)
    if pod and not pod.startswith("productpage-"):
        return f"{seen}: the request reached {pod.rsplit('-', 2)[0]}, not productpage. Check the route's destination."
    return f"{seen}. Follow the request: Gateway, then VirtualService route, then destination."


def _selects_ingress(selector: Any) -> bool:
    return isinstance(selector, dict) and bool(selector) and all(
        INGRESS_LABELS.get(str(k)) == str(v) for k, v in selector.items())


def _gateway_hosts(gw: dict[str, Any]) -> list[str]:
    return [str(h) for s in (_spec(gw).get("servers") or []) if isinstance(s, dict) for h in (s.get("hosts") or [])]


def _vs_host_matches(pattern: Any) -> bool:
    return host_matches(str(pattern), HOST)


def _reaches_productpage(resp: httpx.Response) -> bool:
    return resp.status_code == 200 and _served_by(resp).startswith("productpage-")


def _check_other_hosts_refused(mesh: Mesh, path: str) -> None:
    for other in (*OTHER_HOSTS, mesh.ingress_url.split("//", 1)[1]):
        resp = _edge_get(mesh, other, path)
        if resp.status_code != 404:
            raise Incorrect(f"GET {path} with `Host: {other}` got {_describe(resp)}: the shop must answer only "
                            f"for `{HOST}`; requests for any other host should get 404 from the gateway.")


# -- the questions -----------------------------------------------------------------------------

class ShopHost(Question):
    """Expose productpage through the ingress gateway at shop.example.com, and only there."""

    _vars = ["shop_yaml"]
    _error_prefix = "the mesh refused your YAML"
    _hint = [
        "You need two resources: a Gateway (which ingress gateway pods, which port, which hosts) and a "
        "VirtualService (for which hosts, bound to which gateways, routing where).",
        "The Gateway's `selector` picks the gateway pods by label; its `servers[].hosts` lists the hosts it "
        "accepts. The VirtualService lists the same host in `hosts` and the Gateway's name in `gateways`.",
        "The destination is the productpage service on Bookinfo's port, 9080. Start from Istio's "
        "bookinfo-gateway.yaml in the notebook and narrow its `\"*\"` hosts.",
    ]
    _solution = f'shop_yaml = """\n{SOLUTION_Q1}"""'

    def check(self, shop_yaml: Any) -> str:
        docs = _documents(shop_yaml, "shop_yaml")
        _require_gateway_and_vs(docs, "shop_yaml")
        with bookinfo_mesh() as mesh:
            mesh.apply(shop_yaml)
            resp = _edge_get(mesh, HOST, "/productpage")
            if not _reaches_productpage(resp):
                raise Incorrect(_explain_unreachable(docs, "/productpage", resp))
            _check_other_hosts_refused(mesh, "/productpage")
        return (f"`{HOST}/productpage` reaches productpage through the ingress gateway, and other hosts get "
                "404 (flag NR): the gateway has no route for them.")


class ApiOnly(Question):
    """At shop.example.com, expose the JSON API (every path under /api/v1/products) but not /productpage."""

    _vars = ["api_yaml"]
    _error_prefix = "the mesh refused your YAML"
    _hint = [
        "Keep the Gateway of question 1; only the VirtualService's `http` routes change.",
        "The API has many paths (`/api/v1/products/0`, `/api/v1/products/1`, ...): which kind of `uri` match "
        "takes all of them with one rule? Paths no route matches get 404 from the gateway.",
    ]
    _solution = f'api_yaml = """\n{SOLUTION_Q2}"""'

    def check(self, api_yaml: Any) -> str:
        docs = _documents(api_yaml, "api_yaml")
        _require_gateway_and_vs(docs, "api_yaml")
        with bookinfo_mesh() as mesh:
            mesh.apply(api_yaml)
            for path in ("/api/v1/products/0", "/api/v1/products/1"):
                resp = _edge_get(mesh, HOST, path)
                if resp.status_code == 404 and _served_by(resp).startswith("productpage-"):
                    continue  # productpage answered itself (it knows only product 0): the route worked
                if not _reaches_productpage(resp):
                    msg = _explain_unreachable(docs, path, resp)
                    if (resp.headers.get("x-meshlab-response-flags") or "") == "NR":
                        msg += " Which kind of `uri` match takes every path under /api/v1/products?"
                    raise Incorrect(msg)
            page = _edge_get(mesh, HOST, "/productpage")
            if page.status_code != 404 or _served_by(page):
                raise Incorrect(f"GET /productpage with `Host: {HOST}` got {_describe(page)}: the HTML page should "
                                "not be reachable from outside; only the API should.")
            _check_other_hosts_refused(mesh, "/api/v1/products/0")
        return ("every path under /api/v1/products reaches productpage; /productpage gets 404 (NR) at the gateway, "
                "so the HTML page is not exposed.")


class StickyUsers(Question):
    """Make every request of one user (header end-user) reach the same productpage pod."""

    _vars = ["sticky_yaml"]
    _error_prefix = "the mesh refused your YAML"
    _hint = [
        "Which pod gets a request is the load balancer's choice, set in a DestinationRule's "
        "`trafficPolicy.loadBalancer`.",
        "`simple` balancers (ROUND_ROBIN, RANDOM, LEAST_REQUEST) spread one user's requests over every pod. "
        "Another kind of balancer hashes something from the request, so the same value always maps to "
        "the same pod.",
        "Hash on what identifies the user in these requests: the `end-user` header.",
    ]
    _solution = f'sticky_yaml = """\n{SOLUTION_Q3}"""'
    _solution_lang = "python"

    def check(self, sticky_yaml: Any) -> str:
        docs = _documents(sticky_yaml, "sticky_yaml")
        rules = _kinds(docs, "DestinationRule")
        if not rules:
            raise Incorrect("`sticky_yaml` has no DestinationRule: how requests are spread over the pods of a "
                            "service is set in a DestinationRule.")
        with bookinfo_mesh(PRODUCTPAGE_REPLICAS) as mesh:
            mesh.apply(sticky_yaml)
            pods: dict[str, Counter[str]] = {}
            for n in range(STICKY_CALLS):
                for user in STICKY_USERS[n:] + STICKY_USERS[:n]:  # a different order on every pass
                    r = mesh.call("productpage", "/health", headers={"end-user": user})
                    if r.status_code != 200:
                        raise Incorrect(f"a request to productpage as `{user}` got {_describe(r)}: your rule "
                                        "should change only how pods are chosen, not break the service.")
                    pods.setdefault(user, Counter())[_served_by(r)] += 1
        hosts = {str(_spec(d).get("host", "")) for d in rules}
        if not any(h.split(".")[0] == "productpage" for h in hosts):
            raise Incorrect(f"your DestinationRule is for {', '.join(sorted(hosts))}; the requests go to the "
                            "productpage service.")
        for user, seen in pods.items():
            if len(seen) > 1:
                raise Incorrect(f"the {STICKY_CALLS} requests of `{user}` reached {len(seen)} different pods "
                                f"({', '.join(sorted(seen))}). The load balancer must derive the pod from "
                                "something every request of that user carries.")
        used = {next(iter(seen)) for seen in pods.values()}
        if len(used) == 1:
            raise Incorrect(f"all {len(STICKY_USERS)} users landed on the same pod ({used.pop()}): requests are "
                            "sticky, but the hash key is the same for every user, so one pod does all the work. "
                            "Hash on something that differs per user.")
        return (f"each of {len(STICKY_USERS)} users reached one pod every time ({STICKY_CALLS} requests each), "
                f"and the users are spread over {len(used)} of the {PRODUCTPAGE_REPLICAS} pods.")


q1 = ShopHost()
q2 = ApiOnly()
q3 = StickyUsers()

__all__ = bind_questions(globals())
