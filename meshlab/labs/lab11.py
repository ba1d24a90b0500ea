"""Lab 11, mTLS migration: PeerAuthentication scopes, a DestinationRule that breaks mTLS, and
reading a workload certificate.

    from meshlab.labs.lab11 import q1, q2, q3, preview, mystery_certificate, ____

    strict_yaml = '''...'''    # the learner writes real Istio YAML
    preview(strict_yaml)       # who accepts what, on a fresh mesh
    q1.check()

Theory of operation
-------------------
Each check starts a fresh mesh (``Mesh(seed=SEED)``) with small httpbin services, applies the
learner's YAML exactly as ``kubectl apply`` would and sends real requests on loopback, from two
kinds of clients:

* a client **with** a sidecar (the mesh's ``curl`` workload, ``mesh.call``): its sidecar
  originates mutual TLS whenever the destination accepts it (auto mTLS);
* a **legacy** client without a sidecar (``mesh.call(..., sidecar=False)``): plaintext, straight
  to a replica. For the namespace ``analytics`` the check connects to the replica's inbound
  listener itself, since ``mesh.call`` addresses services of the mesh's own namespace.

The world (``lab_mesh``)::

    namespace default:    orders, catalog, legacy-api, payments (v1 and v2)
    namespace analytics:  reports

* q1 (``strict_yaml``): namespace ``default`` STRICT except ``legacy-api`` (PERMISSIVE). Plaintext
  must reach legacy-api only; a service deployed *after* the policies (``invoices``) must be
  STRICT too (the namespace is covered, not a list of workloads); ``reports`` in ``analytics``
  must keep accepting plaintext (the policy is not mesh-wide); clients with a sidecar must still
  reach legacy-api over mTLS (PERMISSIVE, not DISABLE).
* q2 (``payments_dr``): ``PAYMENTS_SETUP`` makes ``default`` STRICT and adds a DestinationRule
  for payments with ``tls.mode: DISABLE`` (written before payments had a sidecar) and a
  VirtualService to subset v1: every call fails with 503 ``UC``. The learner's DestinationRule
  replaces it; calls must succeed over mTLS and still reach v1.
* q3 (``cert_facts``): a certificate made by a fresh mesh (``mystery_certificate``); the learner
  reads its trust domain, namespace and service account from the SPIFFE URI SAN, and says when
  istio-agent replaces it (hours after issue, Istio's defaults: 24 h lifetime, grace ratio 0.5).

Messages point at the concept (scope, selector, mode, client-side tls settings, SAN) without
writing the YAML for the learner.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx
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

__all__ = ["SEED", "PAYMENTS_SETUP", "BROKEN_DR", "lab_mesh", "preview", "mystery_certificate"]

#: The mesh seed every check uses.
SEED = 11

NAMESPACE = "default"
SERVICES = ("orders", "catalog", "legacy-api")
LEGACY = "legacy-api"
OTHER_NAMESPACE, OTHER_SERVICE = "analytics", "reports"
LATECOMER = "invoices"  # deployed by the q1 check after the learner's policies
PAYMENTS = "payments"

#: The certificate of q3: a workload whose service account is not its service name.
MYSTERY = {"service": "ledger", "namespace": "finance", "service_account": "ledger-writer"}
#: Istio's defaults for workload certificates (istio-agent: SECRET_TTL, SECRET_GRACE_PERIOD_RATIO)
ISTIO_CERT_TTL_H, ISTIO_GRACE_RATIO = 24.0, 0.5

#: Namespace ``default`` STRICT: the first document of q1's answer, and where q2's mesh starts.
STRICT_NAMESPACE = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: default
  namespace: default
spec:
  mtls:
    mode: STRICT
"""

BROKEN_DR = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: payments
spec:
  host: payments
  trafficPolicy:
    tls:
      mode: DISABLE
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"""

#: What q2's mesh runs before the learner's DestinationRule: namespace default STRICT, the old
#: DestinationRule of payments (plaintext to it) and a route to its subset v1.
PAYMENTS_SETUP = STRICT_NAMESPACE + "---\n" + BROKEN_DR + """\
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: payments
spec:
  hosts:
  - payments
  http:
  - route:
    - destination:
        host: payments
        subset: v1
