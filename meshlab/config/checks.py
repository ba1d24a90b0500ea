"""The rule-checking toolkit: a Checker that collects errors and warnings at field paths, and the
small validators Istio applies everywhere (hosts, ports, labels, IPs, regexes, exportTo, selectors).

Messages reuse Istio's own wording where Istio's validation gives one, so that what a learner reads
here is what ``kubectl apply`` would print on a real cluster.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from .base import PolicyTargetReference, WorkloadSelector
from .duration import show
from .yaml_source import Loc

__all__ = [
    "Findings",
    "Checker",
    "port_error",
    "host_error",
    "fqdn_error",
    "ip_error",
    "dns_label_error",
    "label_errors",
    "regex_error",
    "header_name_error",
    "check_export_to",
    "check_selector",
    "check_target_refs",
    "DNS_LABEL",
]

DNS_LABEL = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")  # Istio's IsDNS1123Label allows capitals
_HOST_LABEL = re.compile(r"^[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_WILDCARD_LABEL = re.compile(r"^(\*|(\*|\*-)?[a-zA-Z0-9]([-a-zA-Z0-9]*[a-zA-Z0-9])?)$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_HEADER_NAME = re.compile(r"^[-_A-Za-z0-9]+$")
_RE2_UNSUPPORTED = re.compile(r"\(\?[=!]|\(\?<[=!]|\\[1-9]")


@dataclass
class Findings:
    """Errors and warnings found in one spec, each at a location tuple."""

    errors: list[tuple[Loc, str]] = field(default_factory=list)
    warnings: list[tuple[Loc, str]] = field(default_factory=list)


@dataclass
class Checker:
    """Collects findings at paths below ``loc``; ``name`` and ``namespace`` are the resource's."""

    findings: Findings
    loc: Loc = ("spec",)
    name: str = ""
    namespace: str = "default"

    def at(self, *parts: str | int) -> Checker:
        """A checker for a child field."""
        return Checker(self.findings, (*self.loc, *parts), self.name, self.namespace)

    def error(self, message: str | None, *parts: str | int) -> None:
        """Record an error at ``loc + parts`` (a None message records nothing)."""
        if message:
            self.findings.errors.append(((*self.loc, *parts), message))

    def warn(self, message: str, *parts: str | int) -> None:
        """Record a warning at ``loc + parts``."""
        self.findings.warnings.append(((*self.loc, *parts), message))

    def at_most_one(self, model: Any, names: Iterable[str], *parts: str | int) -> None:
        """Error if more than one of the named fields of ``model`` is set."""
        names = list(names)
        chosen = [n for n in names if getattr(model, n, None) is not None]
        if len(chosen) > 1:
            listed = ", ".join(names[:-1]) + f" or {names[-1]}"
            self.error(f"only one of {listed} can be set (got {' and '.join(chosen)})", *parts)


def port_error(number: int | None) -> str | None:
    """Istio: ports are 1-65535."""
    if number is None or not 1 <= number <= 65535:
        return f"port must be between 1-65535 (got {show(number)})"
    return None


def dns_label_error(value: str, what: str) -> str | None:
    """An RFC 1123 label such as a subset or port name: letters, digits and '-', at most 63 characters."""
    if len(value) > 63 or not DNS_LABEL.match(value):
        return f"{what} {value!r} is invalid: use letters, digits and '-' (like 'v1' or 'canary')"
    return None


def _labels_error(domain: str, labels: list[str]) -> str | None:
    if labels and labels[-1] == "":  # a trailing dot: fully qualified
        labels = labels[:-1]
    if labels and labels[-1].isdigit():
        return f"domain name {domain!r} invalid (top level domain {labels[-1]!r} cannot be all-numeric)"
    for label in labels:
        if len(label) > 63 or not _HOST_LABEL.match(label):
            return f"domain name {domain!r} invalid (label {label!r} invalid)"
    return None


def _precondition_error(domain: str) -> str | None:
    if not domain:
        return "host must not be empty"
    if len(domain) > 255:
        return f"domain name {domain[:40]!r}... too long (max 255)"
    return None


def host_error(domain: str) -> str | None:
    """Istio's ValidateWildcardDomain: a DNS name whose first label may carry a wildcard (*, *.a.com)."""
    problem = _precondition_error(domain)
    if problem:
        return problem
    first, _, rest = domain.partition(".")
    if len(first) > 63 or not _WILDCARD_LABEL.match(first):
        return f"domain name {domain!r} invalid (label {first!r} invalid)"
    return _labels_error(domain, rest.split(".")) if rest else None


def fqdn_error(domain: str) -> str | None:
    """Istio's ValidateFQDN: a DNS name without wildcards."""
    return _precondition_error(domain) or _labels_error(domain, domain.split("."))


def ip_error(value: str, cidr: bool = True) -> str | None:
    """None if ``value`` is an IP address (or, with ``cidr``, an address range like 10.0.0.0/8)."""
    try:
        if cidr and "/" in value:
            ipaddress.ip_network(value, strict=False)
        else:
            ipaddress.ip_address(value)
    except ValueError:
        kind = "an IP address or CIDR range" if cidr else "an IP address"
        return f"{value!r} is not {kind}"
    return None


