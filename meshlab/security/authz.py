"""AuthorizationPolicy: who may call what, decided in the *server's* sidecar (Envoy's RBAC filter).

Theory of operation
-------------------
istiod turns every AuthorizationPolicy that applies to a workload into the configuration of
Envoy RBAC filters in that workload's inbound HTTP chain, after JWT authentication. meshlab
compiles the same policies (``compile_authorization_policies``, run by pilot) and evaluates
them with a pure function, ``evaluate(policies, attributes) -> Decision``, which the inbound
``AuthzFilter`` calls for every request and notebooks can call directly.

**Which policies apply to a workload** (``policies_for``):

* a policy in the root namespace (``istio-system``) without a selector: every workload (mesh-wide);
* a policy in the workload's namespace without a selector: every workload of that namespace;
* a policy with ``selector.matchLabels`` that are a subset of the pod's labels, in the
  workload's namespace *or in the root namespace* (Istio looks in both);
* a policy with ``targetRef``/``targetRefs`` attaches to gateways and waypoints, never to a
  sidecar: it is compiled, kept, and skipped (its ``note`` says why).

**Evaluation order** (Istio's documented order)::

    CUSTOM  ->  DENY  ->  ALLOW
    (skipped:   (any DENY rule       (no ALLOW policy applies: allow;
     not         matches: 403)        otherwise a rule of one of them must match, else 403)
     simulated)

AUDIT policies never change the decision: a match is *logged* (counted). A policy annotated
``istio.io/dry-run: "true"`` is evaluated in shadow mode: its would-be result is reported and
counted, never enforced. ``spec: {}`` is an ALLOW policy without rules: it applies and nothing
can match it, so it denies everything; a rule ``{}`` matches every request; a DENY policy
without rules never matches.

**Inside a rule** ``from`` AND ``to`` AND ``when``; the entries of ``from`` (and of ``to``) are
ORed; the fields of one ``source`` (or ``operation``) are ANDed; the values of one field are
ORed; a ``notX`` field matches when the value matches none of its entries (so it also matches a
request that has no such value at all, e.g. ``notPrincipals`` on plaintext). The ``when``
conditions are ANDed, each with ``values`` ORed and ``notValues`` excluded.

**Matching values**: ``"abc*"`` is a prefix, ``"*abc"`` a suffix, ``"*"`` means "present"
(``principals: ["*"]`` is "any mTLS peer"; ``requestPrincipals: ["*"]`` is "any valid JWT"),
anything else is exact. Hosts compare case-insensitively and an exact host does *not* match
the same host with a port (``httpbin`` vs ``httpbin:80``; Istio's advice is to add
``"httpbin:*"``). Paths are matched without the query string, after RFC 3986 dot-segment
normalisation (Istio's default ``BASE`` normalisation) and may use the templates ``{*}`` (one
segment) and ``{**}`` (any number of segments). IP fields take addresses or CIDR blocks.

**Identities**: ``principals`` are the SPIFFE ids that mTLS proved, without ``spiffe://``
(``cluster.local/ns/default/sa/productpage``); ``namespaces`` and trust domains are read from
that principal, so they also need mTLS. ``requestPrincipals`` are ``<iss>/<sub>`` of a JWT that
RequestAuthentication validated.

A denial is answered ``403`` with the body ``RBAC: access denied``; the response code details
name the policy as Envoy does: ``rbac_access_denied_matched_policy[ns[default]-policy[deny-x]-rule[0]]``,
or ``...[none]`` when ALLOW policies apply and none matched.

For notebooks, ``explain(mesh, source=..., destination=..., ...)`` evaluates one call without
sending it, and ``matrix(mesh)`` builds the "who can call whom" table from such evaluations.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd

    from ..config import Resource
    from ..mesh import Mesh
    from ..proxy.route import Snapshot
    from ..proxy.sidecar import Sidecar

__all__ = [
    "ROOT_NAMESPACE",
    "RequestAttributes",
    "Decision",
    "AuthzPolicy",
    "AuthzRule",
    "compile_authorization_policies",
    "policies_for",
    "workload_policies",
    "selects",
    "evaluate",
    "value_matches",
    "normalize_path",
    "strip_spiffe",
    "record",
    "compile_policy",
    "DENIED_BODY",
    "explain",
    "matrix",
]

ROOT_NAMESPACE = "istio-system"
DRY_RUN_ANNOTATION = "istio.io/dry-run"
DENIED_BODY = "RBAC: access denied"


# ---------------------------------------------------------------------------- request attributes

@dataclass(frozen=True)
class RequestAttributes:
    """What an AuthorizationPolicy can look at in one request (Istio's "authorization attributes").

    ``source_principal`` is the peer's SPIFFE id *without* ``spiffe://`` (None: plaintext, no
    peer identity); ``request_principal`` is ``<iss>/<sub>`` of a validated JWT (None: no valid
    token) and ``claims`` its payload. ``headers`` maps lowercase names to values.
    """

    method: str = "GET"
    path: str = "/"
    host: str = ""
    port: int = 80
    headers: Mapping[str, str] = field(default_factory=dict)
    source_principal: str | None = None
    source_ip: str = "127.0.0.1"
    remote_ip: str | None = None
    destination_ip: str = "127.0.0.1"
    request_principal: str | None = None
    claims: Mapping[str, Any] | None = None
    sni: str | None = None

    @property
    def source_namespace(self) -> str | None:
        """The namespace in the peer principal (``.../ns/<namespace>/sa/...``)."""
        return _principal_part(self.source_principal, "ns")

    @property
    def trust_domain(self) -> str | None:
        """The trust domain of the peer principal (its first segment)."""
        return self.source_principal.split("/", 1)[0] if self.source_principal else None

    @property
    def audiences(self) -> list[str] | None:
        """The JWT's ``aud`` claim as a list."""
        aud = self.claims.get("aud") if self.claims else None
        if aud is None:
            return None
        return [aud] if isinstance(aud, str) else [a for a in aud if isinstance(a, str)]

    @property
    def presenter(self) -> str | None:
        """The JWT's authorized presenter (``azp`` claim)."""
        azp = self.claims.get("azp") if self.claims else None
        return azp if isinstance(azp, str) else None

    def claim(self, path: Sequence[str]) -> Any:
        """A (nested) claim: ``claim(["a", "b"])`` is ``claims["a"]["b"]`` (None if absent)."""
        value: Any = self.claims
        for key in path:
            if not isinstance(value, Mapping):
                return None
            value = value.get(key)
        return value