"""


# -- the mesh -------------------------------------------------------------------------------------

@contextmanager
def lab_mesh(seed: int = SEED) -> Iterator[Any]:
    """A fresh, started mesh with the lab's services (see the module docstring); stopped on exit."""
    from meshlab import Mesh
    from meshlab.apps.httpbin import make_app

    mesh = Mesh(seed=seed).start()
    try:
        for name in SERVICES:
            mesh.deploy(name, make_app(name))
        mesh.deploy(PAYMENTS, make_app(PAYMENTS), version="v1")
        mesh.deploy(PAYMENTS, make_app(PAYMENTS), version="v2")
        mesh.deploy(OTHER_SERVICE, make_app(OTHER_SERVICE), namespace=OTHER_NAMESPACE)
        yield mesh
    finally:
        mesh.stop()


def _plaintext(mesh: Any, service: str, namespace: str = NAMESPACE) -> int | None:
    """A request from a client without a sidecar: the status, or None when the connection is refused."""
    if namespace == NAMESPACE:
        try:
            return int(mesh.call(service, "/get", sidecar=False).status_code)
        except ConnectionError:
            return None
    sidecar = mesh.sidecar(f"{namespace}/{mesh.replicas(service, namespace=namespace)[0].name}")
    try:
        r = httpx.get(f"http://{sidecar.inbound.address}/get", headers={"host": f"{service}.{namespace}"},
                      timeout=10.0)
    except httpx.TransportError:
        return None
    return r.status_code


def _from_mesh(mesh: Any, service: str) -> tuple[int, str, str]:
    """A request from the client workload's sidecar: (status, response flags, upstream pod)."""
    r = mesh.call(service, "/get")
    return r.status_code, r.headers.get("x-meshlab-response-flags") or "", r.headers.get("x-meshlab-upstream") or ""


def _security_policies(mesh: Any, service: str) -> Counter[str]:
    """connection_security_policy of the requests ``service``'s sidecars accepted (reporter=destination)."""
    m = mesh.metrics()
    m = m[(m["name"] == "istio_requests_total") & (m["reporter"] == "destination")
          & (m["destination_app"] == service)]
    return Counter({k: int(v) for k, v in m.groupby("connection_security_policy")["value"].sum().items()})


def _shown(status: int | None) -> str:
    return "refused" if status is None else str(status)


def preview(yaml_text: Any = None, broken_payments: bool = False) -> pd.DataFrame | None:
    """Apply ``yaml_text`` to a fresh lab mesh (after ``PAYMENTS_SETUP`` when ``broken_payments``)
    and show, per workload, the mTLS mode its sidecar enforces, what a plaintext client without a
    sidecar gets and what a client with a sidecar gets (status, flags, connection security).
    A playground: nothing is checked."""
    resources = [] if yaml_text is None else playground_yaml(yaml_text, "preview()")
    if resources is None:
        return None
    rows = {}
    with lab_mesh() as mesh:
        if broken_payments:
            mesh.apply(PAYMENTS_SETUP)
        if resources:
            mesh.apply(resources)
        targets = [(s, NAMESPACE) for s in (*SERVICES, PAYMENTS)] + [(OTHER_SERVICE, OTHER_NAMESPACE)]
        for service, ns in targets:
            replica = mesh.replicas(service, namespace=ns)[0]
            sidecar = mesh.sidecar(replica.name if ns == NAMESPACE else f"{ns}/{replica.name}")
            row = {"mTLS mode": sidecar.mtls_mode(), "plaintext client": _shown(_plaintext(mesh, service, ns))}
            if ns == NAMESPACE:
                status, flags, _ = _from_mesh(mesh, service)
                policies = _security_policies(mesh, service)
                tls = "mTLS" if status == 200 and policies.get("mutual_tls") else "plaintext"
                row["client with a sidecar"] = f"{status} {flags}" if status != 200 else f"200 ({tls})"
            else:
                row["client with a sidecar"] = ""
            rows[f"{service}.{ns}"] = row
    table = pd.DataFrame(rows).T
    table.index.name = "workload"
    return table


