"""Lab 04, routing and canary: three VirtualServices, checked on a running Bookinfo mesh.

    from meshlab.labs.lab04 import q1, q2, q3, preview, ____

    jason_vs = '''...'''     # the learner writes real Istio YAML
    preview(jason_vs)        # which reviews version each user gets, on a fresh mesh
    q1.check()

Theory of operation
-------------------
Each check starts a fresh mesh (``Mesh(seed=SEED)``) running Bookinfo with Istio's
``destination-rule-all.yaml`` applied (``DESTINATION_RULES``, inlined: the subsets v1, v2,
v3 of reviews and v1 of the other services), applies the learner's YAML exactly as
``kubectl apply`` would, then sends requests and reads what happened:

* q1 (user routing): requests to ``productpage`` as jason (the ``end-user`` header that
  Bookinfo's productpage sets for a logged-in user and forwards to reviews), as another user
  and anonymously; reviews must answer v2 for jason only and v1 for everyone else.
* q2 (canary): 400 sequential anonymous requests; with the mesh's seed the split is
  reproducible, and v3 must get about 10% (6-15%) and v2 nothing; the route's weights, as the
  proxy received them from pilot, must be 90 (v1) and 10 (v3).
* q3 (rewrite): requests from the client workload to ``ratings`` on the old path
  ``/api/ratings/<id>`` must reach the app as ``/ratings/<id>`` (read in the ratings sidecar's
  access log), and ``/ratings/<id>`` must keep working.

Messages point at the concept that is wrong (header names, route order, subsets, weights,
redirect vs rewrite) without writing the YAML for the learner.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pandas as pd

from meshlab.config import Resource
from meshlab.labs.core import (
    Incorrect,
    Question,
    bind_questions,
    describe_kinds,
    load_yaml_answer,
    playground_yaml,
)

__all__ = ["DESTINATION_RULES", "SEED", "bookinfo_mesh", "preview"]

#: The mesh seed every check uses: the same YAML gives the same counts every time.
SEED = 4

#: Istio's samples/bookinfo/networking/destination-rule-all.yaml, unchanged.
DESTINATION_RULES = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: productpage
spec:
  host: productpage
  subsets:
  - name: v1
    labels:
      version: v1
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: reviews
spec:
  host: reviews
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v3
    labels:
      version: v3
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: ratings
spec:
  host: ratings
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
  - name: v2-mysql
    labels:
      version: v2-mysql
  - name: v2-mysql-vm
    labels:
      version: v2-mysql-vm
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: details
spec:
  host: details
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"""

PRODUCT = "/api/v1/products/0"
FQDN = "{}.default.svc.cluster.local"


@contextmanager
def bookinfo_mesh(seed: int = SEED) -> Iterator[Any]:
    """A fresh, started mesh running Bookinfo with the DestinationRules applied; stopped on exit."""
    from meshlab import Mesh
    from meshlab.apps import bookinfo

    mesh = Mesh(seed=seed).start()
    try:
        bookinfo.deploy(mesh)
        mesh.apply(DESTINATION_RULES)
        yield mesh
    finally:
        mesh.stop()


# -- reading the learner's YAML -------------------------------------------------------------------

def _parse(text: Any, var: str, host: str) -> list[Resource]:
    """The learner's documents, validated like Istio's admission does; Incorrect if unusable."""
    resources = load_yaml_answer(text, var, "a whole VirtualService in YAML, several lines long, starting with "
                                            "`apiVersion:` and `kind:`.")
    if [r.kind for r in resources] != ["VirtualService"]:
        raise Incorrect(f"`{var}` should hold exactly one VirtualService (found {describe_kinds(resources)}). The "
                        "check applies the DestinationRules itself, as in Istio's request-routing task.")
    return resources


