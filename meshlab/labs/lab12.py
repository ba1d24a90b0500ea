"""Lab 12, least privilege: AuthorizationPolicy and RequestAuthentication, checked with real requests.

    from meshlab.labs.lab12 import q1, q2, q3, preview, ISSUER, JWKS_URI, ____

    ratings_policy = '''...'''   # the learner writes real Istio YAML
    preview(ratings_policy)      # who can call whom with it, on a fresh mesh
    q1.check()

Theory of operation
-------------------
Each check starts a fresh mesh (``Mesh(seed=SEED)``) running Bookinfo (service accounts
``bookinfo-<service>``), applies the learner's YAML exactly as ``kubectl apply`` would, then
sends real requests *from inside pods*: ``call_from(mesh, pod, ...)`` sends through that pod's
sidecar, as ``kubectl exec <pod> -- curl`` would, so the request carries the pod's identity.
``curl`` is the mesh's client workload; ``None`` is a caller without a sidecar (plaintext).
A request counts as *refused* when the destination's sidecar answered ``403 RBAC: access
denied`` (or, with STRICT mTLS, reset the connection); anything else reached the app.

* q1 (ratings): GET, POST and DELETE on ``/ratings/0`` from reviews, productpage, details,
  curl and a caller without a sidecar: only reviews' GET may get in; the product page must
  still work end to end (stars included), since only ratings is being protected.
* q2 (deny by default): the product page must load, complete, from curl and through the
  ingress gateway (Istio's ``bookinfo-gateway.yaml`` is applied by the check); every other
  ``GET`` between Bookinfo's pods and from curl must be refused except the calls Bookinfo
  makes (productpage -> details, productpage -> reviews, reviews -> ratings); other methods are
  refused; and a service deployed *after* the policies (httpbin) must accept nothing, which is
  what "deny by default" means.
* q3 (JWT): the check registers the issuer ``ISSUER`` (keys at ``JWKS_URI``) and loads the
  product page with a valid token (must work, complete), without a token, with an expired
  one, one signed by another key and one from another issuer (all refused).

Messages say what was observed and point at the concept (identities are service accounts,
DENY/ALLOW order, selectors, default deny, request principals) without writing the YAML.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
import pandas as pd

from meshlab.config import Resource
from meshlab.labs.core import Incorrect, Question, bind_questions, load_yaml_answer, playground_yaml

__all__ = ["SEED", "ISSUER", "JWKS_URI", "BOOKINFO_GATEWAY", "bookinfo_mesh", "call_from", "preview"]

#: The mesh seed every check uses.
SEED = 12
#: The identity provider of q3 (a ``mesh.jwt_issuer``) and where it publishes its keys.
ISSUER = "https://auth.meshlab.dev"
JWKS_URI = "https://auth.meshlab.dev/.well-known/jwks.json"

#: Istio's samples/bookinfo/networking/bookinfo-gateway.yaml, unchanged.
BOOKINFO_GATEWAY = """\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata:
  name: bookinfo-gateway
spec:
  # The selector matches the ingress gateway pod labels.
  # If you installed Istio using Helm following the standard documentation, this would be "istio=ingress"
  selector:
    istio: ingressgateway # use istio default controller
  servers:
  - port:
      number: 8080
      name: http
      protocol: HTTP
    hosts:
    - "*"
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: bookinfo
spec:
  hosts:
  - "*"
  gateways:
  - bookinfo-gateway
  http:
  - match:
    - uri:
        exact: /productpage
    - uri:
        prefix: /static
    - uri:
        exact: /login
    - uri:
        exact: /logout
    - uri:
        prefix: /api/v1/products
    route:
    - destination:
        host: productpage
        port:
          number: 9080
