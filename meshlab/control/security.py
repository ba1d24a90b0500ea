"""Compiling Istio's security configuration for the sidecars (pilot's job, security half).

PeerAuthentication becomes the list each inbound listener consults to decide which
connections it accepts (``meshlab.security.peer_authentication``). AuthorizationPolicy and
RequestAuthentication are compiled here too, into what the inbound authn/authz filters
evaluate (``meshlab.security.authz``, ``meshlab.security.jwt``); JWKS are resolved now, as istiod
does, from the issuers registered in ``jwks`` (``mesh.jwt_issuer``). Everything lands in
``Snapshot.extra`` under its kind's name, oldest resource first.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..security.authz import AuthzPolicy, compile_policy
from ..security.jwt import JwksDirectory, compile_request_authentication
from ..security.peer_authentication import compile_peer_authentication

if TYPE_CHECKING:
    from ..config import ConfigStore, Resource
    from .pilot import Draft, Pilot

__all__ = ["SecurityCompiler"]


class SecurityCompiler:
    """The pilot hook for PeerAuthentication, AuthorizationPolicy, RequestAuthentication."""

    def __init__(self, store: ConfigStore, created: dict[tuple[str, str, str], int]) -> None:
        self.store = store
        self.created = created
        #: the JWKS istiod can "fetch" (meshlab's issuers); see meshlab.security.jwt
        self.jwks = JwksDirectory()
        self._authz: dict[tuple[str, str, str], tuple[Resource, AuthzPolicy]] = {}

    def _oldest_first(self, kind: str) -> list[Any]:
        return sorted(self.store.list(kind), key=lambda r: self.created.get(r.key, 0))

    def _authz_policy(self, resource: Resource) -> AuthzPolicy:
        cached = self._authz.get(resource.key)
        if cached is None or cached[0] is not resource:
            cached = self._authz[resource.key] = (resource, compile_policy(resource))
        return cached[1]

    def __call__(self, pilot: Pilot, draft: Draft) -> None:
        draft.extra["peer_auth"] = compile_peer_authentication(self._oldest_first("PeerAuthentication"))
        policies = self._oldest_first("AuthorizationPolicy")
        self._authz = {r.key: self._authz[r.key] for r in policies if r.key in self._authz}
        draft.extra["authz"] = [self._authz_policy(r) for r in policies]
        draft.extra["request_authn"] = compile_request_authentication(
            self._oldest_first("RequestAuthentication"), self.jwks)