# -- reading the learner's YAML -----------------------------------------------------------------------

def _parse(text: Any, var: str, kind: str, exactly_one: bool = False) -> list[Resource]:
    """The learner's documents, validated like Istio's admission does; Incorrect if unusable."""
    what = f"a {kind}" if exactly_one else f"one or more {kind} documents"
    resources = load_yaml_answer(text, var, f"{what} in YAML, several lines long, each document starting with "
                                            "`apiVersion:` and `kind:`.")
    if {r.kind for r in resources} != {kind} or (exactly_one and len(resources) != 1):
        raise Incorrect(f"`{var}` should hold {what} only (found {describe_kinds(resources)}).")
    return resources


# -- q1: STRICT namespace, one PERMISSIVE workload ----------------------------------------------------

STRICT_SOLUTION = STRICT_NAMESPACE + """\
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: legacy-api
  namespace: default
spec:
  selector:
    matchLabels:
      app: legacy-api
  mtls:
    mode: PERMISSIVE
"""


class StrictExceptLegacy(Question):
    """Namespace ``default`` STRICT, except the workload ``legacy-api``, which stays PERMISSIVE."""

    _vars = ["strict_yaml"]
    _error_prefix = "checking your PeerAuthentication raised an error"
    _solution_lang = "yaml"
    _solution = STRICT_SOLUTION
    _hint = [
        "A PeerAuthentication applies at one of three scopes: the whole mesh (a policy without "
        "`selector` in the root namespace, `istio-system`), one namespace (without `selector`, in that "
        "namespace), or some workloads (with `selector.matchLabels`, in their namespace).",
        "The more specific policy wins: a workload policy beats the namespace policy, which beats the "
        "mesh policy. So you need one policy for the rule and one for the exception.",
        "The pods of legacy-api carry the label `app: legacy-api`. Several documents go in one YAML "
        "string, separated by a line `---`.",
    ]

    def check(self, strict_yaml: Any) -> str:
        resources = _parse(strict_yaml, "strict_yaml", "PeerAuthentication")
        with lab_mesh() as mesh:
            mesh.apply(resources)
            from meshlab.apps.httpbin import make_app

            mesh.deploy(LATECOMER, make_app(LATECOMER))  # a team ships a new service after the migration
            services = (*SERVICES, LATECOMER)
            meshed = {s: _from_mesh(mesh, s) for s in services}
            legacy_policies = _security_policies(mesh, LEGACY)
            plain = {s: _plaintext(mesh, s) for s in services}
            other = _plaintext(mesh, OTHER_SERVICE, OTHER_NAMESPACE)
        failed = {s: f"{st} {fl}".strip() for s, (st, fl, _) in meshed.items() if st != 200}
        if failed:
            shown = ", ".join(f"{s}: {v}" for s, v in failed.items())
            raise Incorrect(f"calls from a client *with* a sidecar failed ({shown}). A PeerAuthentication alone "
                            "should never break mesh clients: they speak mTLS whenever the server accepts it.")
        if plain[LEGACY] is None:
            raise Incorrect("legacy-api refuses plaintext, so its clients without a sidecar would break. Your "
                            "exception does not reach it: check the selector's label and value, the namespace "
                            "of that policy, and its mode.")
        open_ = [s for s in SERVICES if s != LEGACY and plain[s] is not None]
        if open_:
            raise Incorrect(f"{' and '.join(open_)} still accept{'s' if len(open_) == 1 else ''} plaintext from "
                            "a client without a sidecar: nothing makes namespace `default` STRICT yet.")
        if plain[LATECOMER] is not None:
            raise Incorrect(f"`{LATECOMER}`, a service deployed *after* your policies, accepts plaintext: your "
                            "STRICT rule names workloads one by one, so every new workload of the namespace "
                            "starts PERMISSIVE. Make the rule cover the namespace itself.")
        if other is None:
            raise Incorrect(f"`{OTHER_SERVICE}` in namespace `{OTHER_NAMESPACE}` now refuses plaintext too: your "
                            "STRICT rule reaches the whole mesh. A policy in the root namespace (`istio-system`) "
                            "applies to every namespace; this migration is for `default` only.")
        if not legacy_policies.get("mutual_tls"):
            raise Incorrect("clients *with* a sidecar now talk to legacy-api in plaintext "
                            "(connection_security_policy \"none\"): its mode switches mTLS off. legacy-api "
                            "must still accept mTLS from meshed clients while its old clients move.")
        return ("namespace default refuses plaintext (also for services deployed later), legacy-api accepts "
                "both plaintext and mTLS, and other namespaces are untouched. Next, in a real migration: watch "
                "`istio_requests_total{destination_app=\"legacy-api\", connection_security_policy=\"none\"}` "
                "until it stays at zero, then delete the exception.")


