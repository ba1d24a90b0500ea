"""Which Istio kinds meshlab models, under which apiVersions, and the names kubectl accepts for them."""

from __future__ import annotations

import difflib

from pydantic import BaseModel

from .destination_rule import DestinationRule
from .errors import ConfigError
from .gateway import Gateway, ServiceEntry
from .security import AuthorizationPolicy, PeerAuthentication, RequestAuthentication
from .virtual_service import VirtualService

__all__ = ["KINDS", "API_GROUPS", "SERVED_VERSIONS", "UNSUPPORTED_KINDS", "canonical_kind", "lookup_kind"]

KINDS: dict[str, type[BaseModel]] = {
    "VirtualService": VirtualService,
    "DestinationRule": DestinationRule,
    "Gateway": Gateway,
    "ServiceEntry": ServiceEntry,
    "PeerAuthentication": PeerAuthentication,
    "AuthorizationPolicy": AuthorizationPolicy,
    "RequestAuthentication": RequestAuthentication,
}
"""Kind name -> pydantic model of its ``spec``."""

API_GROUPS: dict[str, str] = {
    "VirtualService": "networking.istio.io",
    "DestinationRule": "networking.istio.io",
    "Gateway": "networking.istio.io",
    "ServiceEntry": "networking.istio.io",
    "PeerAuthentication": "security.istio.io",
    "AuthorizationPolicy": "security.istio.io",
    "RequestAuthentication": "security.istio.io",
}

SERVED_VERSIONS: dict[str, tuple[str, ...]] = {
    "networking.istio.io": ("v1", "v1beta1", "v1alpha3"),
    "security.istio.io": ("v1", "v1beta1"),
}

UNSUPPORTED_KINDS: dict[str, frozenset[str]] = {
    "networking.istio.io": frozenset({"EnvoyFilter", "Sidecar", "WorkloadEntry", "WorkloadGroup", "ProxyConfig"}),
    "security.istio.io": frozenset(),
    "telemetry.istio.io": frozenset({"Telemetry"}),
    "extensions.istio.io": frozenset({"WasmPlugin", "TrafficExtension"}),
}
"""Istio kinds that are valid Istio but that meshlab does not model, by API group."""

_SHORT_NAMES = {
    "VirtualService": ("vs",),
    "DestinationRule": ("dr",),
    "Gateway": ("gw",),
    "ServiceEntry": ("se",),
    "PeerAuthentication": ("pa",),
    "AuthorizationPolicy": ("ap",),
    "RequestAuthentication": ("ra",),
}


def _plural(kind: str) -> str:
    lower = kind.lower()
    return lower[:-1] + "ies" if lower.endswith("y") and lower[-2] not in "aeiou" else lower + "s"


_ALIASES: dict[str, str] = {}
for _kind in KINDS:
    for _name in (_kind.lower(), _plural(_kind), *_SHORT_NAMES[_kind]):
        _ALIASES[_name] = _kind


def canonical_kind(name: str) -> str:
    """Turn a kind or a kubectl-style name ("vs", "virtualservices", "DestinationRule") into the kind.

    Raises ConfigError naming the closest known name when ``name`` is not one meshlab models.
    """
    kind = _ALIASES.get(str(name).strip().lower())
    if kind:
        return kind
    close = difflib.get_close_matches(str(name).lower(), list(_ALIASES), n=1, cutoff=0.6)
    hint = f"; did you mean '{_ALIASES[close[0]]}'?" if close else f"; meshlab models {', '.join(KINDS)}"
    raise ConfigError(f"unknown kind {name!r}{hint}")


def lookup_kind(api_version: str, kind: str) -> tuple[str, str] | None:
    """Check an apiVersion/kind pair. Returns None when meshlab models it, else (path, message)."""
    group, _, version = api_version.rpartition("/")
    if kind in KINDS and group == API_GROUPS[kind]:
        if version in SERVED_VERSIONS[group]:
            return None
        first, *others = SERVED_VERSIONS[group]
        served = f"{group}/{first}" + "".join(f", {v}" for v in others[:-1]) + f" or {others[-1]}"
        return "apiVersion", f"{api_version} does not serve {kind}; use {served}"
    if kind in UNSUPPORTED_KINDS.get(group, ()):
        return "kind", f"kind {kind} is valid Istio but not supported by meshlab"
    if group in UNSUPPORTED_KINDS:
        known = [k for k, g in API_GROUPS.items() if g == group] + sorted(UNSUPPORTED_KINDS[group])
        close = difflib.get_close_matches(kind, known, n=1, cutoff=0.6)
        hint = f"; did you mean '{close[0]}'?" if close else ""
        return "kind", f"{group} has no kind {kind!r}{hint}"
    if kind in KINDS:
        return "apiVersion", f"{kind} belongs to {API_GROUPS[kind]}, not {api_version!r}"
    return "apiVersion", (
        f"{api_version} {kind} is not Istio configuration; "
        "meshlab loads networking.istio.io and security.istio.io resources"
    )
