"""The JWT authentication filter (Envoy's ``envoy.filters.http.jwt_authn``): RequestAuthentication.

First in the inbound chain. It validates the tokens a request carries against the JWT rules of
every RequestAuthentication that applies to this workload (``meshlab.security.jwt``):

* no token: the request goes on, without a request principal (Istio's ``allow_missing``);
* a valid token: the token header is removed unless ``forwardOriginalToken``, payload and claim
  headers are added, and ``stream.extra["jwt"]`` gets the ``JwtIdentity`` (``<iss>/<sub>``
  principal and claims) the authorization filter reads;
* an invalid token: ``401`` (``403`` for a wrong audience) with Envoy's message as body, a
  ``www-authenticate: Bearer realm=..., error="invalid_token"`` header, and response code
  details ``jwt_authn_access_denied{Jwt_is_expired}`` in the access log.

CORS preflight requests (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) are
not checked, as Istio configures Envoy. Counters: ``jwt_authn.allowed``, ``jwt_authn.denied``,
``jwt_authn.cors_preflight_bypassed``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ...security.jwt import authenticate, providers_for
from ..http1 import local_reply
from .router import resolve_route

if TYPE_CHECKING:
    from ..http1 import Response
    from ..stream import Stream
    from . import Next

__all__ = ["AuthnFilter"]


class AuthnFilter:
    """Validates JWTs (see the module docstring)."""

    name = "envoy.filters.http.jwt_authn"

    async def __call__(self, stream: Stream, next: Next) -> Response:
        response = await self._authenticate(stream)
        if response is not None:
            return response
        if stream.sidecar.edge:
            # A gateway picks its route only now, after authentication (Istio clears the route
            # cache there): routes may match JWT claims (@request.auth.claims.*) or headers
            # that outputClaimToHeaders just set, and a forged header was removed.
            no_route = resolve_route(stream, stream.sidecar.route_table(stream))
            if no_route is not None:
                return no_route
        return await next(stream)

    async def _authenticate(self, stream: Stream) -> Response | None:
        """Validate the request's JWT; a reply when it must be refused, None to go on."""
        sidecar = stream.sidecar
        providers = providers_for(sidecar, stream.snapshot)
        if not providers:
            return None
        req = stream.request
        if req.method == "OPTIONS" and "origin" in req.headers and "access-control-request-method" in req.headers:
            sidecar.stats["jwt_authn.cors_preflight_bypassed"] += 1  # Istio sets bypass_cors_preflight
            return None
        result = authenticate(providers, req.headers, stream.path, sidecar.clock())
        if not result.ok:
            sidecar.stats["jwt_authn.denied"] += 1
            stream.details = "jwt_authn_access_denied{" + result.status.replace(" ", "_") + "}"
            realm = f"http://{stream.authority}{stream.path}"
            return local_reply(result.code, result.status,
                               [("www-authenticate", f'Bearer realm="{realm}", error="invalid_token"')])
        sidecar.stats["jwt_authn.allowed"] += 1
        result.apply(req.headers)
        if result.identity is not None:
            stream.extra["jwt"] = result.identity
        return None