def _principal_part(principal: str | None, key: str) -> str | None:
    if not principal:
        return None
    parts = principal.split("/")
    for i in range(1, len(parts) - 1):
        if parts[i] == key:
            return parts[i + 1]
    return None


def strip_spiffe(principal: str | None) -> str | None:
    """``spiffe://cluster.local/ns/a/sa/b`` -> ``cluster.local/ns/a/sa/b``; unknown/None -> None."""
    if not principal or principal == "unknown":
        return None
    return principal[len("spiffe://"):] if principal.startswith("spiffe://") else principal


def normalize_path(path: str) -> str:
    """The path part of a request target (no query, no fragment) with ``.`` and ``..`` segments
    removed (RFC 3986), as Envoy's ``normalize_path`` (Istio's default ``BASE`` normalisation)
    does before the RBAC filter sees it. Repeated slashes are kept, as in ``BASE``."""
    path = path.split("?", 1)[0].split("#", 1)[0]
    segments = path.split("/")[1:] if path.startswith("/") else path.split("/")
    out: list[str] = []
    for i, seg in enumerate(segments):
        last = i == len(segments) - 1
        if seg in (".", ".."):
            if seg == ".." and out:
                out.pop()
            if last:
                out.append("")
        else:
            out.append(seg)
    return "/" + "/".join(out)


# ---------------------------------------------------------------------------- value matching

def value_matches(pattern: str, value: str | None, ignore_case: bool = False) -> bool:
    """Istio's string match: ``*`` present, ``abc*`` prefix, ``*abc`` suffix, else exact."""
    if value is None:
        return False
    if pattern == "*":
        return True
    if ignore_case:
        pattern, value = pattern.lower(), value.lower()
    if pattern.startswith("*"):
        return value.endswith(pattern[1:])
    if pattern.endswith("*"):
        return value.startswith(pattern[:-1])
    return value == pattern


