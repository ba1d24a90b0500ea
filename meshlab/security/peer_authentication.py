"""PeerAuthentication: which connections a workload's sidecar accepts (mutual TLS policy).

Modes: ``STRICT`` (mTLS only), ``PERMISSIVE`` (mTLS and plaintext; Istio's default),
``DISABLE`` (plaintext only), ``UNSET`` (inherit from the level above).

Scopes, most specific first:

1. a policy *with a selector* in the workload's namespace (``portLevelMtls`` may set a mode per
   port, and beats the policy's own mode for that port);
2. the namespace policy: one *without* a selector in the workload's namespace;
3. the mesh policy: one without a selector in the root namespace (``istio-system``);
4. nothing set anywhere: PERMISSIVE.

When several policies compete at one level, the oldest wins (Istio's rule); meshlab keeps the
order in which they were applied.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

__all__ = ["ROOT_NAMESPACE", "PeerAuthPolicy", "compile_peer_authentication", "effective_mode"]

ROOT_NAMESPACE = "istio-system"
DEFAULT_MODE = "PERMISSIVE"


@dataclass(frozen=True)
class PeerAuthPolicy:
    """One PeerAuthentication, reduced to what decides a mode."""

    name: str
    namespace: str
    selector: tuple[tuple[str, str], ...] | None
    mode: str
    port_modes: dict[int, str] = field(default_factory=dict, compare=False)

    def selects(self, labels: dict[str, str]) -> bool:
        """Whether the policy's selector matches the workload labels."""
        return self.selector is not None and all(labels.get(k) == v for k, v in self.selector)


def compile_peer_authentication(resources: Iterable) -> list[PeerAuthPolicy]:  # type: ignore[type-arg]
    """PeerAuthentication resources (oldest first) -> policies."""
    out = []
    for r in resources:
        spec = r.spec
        sel = spec.selector.matchLabels if spec.selector is not None and spec.selector.matchLabels else None
        mode = (spec.mtls.mode if spec.mtls is not None and spec.mtls.mode else "UNSET")
        ports = {int(p): (m.mode or "UNSET") for p, m in (spec.portLevelMtls or {}).items()}
        out.append(PeerAuthPolicy(r.name, r.namespace, tuple(sorted(sel.items())) if sel else None, mode, ports))
    return out


def effective_mode(policies: list[PeerAuthPolicy], namespace: str, labels: dict[str, str],
                   port: int | None = None) -> str:
    """The mode a workload's inbound ``port`` enforces (see the module docstring)."""
    workload = next((p for p in policies if p.namespace == namespace and p.selects(labels)), None)
    if workload is not None:
        if port is not None and workload.port_modes.get(port, "UNSET") != "UNSET":
            return workload.port_modes[port]
        if workload.mode != "UNSET":
            return workload.mode
    ns_policy = next((p for p in policies if p.namespace == namespace and p.selector is None), None)
    if ns_policy is not None and ns_policy.mode != "UNSET":
        return ns_policy.mode
    mesh_policy = next((p for p in policies if p.namespace == ROOT_NAMESPACE and p.selector is None), None)
    if mesh_policy is not None and mesh_policy.mode != "UNSET":
        return mesh_policy.mode
    return DEFAULT_MODE
