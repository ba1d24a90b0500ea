"""The rules PeerAuthentication, AuthorizationPolicy and RequestAuthentication must follow beyond
their schemas (the CRDs' CEL rules and Istio's Validate* functions, with Istio's wording)."""

from __future__ import annotations

import difflib
import json
import re
from urllib.parse import urlparse

from .checks import Checker, check_selector, check_target_refs, header_name_error, ip_error
from .security import (
    AuthorizationPolicy,
    JWTRule,
    Operation,
    PeerAuthentication,
    RequestAuthentication,
    Source,
)

__all__ = ["check_peer_authentication", "check_authorization_policy", "check_request_authentication"]


# ---------------------------------------------------------------- PeerAuthentication

def check_peer_authentication(spec: PeerAuthentication, c: Checker) -> None:
    """Port-level mTLS needs a workload selector; port keys are numbers 1-65535."""
    check_selector(c, spec.selector)
    if spec.portLevelMtls is None:
        return
    if not (spec.selector and spec.selector.matchLabels):
        c.error("portLevelMtls requires selector", "portLevelMtls")
    for key in spec.portLevelMtls:
        if not key.strip().lstrip("+-").isdigit():
            c.error(f"port {key!r} is not a number", "portLevelMtls", key)
        elif not 0 < int(key) <= 65535:
            c.error(f"port must be between 1-65535 (got {key})", "portLevelMtls", key)


# ---------------------------------------------------------------- AuthorizationPolicy

_SOURCE_FIELDS = ("principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals", "namespaces",
                  "notNamespaces", "ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks",
                  "serviceAccounts", "notServiceAccounts", "trustDomains", "notTrustDomains")
_IP_FIELDS = ("ipBlocks", "notIpBlocks", "remoteIpBlocks", "notRemoteIpBlocks")
_OPERATION_FIELDS = ("hosts", "notHosts", "ports", "notPorts", "methods", "notMethods", "paths", "notPaths")
_PLAIN_KEYS = {"source.namespace", "source.principal", "request.auth.principal", "request.auth.audiences",
               "request.auth.presenter", "connection.sni", "source.trustDomain"}
_IP_KEYS = {"source.ip", "remote.ip", "destination.ip"}
_MAP_KEYS = ("request.headers[", "request.auth.claims[", "experimental.envoy.filters.")
_ATTRIBUTES = _PLAIN_KEYS | _IP_KEYS | {"destination.port"}
_MAP_KEY = re.compile(r"^[^\[\]]+(\[[^\[\]]+\])+$")


def check_authorization_policy(spec: AuthorizationPolicy, c: Checker) -> None:
    """Action and provider agree; every rule, source, operation and condition is well formed."""
    check_target_refs(c, spec)
    action = spec.action or "ALLOW"
    if action == "CUSTOM":
        if spec.rules is None:
            c.error("CUSTOM action without `rules` is meaningless as it will never be triggered, add an empty "
                    "rule `{}` if you want it be triggered for every request", "action")
        elif spec.provider is None or not spec.provider.name:
            c.error("`provider.name` must not be empty", "provider")
    elif spec.provider is not None:
        c.error(f"`provider` must not be with non CUSTOM action, found {action}", "provider")
    if action == "DENY" and spec.rules is None:
        c.error("DENY action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` "
                "if you want it be triggered for every request", "action")
    for index, rule in enumerate(spec.rules or []):
        r = c.at("rules", index)
        if rule.from_ == []:
            r.error("`from` must not be empty", "from")
        for i, entry in enumerate(rule.from_ or []):
            if entry.source is None:
                r.error("`from.source` must not be nil", "from", i)
            else:
                _check_source(entry.source, r.at("from", i, "source"), action)
        if rule.to == []:
            r.error("`to` must not be empty", "to")
        for i, entry in enumerate(rule.to or []):
            if entry.operation is None:
                r.error("`to.operation` must not be nil", "to", i)
            else:
                _check_operation(entry.operation, r.at("to", i, "operation"))
        for i, condition in enumerate(rule.when or []):
            _check_condition(condition.key, condition.values, condition.notValues, r.at("when", i), action)