# -- q2: the DestinationRule that breaks mTLS ----------------------------------------------------------

DR_SOLUTION = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: payments
spec:
  host: payments
  trafficPolicy:
    tls:
      mode: ISTIO_MUTUAL
  subsets:
  - name: v1
    labels:
      version: v1
  - name: v2
    labels:
      version: v2
"""


def _tls_modes(dr: Resource) -> set[str]:
    """Every ``tls.mode`` a DestinationRule sets: top level, per port, per subset."""
    modes = set()

    def collect(policy: Any) -> None:
        if policy is None:
            return
        if policy.tls is not None and policy.tls.mode:
            modes.add(policy.tls.mode)
        for port in policy.portLevelSettings or []:
            if port.tls is not None and port.tls.mode:
                modes.add(port.tls.mode)

    collect(dr.spec.trafficPolicy)
    for subset in dr.spec.subsets or []:
        collect(subset.trafficPolicy)
    return modes


class FixPaymentsDestinationRule(Question):
    """Calls to payments fail with 503 UC after the namespace went STRICT: fix its DestinationRule."""

    _vars = ["payments_dr"]
    _error_prefix = "checking your DestinationRule raised an error"
    _solution_lang = "yaml"
    _solution = DR_SOLUTION
    _hint = [
        "503 with the response flag `UC` means the upstream connection was closed before a response: "
        "here, the payments sidecar resets every connection that does not speak mTLS "
        "(its counter `inbound.downstream_cx_refused.plaintext` goes up).",
        "Whether a client sidecar originates mTLS is decided on the *client* side: by the "
        "DestinationRule's `trafficPolicy.tls`, or, when it is not set, by auto mTLS.",
        "Keep the subsets: the VirtualService routes to `v1`.",
    ]

    CALLS = 10

    def check(self, payments_dr: Any) -> str:
        resources = _parse(payments_dr, "payments_dr", "DestinationRule", exactly_one=True)
        dr = resources[0]
        from meshlab.proxy.route import config_fqdn

        wanted = f"{PAYMENTS}.{NAMESPACE}.svc.cluster.local"
        if config_fqdn(dr.spec.host, dr.namespace) != wanted:
            raise Incorrect(f"your DestinationRule is for host `{dr.spec.host}` (namespace {dr.namespace}): it does "
                            "not apply to the payments service, so the old rule still decides.")
        own_certs = sorted(_tls_modes(dr) & {"SIMPLE", "MUTUAL"})
        if own_certs:
            raise Incorrect(f"`{own_certs[0]}` originates TLS with certificates *you* provide (for servers outside "
                            "the mesh). A STRICT sidecar wants the client's mesh certificate, the one istio-agent "
                            "got from istiod.")
        with lab_mesh() as mesh:
            mesh.apply(PAYMENTS_SETUP)
            mesh.apply(resources)
            rules = [r.name for r in mesh.config_store.list("DestinationRule")
                     if config_fqdn(r.spec.host, r.namespace) == wanted]
            if len(rules) > 1:
                raise Incorrect(f"there are now {len(rules)} DestinationRules for payments ({', '.join(rules)}). "
                                "Istio merges rules for one host and keeps the older one's trafficPolicy, so the "
                                "broken setting stays. Change the existing rule (same name) instead.")
            results = [_from_mesh(mesh, PAYMENTS) for _ in range(self.CALLS)]
            policies = _security_policies(mesh, PAYMENTS)
            refused = int(mesh.stats(contains="downstream_cx_refused.plaintext")["value"].sum())
        codes = Counter(f"{st} {fl}".strip() for st, fl, _ in results)
        if set(codes) != {"200"}:
            shown = ", ".join(f"{k}: {n}/{self.CALLS}" for k, n in sorted(codes.items()))
            if any("NC" in k for k in codes):
                raise Incorrect(f"calls to payments got {shown}: flag `NC` means the route names a subset that "
                                "no DestinationRule defines. The VirtualService still routes to `v1`.")
            if any("UC" in k for k in codes) and refused:
                raise Incorrect(f"calls to payments still fail ({shown}), and the payments sidecar refused "
                                f"{refused} plaintext connection(s): the client sidecars are told to send "
                                "plaintext to a workload that is STRICT. Look at every `tls` setting your rule "
                                "makes, subsets included.")
            raise Incorrect(f"calls to payments got {shown}. Look at the response flags in "
                            "`mesh.access_log(service='payments')` in the playground (`preview`).")
        pods = {pod for _, _, pod in results}
        if not all(p.startswith(f"{PAYMENTS}-v1-") for p in pods):
            raise Incorrect(f"calls reached {', '.join(sorted(pods))}; the VirtualService sends everything to "
                            "subset v1. Check the subsets' labels.")
        if not policies.get("mutual_tls") or policies.get("none"):
            raise Incorrect("calls succeed, but not all over mTLS: payments is STRICT, so that should be "
                            "impossible; look at your tls settings.")
        tls = _tls_modes(dr)
        how = ("`ISTIO_MUTUAL` says it explicitly" if tls == {"ISTIO_MUTUAL"} else
               "without a `tls` setting, auto mTLS picks mTLS because payments has a sidecar")
        return (f"all {self.CALLS} calls reach payments v1 over mTLS ({how}). A DestinationRule's `tls` "
                "is the client side of the handshake; PeerAuthentication is the server side, and both "
                "must agree.")


# -- q3: read a workload certificate ------------------------------------------------------------------

CERT_SOLUTION = """\
from cryptography import x509