def _path_matches(pattern: str, path: str | None) -> bool:
    if path is None:
        return False
    if "{*}" in pattern or "{**}" in pattern:
        return _template(pattern).fullmatch(path) is not None
    return value_matches(pattern, path)


_TEMPLATES: dict[str, re.Pattern[str]] = {}


def _template(pattern: str) -> re.Pattern[str]:
    """A path template (``/a/{*}/b``, ``/{**}/x``) as a regular expression: ``{*}`` is one
    non-empty segment, ``{**}`` any number of segments."""
    rx = _TEMPLATES.get(pattern)
    if rx is None:
        out = ""
        for token in re.split(r"(\{\*\*\}|\{\*\})", pattern):
            out += "[^/]+" if token == "{*}" else ".*" if token == "{**}" else re.escape(token)
        rx = _TEMPLATES[pattern] = re.compile(out)
    return rx


def _ip_matches(block: str, ip: str | None) -> bool:
    if not ip:
        return False
    try:
        return ipaddress.ip_address(ip) in ipaddress.ip_network(block, strict=False)
    except ValueError:
        return False


def _any(patterns: Sequence[str], values: Sequence[str] | None, match: Callable[[str, str | None], bool]) -> bool:
    if not values:
        return False
    return any(match(p, v) for p in patterns for v in values)


# ---------------------------------------------------------------------------- compiled policies

@dataclass(frozen=True)
class _Check:
    """One field of a source/operation or one ``when`` condition, compiled: the request value(s)
    ``get`` reads must ``match`` one of ``patterns`` (or none of them when ``negated``)."""

    label: str
    patterns: tuple[str, ...]
    negated: bool
    get: Callable[[RequestAttributes], Sequence[str] | None]
    match: Callable[[str, str | None], bool]

    def failure(self, attrs: RequestAttributes) -> str | None:
        """None when the check passes; else why it does not."""
        values = self.get(attrs)
        hit = _any(self.patterns, values, self.match)
        if hit != self.negated:
            return None
        shown = "none" if not values else ", ".join(map(repr, values))
        if self.negated:
            return f"{self.label}: {shown} is excluded by {list(self.patterns)}"
        return f"{self.label}: {shown} not in {list(self.patterns)}"


def _one(getter: Callable[[RequestAttributes], str | None]) -> Callable[[RequestAttributes], Sequence[str] | None]:
    def get(a: RequestAttributes) -> Sequence[str] | None:
        v = getter(a)
        return None if v is None else [v]

    return get


def _sa_matcher(policy_ns: str) -> Callable[[str, str | None], bool]:
    def match(pattern: str, principal: str | None) -> bool:
        if not principal:
            return False
        ns, _, sa = pattern.rpartition("/")
        return principal.endswith(f"/ns/{ns or policy_ns}/sa/{sa}") and principal.count("/") == 4

    return match


def _host_match(pattern: str, value: str | None) -> bool:
    return value_matches(pattern, value, ignore_case=True)


def _port_match(pattern: str, value: str | None) -> bool:
    return value is not None and pattern.strip() == value


_SOURCE_FIELDS: dict[str, tuple[Callable[[RequestAttributes], Sequence[str] | None], Callable[..., bool]]] = {
    "principals": (_one(lambda a: a.source_principal), value_matches),
    "requestPrincipals": (_one(lambda a: a.request_principal), value_matches),
    "namespaces": (_one(lambda a: a.source_namespace), value_matches),
    "ipBlocks": (_one(lambda a: a.source_ip), _ip_matches),
    "remoteIpBlocks": (_one(lambda a: a.remote_ip or a.source_ip), _ip_matches),
    "trustDomains": (_one(lambda a: a.trust_domain), value_matches),
}
_OPERATION_FIELDS: dict[str, tuple[Callable[[RequestAttributes], Sequence[str] | None], Callable[..., bool]]] = {
    "hosts": (_one(lambda a: a.host), _host_match),
    "ports": (_one(lambda a: str(a.port)), _port_match),
    "methods": (_one(lambda a: a.method), value_matches),
    "paths": (_one(lambda a: normalize_path(a.path)), _path_matches),
}


def _not(name: str) -> str:
    return "not" + name[0].upper() + name[1:]


