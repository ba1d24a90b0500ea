"""PeerAuthentication, AuthorizationPolicy and RequestAuthentication (security.istio.io).

PeerAuthentication: which mTLS a workload accepts (UNSET, DISABLE, PERMISSIVE, STRICT).
AuthorizationPolicy: who may call what (CUSTOM, then DENY, then ALLOW; AUDIT only logs).
RequestAuthentication: which JWTs are valid (a request without a token still passes it).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator

from .base import IstioModel, NonEmptyStr, PolicyTargetReference, WorkloadSelector
from .duration import Duration

__all__ = [
    "PeerAuthenticationMutualTLS",
    "PeerAuthentication",
    "Source",
    "Operation",
    "RuleFrom",
    "RuleTo",
    "Condition",
    "Rule",
    "ExtensionProvider",
    "AuthorizationPolicy",
    "JWTHeader",
    "ClaimToHeader",
    "JWTRule",
    "RequestAuthentication",
]

MTLSMode = Literal["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]
StrList = list[str]


class PeerAuthenticationMutualTLS(IstioModel):
    """The mTLS mode; UNSET inherits from the namespace or mesh policy."""

    mode: MTLSMode | None = None


class PeerAuthentication(IstioModel):
    """The ``spec`` of a PeerAuthentication (mesh, namespace or workload scope)."""

    selector: WorkloadSelector | None = None
    mtls: PeerAuthenticationMutualTLS | None = None
    portLevelMtls: Annotated[dict[str, PeerAuthenticationMutualTLS], Field(min_length=1)] | None = None

    @field_validator("portLevelMtls", mode="before")
    @classmethod
    def _port_keys_as_text(cls, value: object) -> object:
        """YAML reads ``80:`` as a number; Kubernetes turns map keys into strings, so do we."""
        if isinstance(value, dict):
            return {str(key): item for key, item in value.items()}
        return value


class Source(IstioModel):
    """Who is calling: peer identities, namespaces, IP blocks, JWT principals."""

    principals: StrList | None = None
    notPrincipals: StrList | None = None
    requestPrincipals: StrList | None = None
    notRequestPrincipals: StrList | None = None
    namespaces: StrList | None = None
    notNamespaces: StrList | None = None
    ipBlocks: StrList | None = None
    notIpBlocks: StrList | None = None
    remoteIpBlocks: StrList | None = None
    notRemoteIpBlocks: StrList | None = None
    serviceAccounts: Annotated[list[Annotated[str, Field(max_length=320)]], Field(max_length=16)] | None = None
    notServiceAccounts: Annotated[list[Annotated[str, Field(max_length=320)]], Field(max_length=16)] | None = None
    trustDomains: StrList | None = None
    notTrustDomains: StrList | None = None


class Operation(IstioModel):
    """What is called: hosts, ports, methods, paths."""

    hosts: StrList | None = None
    notHosts: StrList | None = None
    ports: StrList | None = None
    notPorts: StrList | None = None
    methods: StrList | None = None
    notMethods: StrList | None = None
    paths: StrList | None = None
    notPaths: StrList | None = None


class RuleFrom(IstioModel):
    """One ``from`` entry of a rule."""

    source: Source | None = None


class RuleTo(IstioModel):
    """One ``to`` entry of a rule."""

    operation: Operation | None = None


class Condition(IstioModel):
    """An extra condition on a request attribute, e.g. ``key: request.auth.claims[iss]``."""

    key: str
    values: StrList | None = None
    notValues: StrList | None = None


class Rule(IstioModel):
    """A rule matches when its ``from``, ``to`` and ``when`` all match (entries inside each are ORed)."""

    from_: Annotated[list[RuleFrom], Field(max_length=512)] | None = Field(None, alias="from")
    to: list[RuleTo] | None = None
    when: list[Condition] | None = None


class ExtensionProvider(IstioModel):
    """The external authorizer of a CUSTOM policy."""

    name: str | None = None


class AuthorizationPolicy(IstioModel):
    """The ``spec`` of an AuthorizationPolicy. ``spec: {}`` (ALLOW with no rules) denies everything."""

    selector: WorkloadSelector | None = None
    targetRef: PolicyTargetReference | None = None
    targetRefs: Annotated[list[PolicyTargetReference], Field(max_length=16)] | None = None
    rules: Annotated[list[Rule], Field(max_length=512)] | None = None
    action: Literal["ALLOW", "DENY", "AUDIT", "CUSTOM"] | None = None
    provider: ExtensionProvider | None = None


class JWTHeader(IstioModel):
    """A header that carries the token, e.g. ``{name: Authorization, prefix: "Bearer "}``."""

    name: NonEmptyStr
    prefix: str | None = None


class ClaimToHeader(IstioModel):
    """Copy a claim of a valid token into a request header."""

    header: Annotated[str, Field(min_length=1)]
    claim: NonEmptyStr


class JWTRule(IstioModel):
    """How to validate tokens of one issuer."""

    issuer: NonEmptyStr | None = None
    audiences: list[NonEmptyStr] | None = None
    jwksUri: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    jwks_uri: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    jwks: str | None = None
    fromHeaders: list[JWTHeader] | None = None
    fromParams: list[NonEmptyStr] | None = None
    fromCookies: list[NonEmptyStr] | None = None
    outputPayloadToHeader: str | None = None
    forwardOriginalToken: bool | None = None
    outputClaimToHeaders: list[ClaimToHeader] | None = None
    spaceDelimitedClaims: Annotated[list[NonEmptyStr], Field(max_length=64)] | None = None
    timeout: Duration | None = None
    presence: Literal["OPTIONAL", "REQUIRED"] | None = None


class RequestAuthentication(IstioModel):
    """The ``spec`` of a RequestAuthentication."""

    selector: WorkloadSelector | None = None
    targetRef: PolicyTargetReference | None = None
    targetRefs: Annotated[list[PolicyTargetReference], Field(max_length=16)] | None = None
    jwtRules: Annotated[list[JWTRule], Field(max_length=4096)] | None = None