def _apply(mesh: Any, resources: list[Resource], host: str) -> Resource:
    """Apply the learner's VirtualService and make sure it governs ``host`` for the mesh's sidecars."""
    mesh.apply(resources)
    vs = resources[0]
    routes = mesh.proxy_config("productpage-v1-0" if host != "ratings" else "curl")
    mine = routes[(routes["host"] == FQDN.format(host))
                  & (routes["from"] == f"virtualservice/{vs.namespace}/{vs.name}")]
    if mine.empty:
        raise Incorrect(f"your VirtualService does not change how the sidecars route to `{host}`: check "
                        "`spec.hosts` (the service it is for), the namespace, and `gateways` (without it, the "
                        "rules apply to every sidecar of the mesh).")
    errors = [m for m in mesh.analyze().errors if m.resource.endswith(f"/{vs.namespace}/{vs.name}")]
    if errors:
        raise Incorrect("`istioctl analyze` finds a problem in your VirtualService:\n"
                        + "\n".join(str(m) for m in errors))
    return vs


# -- sending traffic --------------------------------------------------------------------------------

def _as_user(mesh: Any, user: str | None, n: int) -> Counter[str]:
    """Which reviews version productpage got, over ``n`` sequential page loads by ``user``."""
    headers = {"end-user": user} if user else None
    seen: Counter[str] = Counter()
    for _ in range(n):
        r = mesh.call("productpage", PRODUCT, headers=headers)
        page = r.json() if r.status_code == 200 else {}
        if page.get("reviews"):
            seen[page["reviews"]["version"]] += 1
        else:
            seen[_error_key(page.get("reviews_error") or f"productpage answered {r.status_code}")] += 1
    return seen


def _error_key(text: str) -> str:
    """"Sorry, ... (503: no cluster ...)" -> "error 503"; "error" when no status is given."""
    m = re.search(r"\b(\d{3})\b", text)
    return f"error {m.group(1)}" if m else "error"


def _errors(seen: Counter[str]) -> list[str]:
    return [k for k in seen if k.startswith("error")]


def _fail_on_errors(seen: Counter[str], who: str) -> None:
    errs = _errors(seen)
    if not errs:
        return
    text = ", ".join(sorted(errs))
    if "error 503" in errs:
        raise Incorrect(f"reviews failed for {who} ({text}): a 503 right after a routing change usually means "
                        "the route names a subset the DestinationRule does not define (response flag NC). "
                        "Compare your subset names with the DestinationRule's.")
    if "error 404" in errs:
        raise Incorrect(f"reviews answered 404 for {who}: no route matched their requests (response "
                        "flag NR). Once a VirtualService exists for a host, requests that match none of its "
                        "routes are refused.")
    raise Incorrect(f"reviews failed for {who} ({text}). Look at `mesh.access_log(service='reviews')`"
                    " in the playground to see why.")


def _share(seen: Counter[str]) -> str:
    total = sum(seen.values())
    return ", ".join(f"{v}: {n}/{total}" for v, n in sorted(seen.items()))


# -- a playground -----------------------------------------------------------------------------------

def preview(vs_yaml: Any, requests: int = 20) -> pd.DataFrame | None:
    """Apply ``vs_yaml`` to a fresh Bookinfo mesh (with the DestinationRules) and show which reviews
    version each kind of user gets over ``requests`` page loads: a place to try a VirtualService
    before checking it. Returns a table (rows: users; columns: versions served)."""
    resources = playground_yaml(vs_yaml, "preview()")
    if resources is None:
        return None
    users = {"jason": "jason", "another user (alice)": "alice", "anonymous": None}
    rows = {}
    with bookinfo_mesh() as mesh:
        mesh.apply(resources)
        for label, user in users.items():
            rows[label] = _as_user(mesh, user, requests)
    table = pd.DataFrame(rows).T.fillna(0).astype(int)
    table = table[sorted(table.columns)]
    table.index.name = "user"
    return table


# -- the questions ------------------------------------------------------------------------------------

JASON_SOLUTION = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination:
        host: reviews
        subset: v1
"""

CANARY_SOLUTION = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - route:
    - destination:
        host: reviews
        subset: v1
      weight: 90
    - destination:
        host: reviews
        subset: v3
      weight: 10
"""

REWRITE_SOLUTION = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - name: old-api
    match:
    - uri:
        prefix: /api/ratings/
    rewrite:
      uri: /ratings/
    route:
    - destination:
        host: ratings
        subset: v1
  - name: default
    route:
    - destination:
        host: ratings
        subset: v1
