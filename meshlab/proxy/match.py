"""Request matching: Istio's ``HTTPMatchRequest`` compiled into a function of a request.

One match block is a set of conditions that must *all* hold (AND): uri, method, authority,
scheme, headers, withoutHeaders, queryParams, port, sourceLabels, sourceNamespace (and
``gateways``, applied by the control plane when it compiles routes per gateway).
A route's list of match blocks is ORed by the route (``Route.matches_request``).

String conditions (``StringMatch``) are ``exact``, ``prefix`` or ``regex``; a regex must match
the *whole* value (Envoy uses RE2 full matches; Python's ``re.fullmatch`` is the stand-in). A
header condition with an empty StringMatch (``end-user: {}``) means "header present". Header
names are lowercase, as Envoy sees them. ``ignoreUriCase`` makes exact and prefix URI matches
case-insensitive; a regex stays case-sensitive (Istio: "only in the case of exact and prefix").
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl

if TYPE_CHECKING:
    from .http1 import Request

__all__ = ["compile_string_match", "compile_match", "query_params"]

StrPred = Callable[[str | None], bool]


def compile_string_match(sm: Any, ignore_case: bool = False) -> StrPred:
    """A predicate for one ``StringMatch`` (None value = absent: never matches, except presence)."""
    if sm is None:
        return lambda v: True
    exact, prefix, regex = sm.exact, sm.prefix, sm.regex
    if exact is not None:
        if ignore_case:
            low = exact.lower()
            return lambda v: v is not None and v.lower() == low
        return lambda v: v == exact
    if prefix is not None:
        if ignore_case:
            lowp = prefix.lower()
            return lambda v: v is not None and v.lower().startswith(lowp)
        return lambda v: v is not None and v.startswith(prefix)
    if regex is not None:
        pattern = re.compile(regex, re.IGNORECASE if ignore_case else 0)
        return lambda v: v is not None and pattern.fullmatch(v) is not None
    return lambda v: v is not None  # empty match: presence


CLAIM_PREFIX = "@request.auth.claims."


def _claim_matches(stream: Any, path: list[str], pred: StrPred) -> bool:
    """JWT claim routing (gateways only): the validated token's claim at ``path`` (nested names
    separated by dots); a list claim matches if any of its items does."""
    identity = stream.extra.get("jwt")
    value: Any = getattr(identity, "claims", None)
    for key in path:
        if not isinstance(value, dict) or key not in value:
            return False
        value = value[key]
    items = value if isinstance(value, list) else [value]
    return any(pred(str(v)) for v in items)


def query_params(path: str) -> dict[str, str]:
    """The query parameters of a path (first value wins)."""
    if "?" not in path:
        return {}
    out: dict[str, str] = {}
    for k, v in parse_qsl(path.split("?", 1)[1], keep_blank_values=True):
        out.setdefault(k, v)
    return out


def compile_match(m: Any) -> Callable[[Request, Any], bool]:
    """A predicate ``(request, stream) -> bool`` for one ``HTTPMatchRequest``."""
    checks: list[Callable[[Request, Any], bool]] = []
    if m.uri is not None:
        # ignoreUriCase applies to exact and prefix only (Envoy's case_sensitive ignores safe_regex)
        uri = compile_string_match(m.uri, bool(m.ignoreUriCase) and m.uri.regex is None)
        checks.append(lambda req, s: uri(req.path.split("?", 1)[0]))
    if m.method is not None:
        method = compile_string_match(m.method)
        checks.append(lambda req, s: method(req.method))
    if m.authority is not None:
        authority = compile_string_match(m.authority)
        checks.append(lambda req, s: authority(s.authority))
    if m.scheme is not None:
        scheme = compile_string_match(m.scheme)
        checks.append(lambda req, s: scheme("http"))
    for name, sm in (m.headers or {}).items():
        pred = compile_string_match(sm)
        if name.startswith(CLAIM_PREFIX):
            path = name[len(CLAIM_PREFIX):].split(".")
            checks.append(lambda req, s, path=path, pred=pred: _claim_matches(s, path, pred))
            continue
        checks.append(lambda req, s, name=name.lower(), pred=pred: pred(req.headers.get(name)))
    for name, sm in (m.withoutHeaders or {}).items():
        pred = compile_string_match(sm)
        checks.append(lambda req, s, name=name.lower(), pred=pred: not pred(req.headers.get(name)))
    if m.queryParams:
        preds = {k: compile_string_match(v) for k, v in m.queryParams.items()}
        checks.append(lambda req, s: all(p(query_params(req.path).get(k)) for k, p in preds.items()))
    if m.port is not None:
        port = m.port
        checks.append(lambda req, s: s.extra.get("port", 80) == port)
    if m.sourceLabels:
        wanted = dict(m.sourceLabels)
        checks.append(lambda req, s: all(s.sidecar.labels.get(k) == v for k, v in wanted.items()))
    if m.sourceNamespace is not None:
        ns = m.sourceNamespace
        checks.append(lambda req, s: s.sidecar.namespace == ns)
    # ``gateways`` in a match block is applied when routes are compiled per gateway (pilot).

    if not checks:
        return lambda req, s: True
    if len(checks) == 1:
        return checks[0]
    return lambda req, s: all(c(req, s) for c in checks)
