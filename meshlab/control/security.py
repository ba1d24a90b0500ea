"""Compiling Istio's security configuration for the sidecars (pilot's job, security half).

PeerAuthentication becomes the list each inbound listener consults to decide which
connections it accepts (``meshlab.security.peer_authentication``). AuthorizationPolicy and
RequestAuthentication are compiled here too, into what the inbound authn/authz filters
evaluate. Everything lands in ``Snapshot.extra`` under its kind's name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..security.peer_authentication import compile_peer_authentication

if TYPE_CHECKING:
    from ..config import ConfigStore
    from .pilot import Draft, Pilot

__all__ = ["SecurityCompiler"]


class SecurityCompiler:
    """The pilot hook for PeerAuthentication, AuthorizationPolicy, RequestAuthentication."""

    def __init__(self, store: ConfigStore, created: dict[tuple[str, str, str], int]) -> None:
        self.store = store
        self.created = created

    def _oldest_first(self, kind: str) -> list:  # type: ignore[type-arg]
        return sorted(self.store.list(kind), key=lambda r: self.created.get(r.key, 0))

    def __call__(self, pilot: Pilot, draft: Draft) -> None:
        draft.extra["peer_auth"] = compile_peer_authentication(self._oldest_first("PeerAuthentication"))
        draft.extra["authz"] = self._oldest_first("AuthorizationPolicy")
        draft.extra["request_authn"] = self._oldest_first("RequestAuthentication")