def _source_checks(source: Any, policy_ns: str) -> tuple[_Check, ...]:
    checks = []
    for name, (get, match) in _SOURCE_FIELDS.items():
        for negated, fname in ((False, name), (True, _not(name))):
            values = getattr(source, fname, None)
            if values:
                checks.append(_Check(fname, tuple(values), negated, get, match))
    for negated, fname in ((False, "serviceAccounts"), (True, "notServiceAccounts")):
        values = getattr(source, fname, None)
        if values:
            checks.append(_Check(fname, tuple(values), negated, _one(lambda a: a.source_principal),
                                 _sa_matcher(policy_ns)))
    return tuple(checks)


def _operation_checks(operation: Any) -> tuple[_Check, ...]:
    checks = []
    for name, (get, match) in _OPERATION_FIELDS.items():
        for negated, fname in ((False, name), (True, _not(name))):
            values = getattr(operation, fname, None)
            if values:
                checks.append(_Check(fname, tuple(values), negated, get, match))
    return tuple(checks)


def _claim_values(value: Any) -> list[str] | None:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [v for v in value if isinstance(v, str)]
    return None


_CLAIM_KEY = re.compile(r"\[([^\[\]]+)\]")


def _condition_getter(key: str) -> tuple[Callable[[RequestAttributes], Sequence[str] | None], Callable[..., bool]]:
    """The attribute a ``when`` key names and how its values compare."""
    if key.startswith("request.headers["):
        header = key[len("request.headers["):-1].lower()
        return _one(lambda a: a.headers.get(header)), value_matches
    if key.startswith("request.auth.claims["):
        path = _CLAIM_KEY.findall(key[len("request.auth.claims"):])
        return (lambda a: _claim_values(a.claim(path))), value_matches
    simple: dict[str, tuple[Callable[[RequestAttributes], Sequence[str] | None], Callable[..., bool]]] = {
        "source.ip": (_one(lambda a: a.source_ip), _ip_matches),
        "remote.ip": (_one(lambda a: a.remote_ip or a.source_ip), _ip_matches),
        "destination.ip": (_one(lambda a: a.destination_ip), _ip_matches),
        "source.namespace": (_one(lambda a: a.source_namespace), value_matches),
        "source.principal": (_one(lambda a: a.source_principal), value_matches),
        "source.trustDomain": (_one(lambda a: a.trust_domain), value_matches),
        "request.auth.principal": (_one(lambda a: a.request_principal), value_matches),
        "request.auth.audiences": (lambda a: a.audiences, value_matches),
        "request.auth.presenter": (_one(lambda a: a.presenter), value_matches),
        "destination.port": (_one(lambda a: str(a.port)), _port_match),
        "connection.sni": (_one(lambda a: a.sni), value_matches),
    }
    # experimental.envoy.filters.* reads Envoy filter metadata meshlab does not produce: never present
    return simple.get(key, (lambda a: None, value_matches))


def _condition_checks(condition: Any) -> tuple[_Check, ...]:
    get, match = _condition_getter(condition.key)
    checks = []
    if condition.values:
        checks.append(_Check(condition.key, tuple(condition.values), False, get, match))
    if condition.notValues:
        checks.append(_Check(f"{condition.key} (notValues)", tuple(condition.notValues), True, get, match))
    return tuple(checks)


@dataclass(frozen=True)
class AuthzRule:
    """One rule: ``sources`` (ORed groups of ANDed checks) AND ``operations`` (same) AND ``conditions``
    (all ANDed). An empty tuple of groups means "not set": matches anything."""

    sources: tuple[tuple[_Check, ...], ...] = ()
    operations: tuple[tuple[_Check, ...], ...] = ()
    conditions: tuple[_Check, ...] = ()

    def failure(self, attrs: RequestAttributes) -> str | None:
        """None when the rule matches ``attrs``; else the first reason it does not."""
        for groups, what in ((self.sources, "from"), (self.operations, "to")):
            if not groups:
                continue
            reasons = []
            for group in groups:
                why = next((w for w in (c.failure(attrs) for c in group) if w), None)
                if why is None:
                    break
                reasons.append(why)
            else:
                return f"{what}: " + ("; ".join(reasons) if len(reasons) == 1 else
                                      " / ".join(f"[{i}] {r}" for i, r in enumerate(reasons)))
        for check in self.conditions:
            why = check.failure(attrs)
            if why:
                return f"when: {why}"
        return None

    def matches(self, attrs: RequestAttributes) -> bool:
        """Whether the rule matches ``attrs``."""
        return self.failure(attrs) is None