def _check_source(source: Source, c: Checker, action: str) -> None:
    if not any(getattr(source, f) for f in _SOURCE_FIELDS):
        c.error("`from.source` must not be empty")
    if (source.serviceAccounts or source.notServiceAccounts) and (
        source.principals or source.notPrincipals or source.namespaces or source.notNamespaces
    ):
        c.error("Cannot set serviceAccounts with namespaces or principals")
    for field in _SOURCE_FIELDS:
        for index, value in enumerate(getattr(source, field) or []):
            if value == "":
                c.error(f"empty value not allowed, found in {field}", field, index)
            elif field in _IP_FIELDS:
                c.error(ip_error(value), field, index)
    if action == "CUSTOM":
        for field in ("principals", "notPrincipals", "requestPrincipals", "notRequestPrincipals", "namespaces",
                      "notNamespaces"):
            if getattr(source, field):
                c.error(f"From.{field[0].upper()}{field[1:]} is currently not supported with CUSTOM action", field)


def _port_value_error(value: str) -> str | None:
    if not value.isdigit() or not 0 <= int(value) <= 65535:
        return f"invalid port: {value!r} (ports are numbers 0-65535 written as strings)"
    return None


def _check_operation(operation: Operation, c: Checker) -> None:
    if not any(getattr(operation, f) for f in _OPERATION_FIELDS):
        c.error("`to.operation` must not be empty")
    for field in _OPERATION_FIELDS:
        for index, value in enumerate(getattr(operation, field) or []):
            if value == "":
                c.error(f"empty value not allowed, found in {field}", field, index)
            elif field in ("ports", "notPorts"):
                c.error(_port_value_error(value), field, index)


def _check_condition(key: str, values: list[str] | None, not_values: list[str] | None, c: Checker,
                     action: str) -> None:
    if not key:
        c.error("`key` must not be empty", "key")
        return
    if not values and not not_values:
        c.error(f"at least one of `values` or `notValues` must be set for key {key}")
    if key.startswith(_MAP_KEYS):
        if not _MAP_KEY.match(key):
            c.error(f"invalid key {key!r}: expected a map key like request.headers[x-user]", "key")
    elif key not in _ATTRIBUTES:
        close = difflib.get_close_matches(key, sorted(_ATTRIBUTES) + [k + "...]" for k in _MAP_KEYS], n=1)
        c.error(f"unknown attribute: {key}" + (f"; did you mean {close[0]!r}?" if close else ""), "key")
    for field, items in (("values", values), ("notValues", not_values)):
        for index, value in enumerate(items or []):
            if key in _IP_KEYS:
                c.error(ip_error(value), field, index)
            elif key == "destination.port":
                c.error(_port_value_error(value), field, index)
    if action == "CUSTOM" and (key in ("source.namespace", "source.principal") or key.startswith("request.auth.")):
        c.error(f"{key} is currently not supported with CUSTOM action", "key")


# ---------------------------------------------------------------- RequestAuthentication

def check_request_authentication(spec: RequestAuthentication, c: Checker) -> None:
    """Selector or targetRefs; each JWT rule names an issuer and well-formed token locations."""
    check_target_refs(c, spec)
    for index, rule in enumerate(spec.jwtRules or []):
        check_jwt_rule(rule, c.at("jwtRules", index))


def check_jwt_rule(rule: JWTRule, c: Checker) -> None:
    """One JWT rule (Istio's validateJwtRule and the CRD's rules)."""
    if not rule.issuer:
        c.error("issuer must be set", "issuer")
    c.at_most_one(rule, ("jwksUri", "jwks_uri", "jwks"))
    for field in ("jwksUri", "jwks_uri"):
        uri = getattr(rule, field)
        if uri is not None and urlparse(uri).scheme not in ("http", "https"):
            c.error(f"url must have scheme http:// or https:// (got {uri!r})", field)
    if rule.jwks:
        try:
            keys = json.loads(rule.jwks)
            if not isinstance(keys, dict):
                raise ValueError("expected a JSON object with 'keys' or a single key")
        except ValueError as exc:
            c.error(f"jwks parse error: {exc}", "jwks")
    for index, claim in enumerate(rule.outputClaimToHeaders or []):
        c.error(header_name_error(claim.header), "outputClaimToHeaders", index, "header")