cert = x509.load_pem_x509_certificate(pem)  # pem = mystery_certificate(), the cell above
san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
uri = san.get_values_for_type(x509.UniformResourceIdentifier)[0]
# spiffe://<trust domain>/ns/<namespace>/sa/<service account>
trust_domain, _, namespace, _, service_account = uri.removeprefix("spiffe://").split("/")
cert_facts = {
    "trust_domain": trust_domain,
    "namespace": namespace,
    "service_account": service_account,
    # istio-agent renews at SECRET_GRACE_PERIOD_RATIO (0.5) of a 24 h lifetime
    "rotation_after_hours": 24 * 0.5,
}
"""

FACTS = ("trust_domain", "namespace", "service_account", "rotation_after_hours")


def mystery_certificate() -> bytes:
    """The workload certificate (PEM) that a fresh mesh's CA issues to one pod, with Istio's
    default lifetime (24 h): what ``istioctl proxy-config secret <pod>`` would show you."""
    from meshlab import Mesh
    from meshlab.apps.httpbin import make_app

    with Mesh(seed=SEED) as mesh:
        ns, service = MYSTERY["namespace"], MYSTERY["service"]
        mesh.deploy(service, make_app(service), namespace=ns, service_account=MYSTERY["service_account"])
        pod = mesh.replicas(service, namespace=ns)[0].name
        cert = mesh.certificate(f"{ns}/{pod}")
        from cryptography.hazmat.primitives import serialization

        return cert.certificate.public_bytes(serialization.Encoding.PEM)


class ReadTheCertificate(Question):
    """From a workload certificate: trust domain, namespace, service account, and when it is rotated."""

    _vars = ["cert_facts"]
    _error_prefix = "checking your answer raised an error"
    _solution = CERT_SOLUTION
    _hint = [
        "A workload certificate has an empty subject: the identity is its URI subject alternative name "
        "(`x509.SubjectAlternativeName`), a SPIFFE ID `spiffe://<trust domain>/ns/<namespace>/sa/<service "
        "account>`.",
        "istio-agent does not wait for expiry: it asks for a new certificate once a share of the lifetime "
        "has passed (`SECRET_GRACE_PERIOD_RATIO`). The lifetime is `not_valid_after - not_valid_before`.",
    ]

    def check(self, cert_facts: Any) -> str:
        if not isinstance(cert_facts, dict):
            raise Incorrect(f"`cert_facts` should be a dict with the keys {', '.join(FACTS)}; yours is a "
                            f"`{type(cert_facts).__name__}`.")
        missing = [k for k in FACTS if k not in cert_facts]
        extra = [k for k in cert_facts if k not in FACTS]
        if missing or extra:
            raise Incorrect(f"`cert_facts` should have exactly the keys {', '.join(FACTS)}"
                            + (f"; missing: {', '.join(missing)}" if missing else "")
                            + (f"; unexpected: {', '.join(map(str, extra))}" if extra else "") + ".")
        from cryptography import x509

        from meshlab.control.ca import spiffe_of

        cert = x509.load_pem_x509_certificate(mystery_certificate())
        uri = spiffe_of(cert) or ""
        trust_domain, _, namespace, _, account = uri.removeprefix("spiffe://").split("/")
        lifetime_h = (cert.not_valid_after_utc - cert.not_valid_before_utc) / dt.timedelta(hours=1)
        expected_h = ISTIO_CERT_TTL_H * ISTIO_GRACE_RATIO
        given = {k: cert_facts[k] for k in FACTS}
        for key in ("trust_domain", "namespace", "service_account"):
            if not isinstance(given[key], str):
                raise Incorrect(f"`{key}` should be a string.")
        if given["trust_domain"].startswith("spiffe://") or "/" in given["trust_domain"]:
            raise Incorrect("`trust_domain` is only the host part of the SPIFFE ID: no `spiffe://`, no path.")
        if given["trust_domain"] != trust_domain:
            raise Incorrect("`trust_domain` is not the one in the certificate's URI SAN.")
        if given["namespace"] != namespace:
            raise Incorrect("`namespace` is not the one in the certificate's URI SAN (the part after `/ns/`).")
        if given["service_account"] != account:
            if given["service_account"] == MYSTERY["service"]:
                raise Incorrect("that is the *service* name. The identity names the pod's Kubernetes service "
                                "account, which is often the same but not always: read it after `/sa/`.")
            raise Incorrect("`service_account` is not the one in the certificate's URI SAN (the part after `/sa/`).")
        hours = given["rotation_after_hours"]
        if isinstance(hours, bool) or not isinstance(hours, int | float):
            raise Incorrect("`rotation_after_hours` should be a number of hours (e.g. 1.5).")
        if abs(hours - lifetime_h) < 0.5:
            raise Incorrect("that is when the certificate expires. istio-agent renews well before, so that a "
                            "failed renewal can be retried while the old certificate is still valid.")
        if abs(hours - expected_h) > 0.5:  # Istio adds ~1 % jitter to the ratio: about 15 minutes
            raise Incorrect(f"{hours:g} h is not when istio-agent renews with Istio's default grace ratio. "
                            "Which share of the lifetime is that ratio?")
        return (f"{uri}: trust domain {trust_domain}, namespace {namespace}, service account {account}. "
                f"The certificate lives {lifetime_h:.0f} h and istio-agent replaces it after about "
                f"{expected_h:g} h (Istio adds ~1% jitter so that pods do not all renew at once).")


q1 = StrictExceptLegacy()
q2 = FixPaymentsDestinationRule()
q3 = ReadTheCertificate()

__all__ = [*__all__, *bind_questions(globals())]
