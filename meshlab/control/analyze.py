"""``istioctl analyze`` in small: configuration that is valid but will not do what you meant.

Validation (galley) refuses documents that are malformed. Analysis looks at valid documents
*together with the services that run*, and finds the classic "I applied it and nothing
changed" mistakes. Codes follow istioctl's where one exists (IST0101 ReferencedResourceNotFound,
IST0109 ConflictingMeshGatewayVirtualServiceHosts, ...); meshlab's own checks use ML codes.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import pandas as pd

from ..config import Resource
from ..proxy.route import config_fqdn

__all__ = ["Message", "Analysis", "analyze"]


@dataclass(frozen=True)
class Message:
    """One finding."""

    level: str  # Error | Warning | Info
    code: str
    resource: str  # kind/namespace/name
    text: str

    def __str__(self) -> str:
        return f"{self.level} [{self.code}] ({self.resource}) {self.text}"


class Analysis(list):  # type: ignore[type-arg]
    """The findings; prints like istioctl analyze."""

    def __repr__(self) -> str:
        if not self:
            return "✔ No validation issues found when analyzing the mesh."
        return "\n".join(str(m) for m in self)

    def _repr_pretty_(self, p, cycle) -> None:  # type: ignore[no-untyped-def]
        p.text(repr(self))

    @property
    def df(self) -> pd.DataFrame:
        """The findings as a table."""
        return pd.DataFrame([m.__dict__ for m in self], columns=["level", "code", "resource", "text"])

    @property
    def errors(self) -> list[Message]:
        """Findings of level Error."""
        return [m for m in self if m.level == "Error"]


def _name(r: Resource) -> str:
    return f"{r.kind}/{r.namespace}/{r.name}"


def analyze(resources: Iterable[Resource], services: dict[str, dict[str, set[str]]] | None) -> Analysis:
    """Analyse ``resources`` against ``services`` (FQDN -> {label: values seen on its pods}).
    With ``services=None`` (files only, no running mesh) hosts are not checked."""
    res = list(resources)
    out = Analysis()
    check_hosts = services is not None
    services = services or {}
    known_hosts = set(services)
    for se in (r for r in res if r.kind == "ServiceEntry"):
        known_hosts.update(h.lower() for h in se.spec.hosts)
    subsets: dict[str, dict[str, dict[str, str]]] = {}
    for dr in (r for r in res if r.kind == "DestinationRule"):
        host = config_fqdn(dr.spec.host, dr.namespace)
        if check_hosts and host not in known_hosts and not host.startswith("*"):
            out.append(Message("Error", "IST0101", _name(dr), f"Referenced host not found: {dr.spec.host!r}"))
        for ss in dr.spec.subsets or []:
            subsets.setdefault(host, {})[ss.name] = dict(ss.labels or {})
            labels = services.get(host)
            if labels is not None and ss.labels and not all(v in labels.get(k, set()) for k, v in ss.labels.items()):
                out.append(Message("Info", "ML0001", _name(dr),
                                   f"subset {ss.name!r} selects no running pod (labels {dict(ss.labels)})"))
    gateways = {f"{g.namespace}/{g.name}": g for g in res if g.kind == "Gateway"}
    bound: set[str] = set()
    mesh_hosts: dict[str, str] = {}
    for vs in (r for r in res if r.kind == "VirtualService"):
        for g in vs.spec.gateways or ["mesh"]:
            if g == "mesh":
                for h in vs.spec.hosts:
                    key = config_fqdn(h, vs.namespace)
                    if key in mesh_hosts:
                        out.append(Message("Error", "IST0109", _name(vs),
                                           f"The VirtualServices {mesh_hosts[key]} and {_name(vs)} associated with "
                                           f"mesh define the same host {h!r}; only the oldest applies"))
                    else:
                        mesh_hosts[key] = _name(vs)
                continue
            key = g if "/" in g else f"{vs.namespace}/{g}"
            bound.add(key)
            if key not in gateways:
                out.append(Message("Error", "IST0101", _name(vs), f"Referenced gateway not found: {g!r}"))
        for i, http in enumerate(vs.spec.http or []):
            total = 0
            for j, d in enumerate(http.route or []):
                host = config_fqdn(d.destination.host, vs.namespace)
                where = f"spec.http[{i}].route[{j}].destination"
                if check_hosts and host not in known_hosts and not host.startswith("*"):
                    out.append(Message("Error", "IST0101", _name(vs),
                                       f"Referenced host not found: {d.destination.host!r} ({where}.host)"))
                elif d.destination.subset and d.destination.subset not in subsets.get(host, {}):
                    out.append(Message("Error", "IST0101", _name(vs),
                                       f"Referenced host+subset in destinationrule not found: "
                                       f"\"{d.destination.host}+{d.destination.subset}\" ({where}.subset); "
                                       f"requests routed there get 503 NC"))
                total += d.weight if d.weight is not None else (100 if len(http.route or []) == 1 else 0)
            if http.route and len(http.route) > 1 and total != 100:
                out.append(Message("Warning", "ML0002", _name(vs),
                                   f"spec.http[{i}].route weights add up to {total}, not 100"))
    for key, gw in gateways.items():
        if key not in bound:
            out.append(Message("Warning", "ML0003", _name(gw),
                               "no VirtualService is bound to this Gateway: it accepts connections but routes nothing"))
    return out