"""


class JasonToV2(Question):
    """Send the logged-in user jason to reviews v2 and everyone else to v1."""

    _vars = ["jason_vs"]
    _error_prefix = "checking your VirtualService raised an error"
    _solution_lang = "yaml"
    _solution = JASON_SOLUTION
    _hint = [
        "Bookinfo's productpage tells reviews who is logged in with a request header, `end-user`. "
        "A route's `match` can compare a header's value.",
        "Routes in `http:` are tried in order and the first that matches wins, so the special case "
        "goes first and the route for everyone else (no `match`) last.",
        "Each route's `destination` names the host `reviews` and a `subset` defined in the "
        "DestinationRule (v1, v2 or v3).",
    ]

    def check(self, jason_vs: Any) -> str:
        resources = _parse(jason_vs, "jason_vs", "reviews")
        with bookinfo_mesh() as mesh:
            _apply(mesh, resources, "reviews")
            jason = _as_user(mesh, "jason", 10)
            alice = _as_user(mesh, "alice", 10)
            anonymous = _as_user(mesh, None, 10)
        _fail_on_errors(jason, "jason")
        _fail_on_errors(alice + anonymous, "other users")
        if set(jason) != {"v2"}:
            if set(jason) == {"v1"}:
                raise Incorrect("jason still reaches v1: does your match look at the right header name, in "
                                "lowercase? And remember that the first route that matches wins.")
            if len(jason) == 1:
                raise Incorrect(f"jason reaches {next(iter(jason))}, not v2: check the subset of the route that "
                                "matches his requests.")
            raise Incorrect(f"jason's requests are spread over several versions ({_share(jason)}): the route "
                            "that matches him should send all of them to one subset.")
        others = alice + anonymous
        if set(others) != {"v1"}:
            if "v2" in others:
                who = "users who are not jason" if set(others) == {"v2"} else "some users who are not jason"
                raise Incorrect(f"{who} reach v2 too ({_share(others)}): the rule for jason should match "
                                "his requests only, and everyone else needs a route of their own.")
            raise Incorrect(f"users other than jason get {_share(others)}: everyone else should get v1.")
        return "jason gets reviews v2 (black stars) and every other user v1, as in Istio's request-routing task."


class Canary90v3(Question):
    """A canary: 90% of the traffic to reviews v1, 10% to v3."""

    _vars = ["canary_vs"]
    _error_prefix = "checking your VirtualService raised an error"
    _solution_lang = "yaml"
    _solution = CANARY_SOLUTION
    _hint = [
        "One route can have several destinations, each with a `weight` (a percentage of the requests).",
        "The weights of one route add up to 100; each destination names the host `reviews` and a subset.",
    ]

    REQUESTS = 400

    def check(self, canary_vs: Any) -> str:
        resources = _parse(canary_vs, "canary_vs", "reviews")
        with bookinfo_mesh() as mesh:
            vs = _apply(mesh, resources, "reviews")
            seen = _as_user(mesh, None, self.REQUESTS)
            weights = _weights_used(mesh, vs)
        _fail_on_errors(seen, "some requests")
        n = self.REQUESTS
        if seen.get("v2"):
            raise Incorrect(f"{seen['v2']} of {n} requests reached v2: this canary is between v1 and v3 only.")
        v3 = seen.get("v3", 0)
        if v3 == 0:
            raise Incorrect(f"no request reached v3 ({_share(seen)}): the canary needs a destination for v3 "
                            "in the route everyone takes.")
        if v3 == n:
            raise Incorrect("every request reached v3: v1 should keep most of the traffic.")
        share = v3 / n
        if not 0.06 <= share <= 0.15:
            raise Incorrect(f"v3 served {share:.0%} of {n} requests ({_share(seen)}): a 10% canary should serve "
                            "about one request in ten. Check which destination carries which weight.")
        if weights is not None and weights != {"v1": 90, "v3": 10}:
            shown = ", ".join(f"{k}: {w}" for k, w in sorted(weights.items()))
            raise Incorrect(f"the split looks right over {n} requests, but the weights are {shown}; "
                            "the canary asked for exactly 90 and 10.")
        return (f"v3 served {v3} of {n} requests ({share:.1%}); weighted routing is random per request, so "
                "a 10% canary serves about 10%, not exactly.")


def _weights_used(mesh: Any, vs: Resource) -> dict[str, int] | None:
    """Subset -> weight of the route productpage's sidecar used most for reviews (from pilot's snapshot)."""
    log = mesh.access_log(service="reviews", reporter="source")
    names = log["route_name"].value_counts()
    if names.empty:
        return None
    snap = mesh.pilot.snapshot
    vhost = snap.virtual_hosts.get(FQDN.format("reviews"))
    if vhost is None:
        return None
    for route in vhost.routes:
        if route.name == names.index[0]:
            out: dict[str, int] = {}
            for wc in route.clusters:
                subset = wc.cluster.split("|")[2] or "(whole service)"
                out[subset] = out.get(subset, 0) + wc.weight
            return out
    return None


class RewriteOldApi(Question):
    """Rewrite the old path ``/api/ratings/<id>`` to ``/ratings/<id>`` on the way to ratings v1."""

    _vars = ["rewrite_vs"]
    _error_prefix = "checking your VirtualService raised an error"
    _solution_lang = "yaml"
    _solution = REWRITE_SOLUTION
    _hint = [
        "A route can `match` on the request's `uri` (exact, prefix or regex) and `rewrite` it before "
        "forwarding; the client never sees the new path.",
        "When the route matched a `prefix`, `rewrite.uri` replaces only that prefix and keeps the rest "
        "of the path (the id).",
        "A VirtualService replaces the default route of its host: requests that match none of its "
        "routes get 404 (response flag NR). Keep a route for the paths that need no change.",
    ]

    PATHS = (("/api/ratings/0", 0), ("/api/ratings/7", 7), ("/ratings/3", 3))

    def check(self, rewrite_vs: Any) -> str:
        resources = _parse(rewrite_vs, "rewrite_vs", "ratings")
        results = []
        with bookinfo_mesh() as mesh:
            _apply(mesh, resources, "ratings")
            for path, pid in self.PATHS:
                r = mesh.call("ratings", path)
                received = mesh.access_log(service="ratings", reporter="destination", last=1)
                app_path = received["path"].iloc[0] if len(received) else None
                results.append((path, pid, r, app_path))
        for path, pid, r, app_path in results:
            flags = r.headers.get("x-meshlab-response-flags", "-")
            if r.status_code in (301, 302, 303, 307, 308):
                raise Incorrect(f"`{path}` answered {r.status_code} (a redirect to {r.headers.get('location')}): "
                                "the client would have to call again. A rewrite changes the path on the way, "
                                "inside the mesh, and the client never notices.")
            if r.status_code == 404 and "NR" in flags:
                if path.startswith("/ratings/"):
                    raise Incorrect(f"`{path}` no longer finds a route (404, flag NR): once a VirtualService "
                                    "exists for ratings, requests that match none of its routes are refused. "
                                    "The current API must keep working.")
                raise Incorrect(f"`{path}` matches none of your routes (404, flag NR): check the `match` of "
                                "your rewrite rule.")
            if r.status_code == 503 and "NC" in flags:
                raise Incorrect(f"`{path}` got 503 NC: your route names a subset the ratings DestinationRule "
                                "does not define.")
            body = _json(r)
            if r.status_code != 200 or body.get("id") != pid or app_path != f"/ratings/{pid}":
                if app_path == path:
                    raise Incorrect(f"`{path}` reached the ratings app unchanged (answer {r.status_code}): no "
                                    "rewrite applied to it. Check the `match` of your rewrite rule.")
                seen = f"reached the ratings app as `{app_path}`" if app_path else "never reached the ratings app"
                raise Incorrect(f"`{path}` {seen} (answer {r.status_code}); it should arrive as `/ratings/{pid}`. "
                                "Check your `rewrite`.")
        return ("old clients' `/api/ratings/<id>` reaches the app as `/ratings/<id>`, and the current path "
                "still works.")


def _json(r: Any) -> dict[str, Any]:
    try:
        body = r.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


q1 = JasonToV2()
q2 = Canary90v3()
q3 = RewriteOldApi()

__all__ = [*__all__, *bind_questions(globals())]