@dataclass(frozen=True)
class AuthzPolicy:
    """One AuthorizationPolicy, compiled (see the module docstring)."""

    name: str
    namespace: str
    action: str = "ALLOW"
    rules: tuple[AuthzRule, ...] = ()
    selector: tuple[tuple[str, str], ...] | None = None
    has_target_ref: bool = False
    dry_run: bool = False
    provider: str | None = None

    @property
    def key(self) -> str:
        """``namespace/name``."""
        return f"{self.namespace}/{self.name}"

    def policy_id(self, rule: int) -> str:
        """Envoy's name for one rule of this policy: ``ns[default]-policy[name]-rule[0]``."""
        return f"ns[{self.namespace}]-policy[{self.name}]-rule[{rule}]"

    @property
    def note(self) -> str:
        """Why the policy is only partly simulated, if it is."""
        if self.has_target_ref:
            return "targetRef/targetRefs attach a policy to gateways and waypoints, not to sidecars: skipped"
        if self.action == "CUSTOM":
            return f"CUSTOM (external authorizer {self.provider or '?'}) is not simulated by meshlab: skipped"
        return ""

    def match(self, attrs: RequestAttributes) -> int | None:
        """The index of the first rule that matches (Envoy reports the lowest policy id), or None."""
        hits = [i for i, r in enumerate(self.rules) if r.matches(attrs)]
        return min(hits, key=lambda i: self.policy_id(i)) if hits else None


def _compile_rule(rule: Any, policy_ns: str) -> AuthzRule:
    sources = tuple(_source_checks(f.source, policy_ns) for f in (rule.from_ or []) if f.source is not None)
    operations = tuple(_operation_checks(t.operation) for t in (rule.to or []) if t.operation is not None)
    conditions = tuple(c for cond in (rule.when or []) for c in _condition_checks(cond))
    return AuthzRule(sources, operations, conditions)


def compile_policy(resource: Resource) -> AuthzPolicy:
    """One AuthorizationPolicy resource -> ``AuthzPolicy``."""
    spec: Any = resource.spec
    sel = spec.selector.matchLabels if spec.selector is not None else None
    selector = tuple(sorted((sel or {}).items())) if spec.selector is not None else None
    meta = resource.raw.get("metadata") if isinstance(resource.raw.get("metadata"), dict) else {}
    annotations = meta.get("annotations") or {}
    dry_run = str(annotations.get(DRY_RUN_ANNOTATION, "")).lower() == "true"
    return AuthzPolicy(
        name=resource.name, namespace=resource.namespace, action=spec.action or "ALLOW",
        rules=tuple(_compile_rule(r, resource.namespace) for r in (spec.rules or [])),
        selector=selector, has_target_ref=bool(spec.targetRef or spec.targetRefs), dry_run=dry_run,
        provider=spec.provider.name if spec.provider is not None else None,
    )


def compile_authorization_policies(resources: Iterable[Resource]) -> list[AuthzPolicy]:
    """AuthorizationPolicy resources (oldest first) -> compiled policies, same order."""
    return [compile_policy(r) for r in resources]


def selects(policy_ns: str, selector: tuple[tuple[str, str], ...] | None, has_target_ref: bool,
            namespace: str, labels: Mapping[str, str]) -> bool:
    """Whether a policy (AuthorizationPolicy, RequestAuthentication) in ``policy_ns`` applies to
    a sidecar workload in ``namespace`` with pod ``labels`` (see the module docstring)."""
    if has_target_ref:
        return False
    if policy_ns not in (namespace, ROOT_NAMESPACE):
        return False
    if selector is None:
        return True
    return all(labels.get(k) == v for k, v in selector)


def policies_for(policies: Iterable[AuthzPolicy], namespace: str, labels: Mapping[str, str]) -> list[AuthzPolicy]:
    """The policies that apply to a workload (root namespace first, then its own; oldest first)."""
    mine = [p for p in policies if selects(p.namespace, p.selector, False, namespace, labels)]
    return sorted(mine, key=lambda p: p.namespace != ROOT_NAMESPACE)