"""

PRODUCT = "/api/v1/products/0"
#: A cheap path per Bookinfo service (what "calling the service" means in the checks).
PATHS = {"productpage": "/health", "details": "/details/0", "reviews": "/reviews/0", "ratings": "/ratings/0"}
#: Callers: label -> pod (``curl``: the client workload; None: no sidecar).
CALLERS: dict[str, str | None] = {"curl": "curl", "productpage": "productpage-v1-0", "details": "details-v1-0",
                                  "reviews": "reviews-v2-0", "ratings": "ratings-v1-0"}
#: The calls Bookinfo itself makes (GET).
BOOKINFO_CALLS = {("productpage", "details"), ("productpage", "reviews"), ("reviews", "ratings")}
DENIED = "RBAC: access denied"


@contextmanager
def bookinfo_mesh(seed: int = SEED) -> Iterator[Any]:
    """A fresh, started mesh running Bookinfo; stopped on exit."""
    from meshlab import Mesh
    from meshlab.apps import bookinfo

    mesh = Mesh(seed=seed).start()
    try:
        bookinfo.deploy(mesh)
        yield mesh
    finally:
        mesh.stop()


def call_from(mesh: Any, pod: str | None, service: str, path: str, method: str = "GET",
              headers: dict[str, str] | None = None) -> tuple[int, str]:
    """Send one request from inside ``pod`` through its sidecar (``kubectl exec <pod> -- curl``);
    ``"curl"`` is the mesh's client workload, None a caller without a sidecar. Returns (status,
    body); status 0 when the connection was reset (a STRICT workload refusing plaintext)."""
    from meshlab import MeshClient

    try:
        if pod is None or pod == "curl":
            r = mesh.call(service, path, method=method, headers=headers, sidecar=pod is not None)
        else:
            sc = mesh.sidecar(pod)
            client = MeshClient(sc.outbound.host, sc.outbound.port, sc.app_pools)
            r = mesh.runtime.run(client.request(method, f"http://{service}{path}", headers=headers), 30.0)
    except ConnectionError:
        return 0, "connection reset"
    return r.status_code, r.text


def _refused(result: tuple[int, str]) -> bool:
    """Whether the destination's sidecar refused the request (RBAC 403, or reset)."""
    status, body = result
    return status == 0 or (status == 403 and body.strip() == DENIED)


def _said(result: tuple[int, str]) -> str:
    status, body = result
    if status == 0:
        return "the connection was reset"
    text = body.strip()
    return f"{status} `{text}`" if text and len(text) < 90 and not text.startswith("{") else f"{status}"


# -- reading the learner's YAML -------------------------------------------------------------------

def _parse(text: Any, var: str, kinds: tuple[str, ...]) -> list[Resource]:
    """The learner's documents, validated like Istio's admission does; Incorrect if unusable."""
    wanted = " and ".join(kinds)
    resources = load_yaml_answer(text, var, f"Istio resources ({wanted}) in YAML, several lines long, each "
                                            "starting with `apiVersion:` and `kind:`, separated by `---`.")
    others = sorted({r.kind for r in resources if r.kind not in kinds})
    if others:
        raise Incorrect(f"`{var}` should only hold {wanted} resources; it also has {', '.join(others)}.")
    if not resources:
        raise Incorrect(f"`{var}` holds no resource.")
    return resources


def _sources(resources: list[Resource], field: str) -> bool:
    """Whether any AuthorizationPolicy rule names callers with ``field`` (e.g. ``principals``)."""
    for r in resources:
        if r.kind != "AuthorizationPolicy":
            continue
        for rule in r.raw.get("spec", {}).get("rules") or []:
            for entry in (rule or {}).get("from") or []:
                source = (entry or {}).get("source") or {}
                if source.get(field) or source.get("not" + field[0].upper() + field[1:]):
                    return True
    return False


# -- what the product page shows --------------------------------------------------------------------

def _page(get: Any, loads: int = 6) -> dict[str, Any]:
    """Load the product page ``loads`` times with ``get(path) -> (status, body json or None)``;
    the first failing status, and whether details, reviews and (for reviews v2/v3) stars showed."""
    state: dict[str, Any] = {"status": 200, "details": True, "reviews": True, "stars": True}
    for _ in range(loads):
        status, page = get(PRODUCT)
        if status != 200 or not isinstance(page, dict):
            state["status"] = status
            return state
        state["details"] &= bool(page.get("details"))
        state["reviews"] &= bool(page.get("reviews"))
        reviews = page.get("reviews") or {}
        if reviews.get("version") in ("v2", "v3"):
            state["stars"] &= all("stars" in (rv.get("rating") or {}) for rv in reviews.get("reviews", []))
    return state


