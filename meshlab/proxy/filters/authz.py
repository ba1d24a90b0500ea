"""The authorization filter (Envoy's ``envoy.filters.http.rbac``): AuthorizationPolicy.

Second in the inbound chain, after JWT authentication. For each request it builds the
request's attributes (peer principal proven by mTLS, request principal and claims from the JWT
filter, method, path, host, port, headers, addresses), evaluates the policies that apply to
this workload (``meshlab.security.authz.evaluate``) and either hands the request on or answers
``403 RBAC: access denied``. The decision is kept in ``stream.extra["rbac"]``; a denial names
the policy in the access log's response code details
(``rbac_access_denied_matched_policy[ns[default]-policy[deny-x]-rule[0]]``).

Counters: ``rbac.allowed``, ``rbac.denied``, ``rbac.logged``/``rbac.not_logged`` (AUDIT),
``rbac.istio_dry_run_*`` (dry-run policies), ``rbac.policy.<ns>.<name>.{allowed,denied,logged}``.
A workload no policy applies to has no RBAC filter in Envoy: nothing is counted.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...security.authz import (
    DENIED_BODY,
    RequestAttributes,
    evaluate,
    record,
    strip_spiffe,
    workload_policies,
)
from ..http1 import local_reply

if TYPE_CHECKING:
    from ..http1 import Response
    from ..stream import Stream
    from . import Next

__all__ = ["AuthzFilter", "request_attributes"]


def request_attributes(stream: Stream) -> RequestAttributes:
    """The authorization attributes of an inbound stream."""
    req = stream.request
    identity = stream.extra.get("jwt")
    headers: dict[str, str] = {}
    for name, value in req.headers:
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    sidecar = stream.sidecar
    return RequestAttributes(
        method=req.method, path=stream.path, host=stream.authority, port=sidecar.port, headers=headers,
        source_principal=strip_spiffe(stream.extra.get("downstream_peer", stream.source).principal),
        source_ip=stream.downstream_remote.rsplit(":", 1)[0] or "127.0.0.1",
        destination_ip=sidecar.inbound.host or "127.0.0.1",
        request_principal=identity.principal if identity is not None else None,
        claims=identity.claims if identity is not None else None,
    )


class AuthzFilter:
    """Enforces AuthorizationPolicy (see the module docstring)."""

    name = "envoy.filters.http.rbac"

    async def __call__(self, stream: Stream, next: Next) -> Response:
        sidecar = stream.sidecar
        if not stream.snapshot.extra.get("authz"):
            return await next(stream)
        policies = workload_policies(sidecar, stream.snapshot)
        if not policies:
            return await next(stream)
        decision = evaluate(policies, request_attributes(stream))
        stream.extra["rbac"] = decision
        record(sidecar.stats, policies, decision)
        if not decision.allowed:
            stream.details = decision.details
            return local_reply(403, DENIED_BODY)
        return await next(stream)