# ---------------------------------------------------------------------------- the decision

@dataclass(frozen=True)
class Decision:
    """The outcome of evaluating a request against the policies of one workload.

    ``action`` is the kind of policy that decided (``DENY``, ``ALLOW``; ``NONE`` when no policy
    applies; ``explain`` also uses ``PeerAuthentication`` and ``RequestAuthentication`` for calls
    refused before authorization). ``policy`` is ``namespace/name`` and ``rule`` the rule index
    that matched, when one did. ``status`` is what the caller gets (200: the request reaches the
    app; 0: the connection is reset, no HTTP answer). ``logged`` lists AUDIT matches, ``shadow`` what dry-run policies would have done.
    """

    allowed: bool
    policy: str | None
    rule: int | None
    action: str
    reason: str
    status: int = 200
    logged: tuple[str, ...] = ()
    shadow: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    shadow_stats: tuple[str, ...] = field(default=(), repr=False)

    @property
    def policy_id(self) -> str | None:
        """Envoy's id of the deciding rule (``ns[default]-policy[x]-rule[0]``)."""
        if self.policy is None or self.rule is None:
            return None
        ns, name = self.policy.split("/", 1)
        return f"ns[{ns}]-policy[{name}]-rule[{self.rule}]"

    @property
    def details(self) -> str:
        """Envoy's response code details for a denial (empty when allowed)."""
        if self.allowed or self.action not in ("ALLOW", "DENY"):
            return ""
        return f"rbac_access_denied_matched_policy[{self.policy_id or 'none'}]"

    def __str__(self) -> str:
        verdict = "ALLOW" if self.allowed else "DENY"
        return f"{verdict} ({self.status}): {self.reason}"


def evaluate(policies: Iterable[AuthzPolicy | Resource], attrs: RequestAttributes) -> Decision:
    """Decide one request against the policies that apply to the destination workload.

    Pure: no mesh, no sockets. ``policies`` are compiled ``AuthzPolicy`` objects (or
    AuthorizationPolicy resources, compiled on the fly), already selected for the workload
    (``policies_for``); policies with a targetRef are skipped."""
    compiled = [p if isinstance(p, AuthzPolicy) else compile_policy(p) for p in policies]
    notes = tuple(p.note and f"{p.key}: {p.note}" for p in compiled if p.note)
    active = [p for p in compiled if not p.has_target_ref and p.action != "CUSTOM"]
    enforced = [p for p in active if not p.dry_run]
    logged = tuple(f"{p.key} rule {i}" for p in enforced if p.action == "AUDIT"
                   for i in [p.match(attrs)] if i is not None)
    shadow, shadow_stats = _shadow(active, attrs)

    def decide(allowed: bool, policy: AuthzPolicy | None, rule: int | None, action: str, reason: str) -> Decision:
        return Decision(allowed, policy.key if policy else None, rule, action, reason,
                        200 if allowed else 403, logged, shadow, notes, shadow_stats)

    deny_hits = [(p.policy_id(i), p, i) for p in enforced if p.action == "DENY"
                 for i in [p.match(attrs)] if i is not None]
    if deny_hits:
        _, p, i = min(deny_hits, key=lambda h: h[0])
        return decide(False, p, i, "DENY", f"DENY policy {p.key} rule {i} matched")
    allows = [p for p in enforced if p.action == "ALLOW"]
    if not allows:
        return decide(True, None, None, "NONE", "no ALLOW policy applies to the workload: allowed by default")
    allow_hits = [(p.policy_id(i), p, i) for p in allows for i in [p.match(attrs)] if i is not None]
    if allow_hits:
        _, p, i = min(allow_hits, key=lambda h: h[0])
        return decide(True, p, i, "ALLOW", f"ALLOW policy {p.key} rule {i} matched")
    return decide(False, None, None, "ALLOW", "ALLOW policies apply but none matched: " + "; ".join(
        _why_not(p, attrs) for p in allows))


def _why_not(policy: AuthzPolicy, attrs: RequestAttributes) -> str:
    if not policy.rules:
        return f"{policy.key} has no rules (it matches nothing: deny all)"
    reasons = [f"rule {i}: {r.failure(attrs)}" for i, r in enumerate(policy.rules)]
    return f"{policy.key} " + (reasons[0] if len(reasons) == 1 else "{" + ", ".join(reasons) + "}")