def _json(r: httpx.Response) -> Any:
    try:
        return r.json()
    except ValueError:
        return None


def _page_from_curl(mesh: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    def get(path: str) -> tuple[int, Any]:
        r = mesh.call("productpage", path, headers=headers)
        return r.status_code, _json(r)

    return _page(get)


def _page_from_outside(mesh: Any) -> dict[str, Any]:
    mesh.apply(BOOKINFO_GATEWAY)

    def get(path: str) -> tuple[int, Any]:
        r = httpx.get(mesh.ingress_url + path, timeout=10.0)
        return r.status_code, _json(r)

    return _page(get)


def _page_problem(state: dict[str, Any], who: str) -> str | None:
    """What is wrong with the product page as ``who`` saw it (None: nothing)."""
    if state["status"] != 200:
        return f"the product page itself answered {state['status']} {who}"
    missing = [part for part in ("details", "reviews") if not state[part]]
    if missing:
        return f"the product page loads {who} but says its {' and '.join(missing)} are unavailable"
    if not state["stars"]:
        return f"the product page loads {who} but reviews v2/v3 show no stars: ratings is unavailable to them"
    return None


# -- a playground -------------------------------------------------------------------------------------

def preview(policy_yaml: Any, method: str = "GET") -> pd.DataFrame | None:
    """Apply ``policy_yaml`` to a fresh Bookinfo mesh and return who can call whom: the status of
    one real ``method`` request from each caller (rows; ``(no sidecar)`` is a plaintext caller)
    to each service (columns). 403 is the sidecar refusing; 0 a reset connection."""
    resources = playground_yaml(policy_yaml, "preview()")
    if resources is None:
        return None
    rows = {}
    with bookinfo_mesh() as mesh:
        mesh.apply(resources)
        for label, pod in [*CALLERS.items(), ("(no sidecar)", None)]:
            rows[label] = {svc: call_from(mesh, pod, svc, path, method)[0] for svc, path in PATHS.items()}
    table = pd.DataFrame.from_dict(rows, orient="index")
    table.index.name, table.columns.name = "source", "destination"
    return table


# -- the questions ---------------------------------------------------------------------------------------

RATINGS_SOLUTION = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: ratings-viewer
  namespace: default
spec:
  selector:
    matchLabels:
      app: ratings
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/bookinfo-reviews"]
    to:
    - operation:
        methods: ["GET"]
"""

DENY_BY_DEFAULT_SOLUTION = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: allow-nothing
  namespace: default
spec: {}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: productpage-viewer
  namespace: default
spec:
  selector:
    matchLabels:
      app: productpage
  action: ALLOW
  rules:
  - to:
    - operation:
        methods: ["GET"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: details-viewer
  namespace: default
spec:
  selector:
    matchLabels:
      app: details
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/bookinfo-productpage"]
    to:
    - operation:
        methods: ["GET"]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: reviews-viewer
  namespace: default
spec:
  selector:
    matchLabels:
      app: reviews
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/bookinfo-productpage"]
    to:
    - operation:
        methods: ["GET"]
---
""" + RATINGS_SOLUTION  # reviews -> ratings: q1's policy, unchanged

JWT_SOLUTION = """\
apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata:
  name: productpage-jwt
  namespace: default
spec:
  selector:
    matchLabels:
      app: productpage
  jwtRules:
  - issuer: "https://auth.meshlab.dev"
    jwksUri: "https://auth.meshlab.dev/.well-known/jwks.json"
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  name: productpage-require-jwt
  namespace: default
spec:
  selector:
    matchLabels:
      app: productpage
  action: ALLOW
  rules:
  - from:
    - source:
        requestPrincipals: ["https://auth.meshlab.dev/*"]
"""

IDENTITY_HINT = ("A caller's identity in a policy is its principal, `<trust domain>/ns/<namespace>/sa/<service "
                 "account>`: the service account of its pods, which for Bookinfo is not the service's name "
                 "(`mesh.certificate('reviews').identity` shows it).")


class RatingsOnlyFromReviews(Question):
    """ratings accepts only GET from the reviews service account, and nothing else."""

    _vars = ["ratings_policy"]
    _error_prefix = "checking your policy raised an error"
    _solution_lang = "yaml"
    _solution = RATINGS_SOLUTION
    _hint = [
        "An AuthorizationPolicy with `action: ALLOW` protects the workloads its `selector` picks: once it "
        "applies, only requests that match one of its rules get in.",
        "A rule's `from` names callers (`source.principals`), its `to` the operations (`operation.methods`); "
        "both must match. " + IDENTITY_HINT,
        "Without a `selector` a policy applies to every workload of its namespace: the other services would "
        "be locked too.",
    ]

    def check(self, ratings_policy: Any) -> str:
        resources = _parse(ratings_policy, "ratings_policy", ("AuthorizationPolicy",))
        calls: dict[tuple[str, str], tuple[int, str]] = {}
        with bookinfo_mesh() as mesh:
            mesh.apply(resources)
            reviews_get_details = ""
            for label, pod in [*CALLERS.items(), ("a caller without a sidecar", None)]:
                if label == "ratings":
                    continue
                for method in ("GET", "POST", "DELETE"):
                    calls[(label, method)] = call_from(mesh, pod, "ratings", PATHS["ratings"], method)
                    if (label, method) == ("reviews", "GET"):
                        log = mesh.access_log(service="ratings", reporter="destination", last=1)
                        reviews_get_details = str(log["response_code_details"].iloc[0]) if len(log) else ""
            others = {(src, dst): call_from(mesh, CALLERS[src], dst, PATHS[dst])
                      for src, dst in [("curl", "productpage"), ("curl", "details"), ("productpage", "details"),
                                       ("productpage", "reviews"), ("curl", "reviews")]}
            page = _page_from_curl(mesh)
        get = calls[("reviews", "GET")]
        if _refused(get):
            said = f"reviews' `GET /ratings/0` was refused ({_said(get)}): reviews must still be able to read ratings."
            if "-policy[" in reviews_get_details:  # a DENY rule matched: Envoy names it
                raise Incorrect(f"{said} The ratings sidecar logged `{reviews_get_details}`: a DENY rule matched it, "
                                "and DENY is evaluated before ALLOW and wins.")
            raise Incorrect(f"{said} No ALLOW rule matched it. {IDENTITY_HINT}")
        through = [f"{who} {method}" for (who, method), result in calls.items()
                   if who != "reviews" and not _refused(result)]
        if len(through) == len([k for k in calls if k[0] != "reviews"]):
            raise Incorrect("every request to ratings got through, from every caller, with every method: does your "
                            "policy select ratings' pods?")
        if through:
            raise Incorrect(f"these requests to ratings got through: {', '.join(through)}. Only reviews may call "
                            "ratings.")
        methods = [method for (who, method), result in calls.items()
                   if who == "reviews" and method != "GET" and not _refused(result)]
        if methods:
            raise Incorrect(f"ratings let reviews in with {', '.join(methods)} (the app answered, e.g. 405 Method "
                            "Not Allowed; a refusal by the sidecar is 403): only GET should pass.")
        broken = [f"{s} -> {d}" for (s, d), r in others.items() if _refused(r)]
        if broken:
            raise Incorrect(f"your policies also refuse calls to other services (403 from their sidecars): "
                            f"{', '.join(broken)}. This question protects ratings only: which workloads does each "
                            "of your policies select?")
        problem = _page_problem(page, "from curl")
        if problem:
            raise Incorrect(f"{problem}. Only calls to ratings should change.")
        return ("ratings answers reviews' GET and refuses everything else, from every caller; the rest of "
                "Bookinfo is untouched.")


class DenyByDefault(Question):
    """Deny by default in the namespace, then the fewest ALLOW rules that keep Bookinfo working."""

    _vars = ["deny_by_default"]
    _error_prefix = "checking your policies raised an error"
    _solution_lang = "yaml"
    _solution = DENY_BY_DEFAULT_SOLUTION
    _hint = [
        "Deny by default means: a workload that no other policy mentions accepts nothing. An ALLOW policy "
        "that applies to the whole namespace and has no rules matches no request.",
        "Then one ALLOW policy per service, with a `selector`, for the calls Bookinfo makes: users -> "
        "productpage, productpage -> details and reviews, reviews -> ratings. Users come from outside the "
        "mesh: they have no workload identity.",
        "A request is allowed when it matches a rule of *any* ALLOW policy that applies; "
        + IDENTITY_HINT,
    ]

    def check(self, deny_by_default: Any) -> str:
        resources = _parse(deny_by_default, "deny_by_default", ("AuthorizationPolicy",))
        with bookinfo_mesh() as mesh:
            mesh.apply(resources)
            page = _page_from_curl(mesh)
            grid = {(src, dst): call_from(mesh, pod, dst, path)
                    for src, pod in CALLERS.items() for dst, path in PATHS.items()}
            plaintext = {dst: call_from(mesh, None, dst, path) for dst, path in PATHS.items() if dst != "productpage"}
            writes = {f"{method} {src} -> {dst}": call_from(mesh, CALLERS[src], dst, path, method)
                      for method, src, dst, path in [("POST", "curl", "productpage", "/productpage"),
                                                     ("POST", "productpage", "details", PATHS["details"]),
                                                     ("DELETE", "reviews", "ratings", PATHS["ratings"])]}
            outside = _page_from_outside(mesh)
            from meshlab.apps import httpbin

            mesh.deploy("httpbin", httpbin.make_app(), port=8000)
            newcomer = {"curl": call_from(mesh, "curl", "httpbin", "/get"),
                        "productpage": call_from(mesh, CALLERS["productpage"], "httpbin", "/get")}
        problem = _page_problem(page, "for a user (curl)")
        if problem:
            needed = [f"{s} -> {d}" for s, d in sorted(BOOKINFO_CALLS) if _refused(grid[(s, d)])]
            why = f". Refused: {', '.join(needed)}" if needed else ""
            raise Incorrect(f"{problem}{why}. Bookinfo's own calls must keep working.")
        problem = _page_problem(outside, "through the ingress gateway")
        if problem:
            raise Incorrect(f"{problem}, while it works from curl. A policy in `istio-system` (the root "
                            "namespace) without a selector applies to every workload of the mesh, the ingress "
                            "gateway included; and users from outside reach productpage through the gateway.")
        extra = [f"{s} -> {d}" for (s, d), r in grid.items()
                 if d != "productpage" and (s, d) not in BOOKINFO_CALLS and not _refused(r)]
        extra += [f"a caller without a sidecar -> {d}" for d, r in plaintext.items() if not _refused(r)]
        if extra:
            raise Incorrect(f"these calls got through, but Bookinfo never makes them: {', '.join(extra)}. Least "
                            "privilege: each service accepts its real callers only.")
        writes_through = [call for call, r in writes.items() if not _refused(r)]
        if writes_through:
            raise Incorrect(f"requests other than GET got through ({', '.join(writes_through)}; the app answered "
                            "them): Bookinfo only reads, so only GET is needed.")
        open_doors = [f"{who} -> httpbin ({_said(r)})" for who, r in newcomer.items() if not _refused(r)]
        if open_doors:
            raise Incorrect(f"a service deployed after your policies, httpbin, accepts requests: {', '.join(open_doors)}. "
                            "Your rules protect Bookinfo's four services one by one, but deny by default means "
                            "that a workload no policy mentions accepts nothing.")
        return ("deny by default: only users' GET to productpage and Bookinfo's own calls get through, and a "
                "new workload accepts nothing until a policy opens it.")


class RequireJwt(Question):
    """productpage requires a valid JWT from ``ISSUER``."""

    _vars = ["jwt_policy"]
    _error_prefix = "checking your policies raised an error"
    _solution_lang = "yaml"
    _solution = JWT_SOLUTION
    _hint = [
        "Two resources: a RequestAuthentication tells productpage's sidecar which issuer to trust and where "
        "its keys are (`jwtRules`); an AuthorizationPolicy decides who may call.",
        "RequestAuthentication only rejects tokens that are present and invalid: a request without any token "
        "passes it. The AuthorizationPolicy must let in only requests that carry a validated token.",
        "A validated token gives the request a *request principal*, `<iss>/<sub>`; `principals` are workload "
        "identities from mTLS, not users. Give both resources a `selector` for productpage.",
    ]

    def check(self, jwt_policy: Any) -> str:
        resources = _parse(jwt_policy, "jwt_policy", ("RequestAuthentication", "AuthorizationPolicy"))
        with bookinfo_mesh() as mesh:
            issuer = mesh.jwt_issuer(ISSUER)
            mesh.apply(resources)
            tokens = {"a valid token": issuer.token("reader"), "no token": None,
                      "an expired token": issuer.forge("expired"),
                      "a token signed with another key": issuer.forge("bad_signature"),
                      "a token from another issuer": issuer.forge("wrong_issuer")}
            seen = {name: call_from(mesh, "curl", "productpage", PRODUCT,
                                    headers={"Authorization": f"Bearer {tok}"} if tok else None)
                    for name, tok in tokens.items()}
            page = _page_from_curl(mesh, {"Authorization": f"Bearer {tokens['a valid token']}"})
        has_authz = any(r.kind == "AuthorizationPolicy" for r in resources)
        has_authn = any(r.kind == "RequestAuthentication" for r in resources)
        valid = seen["a valid token"]
        if valid[0] == 401:
            raise Incorrect(f"a valid token from {ISSUER} was refused: {_said(valid)}. That is Envoy's message "
                            "for the check that failed: compare your `jwtRules` with the issuer's name and with "
                            "where it publishes its keys.")
        if _refused(valid):
            if not has_authn:
                raise Incorrect(f"a valid token was refused ({_said(valid)}): nothing validates tokens for "
                                "productpage, so no request has a request principal.")
            raise Incorrect(f"a valid token was refused by authorization ({_said(valid)}): does your "
                            "AuthorizationPolicy look at the identity a token gives the request, and do both "
                            "resources select productpage?")
        if valid[0] != 200:
            raise Incorrect(f"with a valid token productpage answered {_said(valid)}.")
        problem = _page_problem(page, "with a valid token")
        if problem:
            raise Incorrect(f"{problem}: productpage does not pass the token on to details and reviews, so "
                            "only productpage may require it. What does each of your resources select?")
        if seen["no token"][0] == 200:
            if not has_authz:
                raise Incorrect("a request without any token reached productpage (200): a RequestAuthentication "
                                "only rejects tokens that are present and invalid.")
            extra = (" `principals` are workload identities proven by mTLS (curl has one), not users."
                     if _sources(resources, "principals") and not _sources(resources, "requestPrincipals") else "")
            raise Incorrect("a request without any token reached productpage (200): your AuthorizationPolicy "
                            f"should let in only requests that carry a validated token.{extra}")
        bad = [name for name in ("an expired token", "a token signed with another key", "a token from another issuer")
               if seen[name][0] == 200]
        if bad:
            raise Incorrect(f"productpage accepted {', '.join(bad)}: does a RequestAuthentication for "
                            f"productpage name {ISSUER} as its only issuer?")
        return (f"productpage requires a valid token from {ISSUER}: no token gets 403 (authorization), a bad "
                "token 401 (authentication), and the page works for a signed-in user.")


q1 = RatingsOnlyFromReviews()
q2 = DenyByDefault()
q3 = RequireJwt()

__all__ = [*__all__, *bind_questions(globals())]
