"""``istioctl proxy-config`` in small: what one proxy was told by the control plane.

``routes``: per virtual host, each route in order, what it matches and where it sends.
``clusters``: each cluster with its service, port, subset, load balancer and the rule it came from.
``endpoints``: each endpoint of each cluster with its health, as this proxy sees it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pandas as pd

if TYPE_CHECKING:
    from ..proxy.sidecar import Sidecar

__all__ = ["proxy_view", "describe_match"]


def describe_match(m: Any) -> str:
    """A one-line description of an HTTPMatchRequest (``uri prefix /api; header end-user=jason``)."""
    parts = []
    for field in ("uri", "method", "authority", "scheme"):
        sm = getattr(m, field)
        if sm is not None:
            parts.append(f"{field} {_sm(sm)}")
    for name, sm in (m.headers or {}).items():
        parts.append(f"header {name} {_sm(sm)}")
    for name, sm in (m.withoutHeaders or {}).items():
        parts.append(f"without header {name} {_sm(sm)}")
    for name, sm in (m.queryParams or {}).items():
        parts.append(f"query {name} {_sm(sm)}")
    if m.sourceLabels:
        parts.append(f"source labels {dict(m.sourceLabels)}")
    if m.port:
        parts.append(f"port {m.port}")
    return "; ".join(parts) or "*"


def _route_policies(route: Any) -> tuple[str, str]:
    """The route's timeout and retry policy as the proxy holds them (``0s``: no timeout)."""
    from ..proxy.filters.router import route_policies

    timeout, policy = route_policies(route)
    t = "0s" if timeout is None else f"{timeout:g}s"
    if not policy.attempts:
        return t, "none"
    on = ",".join(sorted(policy.conditions))
    codes = ",".join(str(c) for c in sorted(policy.status_codes))
    per_try = f", perTryTimeout {policy.per_try_timeout:g}s" if policy.per_try_timeout else ""
    return t, f"{policy.attempts} on {on} (codes {codes or '-'}){per_try}"


def _sm(sm: Any) -> str:
    for kind in ("exact", "prefix", "regex"):
        v = getattr(sm, kind)
        if v is not None:
            return f"{kind} {v}"
    return "present"


async def proxy_view(sc: Sidecar, what: str) -> pd.DataFrame:
    """The table for ``what`` (runs on the mesh loop)."""
    snap = sc.pilot.snapshot
    if what == "routes":
        table = sc.route_table(_FakeStream(sc, snap))  # type: ignore[arg-type]
        vhosts = snap.virtual_hosts if table is None else table
        rows = []
        for host, vh in sorted(vhosts.items()):
            for route in vh.routes:
                raw = route.action.get("raw_matches") or ()
                match = " OR ".join(describe_match(m) for m in raw) if raw else "*"
                dests = ", ".join(f"{c.cluster} ({c.weight}%)" for c in route.clusters)
                http = route.action.get("http")
                if http is not None and http.redirect is not None:
                    dests = f"redirect to {http.redirect.authority or ''}{http.redirect.uri or ''}"
                timeout, retries = _route_policies(route)
                rows.append({"host": host, "route": route.name, "match": match, "destinations": dests,
                             "timeout": timeout, "retries": retries, "from": route.action.get("source", "default")})
        return pd.DataFrame(rows, columns=["host", "route", "match", "destinations", "timeout", "retries", "from"])
    if what == "clusters":
        rows = [{"service": c.service, "port": c.port, "subset": c.subset or "-", "direction": "outbound",
                 "lb": c.lb_policy + (f" on {c.hash_on[0]}" if c.hash_on else ""),
                 "endpoints": len(c.endpoints), "destination_rule": c.source or "-"}
                for c in sorted(snap.clusters.values(), key=lambda c: c.name)]
        return pd.DataFrame(rows, columns=["service", "port", "subset", "direction", "lb", "endpoints",
                                           "destination_rule"])
    if what == "endpoints":
        rows = []
        for name in sorted(snap.clusters):
            cl = sc.cluster(snap, name)
            assert cl is not None
            for addr, h in cl.hosts.items():
                rows.append({"endpoint": addr, "pod": h.endpoint.pod, "status": "HEALTHY" if h.healthy else "UNHEALTHY",
                             "outlier_check": "FAILED" if cl.outlier is not None and cl.outlier.ejected(h) else "OK",
                             "cluster": name})
        return pd.DataFrame(rows, columns=["endpoint", "pod", "status", "outlier_check", "cluster"])
    raise ValueError(f"proxy_config: what must be 'routes', 'clusters' or 'endpoints', not {what!r}")


class _FakeStream:
    """Enough of a stream for a gateway router to compute its table for any host."""

    def __init__(self, sc: Sidecar, snap: Any) -> None:
        self.sidecar, self.snapshot, self.authority = sc, snap, "*"