def _shadow(active: list[AuthzPolicy], attrs: RequestAttributes) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """What the dry-run policies would have done (Envoy's shadow rules): (descriptions, counters)."""
    said, counters = [], []
    dry_denies = [p for p in active if p.dry_run and p.action == "DENY"]
    if dry_denies:
        hits = [(p, i) for p in dry_denies for i in [p.match(attrs)] if i is not None]
        for p, i in hits:
            said.append(f"would deny: dry-run DENY policy {p.key} rule {i} matched")
        counters.append("istio_dry_run_deny_shadow_denied" if hits else "istio_dry_run_deny_shadow_allowed")
    dry_allows = [p for p in active if p.dry_run and p.action == "ALLOW"]
    if dry_allows:
        hits = [(p, i) for p in dry_allows for i in [p.match(attrs)] if i is not None]
        said.append(f"would allow: dry-run ALLOW policy {hits[0][0].key} rule {hits[0][1]} matched" if hits
                    else "would deny: no dry-run ALLOW policy matched")
        counters.append("istio_dry_run_allow_shadow_allowed" if hits else "istio_dry_run_allow_shadow_denied")
    return tuple(said), tuple(counters)


def record(stats: Any, policies: Sequence[AuthzPolicy], decision: Decision) -> None:
    """Count one decision in a sidecar's stats: Envoy's RBAC counters (``rbac.allowed``,
    ``rbac.denied``, ``rbac.logged``/``rbac.not_logged`` for AUDIT, the dry-run shadow counters
    ``rbac.istio_dry_run_{allow,deny}_shadow_{allowed,denied}``) and meshlab's per-policy ones
    (``rbac.policy.<ns>.<name>.{allowed,denied,logged}``)."""
    stats["rbac.allowed" if decision.allowed else "rbac.denied"] += 1
    if decision.policy is not None:
        ns, name = decision.policy.split("/", 1)
        stats[f"rbac.policy.{ns}.{name}.{'allowed' if decision.allowed else 'denied'}"] += 1
    if any(p.action == "AUDIT" and not p.dry_run for p in policies):
        stats["rbac.logged" if decision.logged else "rbac.not_logged"] += 1
        for entry in decision.logged:
            ns, name = entry.split(" ", 1)[0].split("/", 1)
            stats[f"rbac.policy.{ns}.{name}.logged"] += 1
    for counter in decision.shadow_stats:
        stats[f"rbac.{counter}"] += 1


# ---------------------------------------------------------------------------- notebooks

def workload_policies(sidecar: Sidecar, snapshot: Snapshot | None = None) -> list[AuthzPolicy]:
    """The compiled policies that apply to ``sidecar`` in ``snapshot`` (default: its current
    configuration); cached per snapshot."""
    snap = snapshot if snapshot is not None else sidecar.pilot.snapshot
    cache = snap.extra.setdefault("_authz_for", {})
    key = (sidecar.namespace, tuple(sorted(sidecar.labels.items())))
    found = cache.get(key)
    if found is None:
        found = cache[key] = policies_for(snap.extra.get("authz", []), sidecar.namespace, sidecar.labels)
    return found


def _source_sidecar(mesh: Mesh, source: str | None) -> Sidecar | None:
    if source in (None, "", "external", "none"):
        return None
    if source == "curl":
        return mesh._client()
    if source in ("istio-ingressgateway", "ingress"):
        return mesh.ingress
    return mesh.sidecar(source)


def explain(mesh: Mesh, source: str | None = "curl", destination: str = "", method: str = "GET",
            path: str = "/", headers: Mapping[str, str] | None = None, token: str | None = None,
            replica: int = 0) -> Decision:
    """What would happen to one call, decided by evaluating (nothing is sent).

    ``source`` is ``"curl"`` (the mesh's client workload), ``"istio-ingressgateway"``, a service
    or pod name, or None / ``"external"`` for a caller without a sidecar (plaintext, no
    identity). ``destination`` is a service or pod. ``token`` is sent as ``Authorization:
    Bearer <token>``. The evaluation follows the inbound path: PeerAuthentication (would the
    connection be accepted, with which peer identity), RequestAuthentication (is the token
    valid), then AuthorizationPolicy. Example::

        d = explain(mesh, source="productpage", destination="reviews", path="/reviews/0")
        d.allowed, d.reason
    """
    async def run() -> Decision:
        return _explain(mesh, source, destination, method, path, headers, token, replica)

    return mesh._run(run())  # type: ignore[no-any-return]