def label_errors(labels: dict[str, str] | None) -> list[str]:
    """Kubernetes label rules for keys ([prefix/]name) and values (at most 63 characters)."""
    problems = []
    for key, value in (labels or {}).items():
        prefix, _, name = key.rpartition("/")
        if not name or len(name) > 63 or not _LABEL_NAME.match(name) or (prefix and fqdn_error(prefix)):
            problems.append(f"invalid label key: {key!r}")
        if len(value) > 63 or (value and not _LABEL_NAME.match(value)):
            problems.append(f"invalid label value: {value!r}")
    return problems


def regex_error(pattern: str, where: str) -> str | None:
    """Check an RE2 regex. Python's ``re`` stands in for RE2: we also reject the constructs RE2 lacks
    (lookaround, backreferences), but a few exotic differences remain (e.g. possessive quantifiers)."""
    if not pattern:
        return f"{where}: regex string match should not be empty"
    if len(pattern) > 1024:
        return f"{where}: regex is too large, max length allowed is 1024"
    if _RE2_UNSUPPORTED.search(pattern):
        return f"{where}: RE2 does not support lookaround or backreferences (got {pattern!r})"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"{where}: invalid regex {pattern!r}: {exc}; Istio uses RE2 syntax"
    return None


def header_name_error(name: str) -> str | None:
    """Istio's ValidateHTTPHeaderName: letters, digits, '-' and '_'."""
    if not name:
        return "header name cannot be empty"
    if not _HEADER_NAME.match(name):
        return f"header name {name} is not a valid header name"
    return None


def check_export_to(c: Checker, export_to: list[str] | None, service_entry: bool = False) -> None:
    """exportTo entries: '.', '*', a namespace, or '~' (ServiceEntry only); no duplicates."""
    seen: set[str] = set()
    for index, entry in enumerate(export_to or []):
        key = c.namespace if entry == "." else entry
        if key in seen:
            duplicate = f". and current namespace {c.namespace}" if key != entry else f"for entry {entry}"
            c.error(f"duplicate entries in exportTo: {duplicate}", "exportTo", index)
        seen.add(key)
        if entry not in (".", "*") and not (service_entry and entry == "~"):
            c.error(dns_label_error(entry, "exportTo namespace"), "exportTo", index)
    if "*" in seen and len(export_to or []) > 1:
        c.error("cannot have both public (*) and non-public exportTo values for a resource", "exportTo")
    if "~" in seen and len(export_to or []) > 1:
        c.error("cannot export service entry to no one (~) and someone", "exportTo")


def check_selector(c: Checker, selector: WorkloadSelector | None, name: str = "selector") -> None:
    """The rules of ``selector.matchLabels``: no wildcards, no empty keys."""
    if selector is None:
        return
    for key, value in (selector.matchLabels or {}).items():
        if not key:
            c.error("key must not be empty", name, "matchLabels")
        if "*" in key:
            c.error("wildcard not allowed in label key match", name, "matchLabels", key)
        if "*" in value:
            c.error("wildcard not allowed in label value match", name, "matchLabels", key)
    if not selector.matchLabels:
        c.warn("workload selector specified without labels (Istio warning)", name)


_REF_GROUP = re.compile(r"^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_REF_KIND = re.compile(r"^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$")
_ALLOWED_REFS = {("", "Service"), ("core", "Service"), ("networking.istio.io", "ServiceEntry"),
                 ("gateway.networking.k8s.io", "Gateway")}


def _check_target_ref(c: Checker, ref: PolicyTargetReference) -> None:
    if ref.group is not None and not _REF_GROUP.match(ref.group):
        c.error(f"group must be empty or a DNS name like 'gateway.networking.k8s.io' (got {ref.group!r})", "group")
    if not _REF_KIND.match(ref.kind):
        c.error(f"kind must be a kind name like 'Service' (got {ref.kind!r})", "kind")
    elif (ref.group or "", ref.kind) not in _ALLOWED_REFS:
        c.error(f"targetRef must be to a Service, ServiceEntry or Gateway but was {ref.group or ''}/{ref.kind}", "kind")
    if ref.namespace:
        c.error("cross namespace referencing is not currently supported", "namespace")


def check_target_refs(c: Checker, spec: Any) -> None:
    """selector, targetRef and targetRefs are mutually exclusive; each reference must be well formed."""
    used = [n for n in ("selector", "targetRef", "targetRefs") if getattr(spec, n) is not None]
    if len(used) > 1:
        c.error("only one of targetRefs or selector can be set", used[-1])
    if spec.targetRef is not None:
        _check_target_ref(c.at("targetRef"), spec.targetRef)
    for index, ref in enumerate(spec.targetRefs or []):
        _check_target_ref(c.at("targetRefs", index), ref)
    check_selector(c, spec.selector)