def _explain(mesh: Mesh, source: str | None, destination: str, method: str, path: str,
             headers: Mapping[str, str] | None, token: str | None, replica: int) -> Decision:
    from ..proxy.cluster import cluster_name
    from ..proxy.http1 import Headers
    from ..security.peer_authentication import effective_mode
    from .jwt import authenticate, providers_for

    dst = mesh.sidecar(destination, replica)
    src = _source_sidecar(mesh, source)
    snap = dst.pilot.snapshot
    host = dst.replica.service if dst.replica is not None else destination
    fqdn = f"{host}.{dst.namespace}.svc.cluster.local"
    mode = effective_mode(snap.extra.get("peer_auth", []), dst.namespace, dst.labels, dst.port)
    mtls = False
    if src is not None and src.agent is not None:
        cluster = snap.clusters.get(cluster_name("outbound", dst.port, "", fqdn))
        tls_mode = getattr(cluster, "tls_mode", "") if cluster is not None else ""
        mtls = tls_mode == "ISTIO_MUTUAL" or (tls_mode != "DISABLE" and mode != "DISABLE")
    # a refused connection: a caller without a sidecar sees a reset (no HTTP status: 0), one
    # with a sidecar gets that sidecar's 503 (response flag UC)
    refused = 0 if src is None else 503
    if mode == "STRICT" and not mtls:
        return Decision(False, None, None, "PeerAuthentication",
                        f"{dst.name} is STRICT: it refuses the plaintext connection (reset before any HTTP)", refused)
    if mode == "DISABLE" and mtls:
        return Decision(False, None, None, "PeerAuthentication",
                        f"{dst.name} is DISABLE: it refuses the mTLS connection (reset before any HTTP)", refused)
    h = Headers(dict(headers or {}))
    h.setdefault("host", host)
    if token is not None:
        h.set("authorization", f"Bearer {token}")
    request_principal = claims = None
    providers = providers_for(dst, snap)
    if providers:
        result = authenticate(providers, h, path, dst.clock())
        if not result.ok:
            return Decision(False, None, None, "RequestAuthentication",
                            f"JWT rejected by {result.provider or 'RequestAuthentication'}: {result.status}",
                            result.code)
        result.apply(h)
        if result.identity is not None:
            request_principal, claims = result.identity.principal, result.identity.claims
    attrs = RequestAttributes(
        method=method, path=path, host=h.get("host") or host, port=dst.port,
        headers={k: ",".join(h.get_all(k)) for k, _ in h}, destination_ip=dst.inbound.host or "127.0.0.1",
        source_principal=strip_spiffe(src.identity.principal) if (src is not None and mtls) else None,
        request_principal=request_principal, claims=claims,
    )
    return evaluate(workload_policies(dst, snap), attrs)


def matrix(mesh: Mesh, sources: Sequence[str | None] | None = None, destinations: Sequence[str] | None = None,
           method: str = "GET", path: str = "/", values: str = "allowed", **kw: Any) -> pd.DataFrame:
    """Who can call whom: one ``explain`` per (source, destination), nothing sent.

    Rows are sources (default: ``curl`` and every service), columns destinations (default:
    every service). ``values`` is the ``Decision`` attribute to show: ``allowed`` (bool, the
    default), ``status``, ``policy``, ``action`` or ``reason``. Extra keywords go to ``explain``
    (``headers``, ``token``)."""
    import pandas as pd

    services = sorted(n for (ns, n) in mesh.registry.services if ns == mesh.namespace)
    srcs = list(sources) if sources is not None else ["curl", *services]
    dsts = list(destinations) if destinations is not None else services
    rows = {}
    for s in srcs:
        label = s if s is not None else "external"
        rows[label] = {d: getattr(explain(mesh, s, d, method, path, **kw), values) for d in dsts}
    frame = pd.DataFrame.from_dict(rows, orient="index", columns=dsts)
    frame.index.name, frame.columns.name = "source", "destination"
    return frame
