"""The service graph: who calls whom, how much, how well, over mutual TLS or not (Kiali's graph).

Theory of operation
-------------------
Kiali draws its graph from Istio's standard metrics alone. It asks Prometheus for
``sum(rate(istio_requests_total[window])) by (source_workload, destination_workload, ...,
response_code, response_flags, connection_security_policy)`` and turns the series into nodes and
edges: an edge exists because a sidecar *counted* requests on it, never because a config says
so. ``service_graph`` does the same with ``mesh.metrics(buckets=True)``:

* **Which reporter.** Every request through the mesh is counted twice, by the caller's sidecar
  (``reporter="source"``) and by the server's (``reporter="destination"``). The graph uses the
  destination's count (the server saw the request arrive, and knows whether it came over mutual
  TLS), and the source's count only for requests no server saw: those with
  ``destination_workload="unknown"`` (no host was picked: a fault-injection abort ``FI``, the
  circuit breaker ``UO``, no healthy upstream ``UH``, no route ``NR``; or the destination has no
  sidecar, an external service) and those flagged ``UF`` (the connection to the server failed).
  A request whose destination workload is unknown ends at a **service node** named after
  ``destination_service_name`` (Kiali draws it as a triangle).
* **Nodes** are workloads (``reviews-v2``: one per app and version), service nodes, and
  ``unknown`` for callers without a sidecar. Only nodes with traffic in the window appear
  (Kiali hides idle nodes by default).
* **Edges** carry: requests, rate (``rps``, requests per second over the window), errors (5xx
  and requests that got no response at all, code 0), ``error_rate``, ``p95_ms``
  (``histogram_quantile(0.95, ...)`` over Istio's duration buckets) and ``mtls`` (share of the
  requests the destination saw over mutual TLS, None when no destination saw any). An edge gets a
  **lock** when every request the destination saw on it was mutual TLS.
* **Health colours**, Kiali's default tolerances (``health_config.rate``): for 5xx (and no
  response) degraded (orange) from 0.1 % and failure (red) from 10 %; for 4xx degraded from
  10 % and failure from 20 %; otherwise healthy (green). An edge is coloured by its own
  requests, a node by the requests it received.
* **Layout** is deterministic: layered left to right by call depth (breadth first from the
  nodes nobody calls: ``curl``, ``istio-ingressgateway``, ``unknown``), sorted by name within a
  layer, so the same traffic always gives the same picture.

``window`` (seconds) restricts the graph to the last seconds of traffic, using the built-in
Prometheus's scrapes as the starting point (like Kiali's "Last 1m"); ``since=snapshot(mesh)``
to the traffic after a snapshot of the counters (exact, for before/after comparisons);
neither: everything since the mesh started. Nodes are named by workload, so a graph is clearest
for one namespace at a time (the same workload name in two namespaces is one node).
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import networkx as nx
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.offsetbox import AnnotationBbox, DrawingArea
from matplotlib.patches import Arc, FancyArrowPatch, FancyBboxPatch

from .metrics import DURATION_BUCKETS_MS
from .prometheus import histogram_quantile

if TYPE_CHECKING:
    from ..mesh import Mesh

__all__ = ["HEALTH_COLORS", "LOCK", "KEEP", "NEVER_REACHED", "build_graph", "counters_from_metrics",
           "draw_graph", "edge_label", "edge_set", "graph_table", "health", "layout", "node_table", "nodes_in",
           "service_graph", "snapshot"]

#: The labels a graph edge is built from (the series Kiali's graph query groups by).
KEEP = ("reporter", "source_workload", "destination_workload", "destination_service_name", "destination_version",
        "response_code", "response_flags", "connection_security_policy")
#: Response flags of requests that never reached a server (counted from the caller's side).
NEVER_REACHED = frozenset({"UF", "UH", "UO", "NR", "NC", "FI"})
#: Kiali's colours: healthy, degraded, failure (and idle).
HEALTH_COLORS = {"healthy": "#3e8635", "degraded": "#f0ab00", "failure": "#c9190b", "idle": "#8a8d90"}
#: The symbol tables use for an edge that is mutual TLS.
LOCK = "🔒"

_BOUNDS = (*DURATION_BUCKETS_MS, float("inf"))
_LE = [("+Inf" if b == float("inf") else (str(int(b)) if float(b).is_integer() else str(b))) for b in _BOUNDS]


# -- counters ------------------------------------------------------------------------------------
def counters_from_metrics(metrics: pd.DataFrame) -> pd.DataFrame:
    """``mesh.metrics(buckets=True)`` -> one row per ``KEEP`` label set: ``requests`` and
    ``buckets`` (requests per duration bucket, not cumulative, Istio's bounds then +Inf)."""
    cols = [*KEEP, "requests", "buckets"]
    if metrics.empty:
        return pd.DataFrame(columns=cols)
    keep = list(KEEP)
    req = metrics[metrics["name"] == "istio_requests_total"].groupby(keep, sort=True)["value"].sum()
    rows: dict[tuple[str, ...], list[Any]] = {k: [float(v), np.zeros(len(_BOUNDS))] for k, v in req.items()}
    if "le" in metrics.columns:
        b = metrics[metrics["name"] == "istio_request_duration_milliseconds_bucket"]
        cum = b.groupby([*keep, "le"], sort=False)["value"].sum()
        index = {le: i for i, le in enumerate(_LE)}
        for key, value in cum.items():
            row = rows.get(tuple(key[:-1]))
            if row is not None:
                row[1][index[key[-1]]] = value
        for row in rows.values():  # cumulative -> per bucket
            row[1] = np.diff(row[1], prepend=0.0)
    return pd.DataFrame([(*k, v[0], v[1]) for k, v in rows.items()], columns=cols)


def _counters_from_sample(data: Mapping[tuple[str, ...], tuple[int, float, tuple[int, ...]]]) -> pd.DataFrame:
    """One scrape of the built-in Prometheus (keys in ``KEEP`` order) as a counters frame."""
    rows = [(*key, float(count), np.array(buckets, dtype=float)) for key, (count, _, buckets) in data.items()]
    return pd.DataFrame(rows, columns=[*KEEP, "requests", "buckets"])


def _subtract(now: pd.DataFrame, base: pd.DataFrame) -> pd.DataFrame:
    """Counters ``now`` minus the counters ``base`` (an earlier scrape): the increase."""
    if base.empty:
        return now
    before = {tuple(r[k] for k in KEEP): (r["requests"], r["buckets"]) for _, r in base.iterrows()}
    out = now.copy()
    for i, r in now.iterrows():
        b = before.get(tuple(r[k] for k in KEEP))
        if b is not None:
            out.at[i, "requests"] = r["requests"] - b[0]
            out.at[i, "buckets"] = r["buckets"] - b[1]
    return out[out["requests"] > 0].reset_index(drop=True)


# -- health and labels -----------------------------------------------------------------------------
def health(requests: float, errors_5xx: float, errors_4xx: float = 0.0) -> str:
    """Kiali's default traffic health: "failure", "degraded", "healthy" ("idle" without requests)."""
    if requests <= 0:
        return "idle"
    e5, e4 = errors_5xx / requests, errors_4xx / requests
    if e5 >= 0.10 or e4 >= 0.20:
        return "failure"
    if e5 >= 0.001 or e4 >= 0.10:
        return "degraded"
    return "healthy"


def _pct(x: float) -> str:
    if x == 0 or x >= 0.01:
        return f"{x:.0%}"
    return f"{x:.1%}"


def _ms(x: float) -> str:
    if x != x:  # NaN
        return "-"
    return f"{x:.0f} ms" if x >= 10 else f"{x:.1f} ms"


def edge_label(data: Mapping[str, Any]) -> str:
    """``"12.3 rps · 5% err · p95 40 ms"`` for an edge's attributes (requests when no rate)."""
    rps = data.get("rps")
    volume = f"{rps:.1f} rps" if rps is not None and rps == rps else f"{int(data['requests'])} req"
    return f"{volume} · {_pct(data['error_rate'])} err · p95 {_ms(data['p95_ms'])}"


# -- the graph -------------------------------------------------------------------------------------
def build_graph(counters: pd.DataFrame, seconds: float | None = None,
                meta: Mapping[str, tuple[str, str]] | None = None) -> nx.DiGraph:
    """The service graph from a counters frame (``counters_from_metrics``): see the module
    docstring. ``seconds``: the time the counters cover (for rates; None: no rates).
    ``meta``: workload -> (app, version), for node labels."""
    meta = dict(meta or {})
    G = nx.DiGraph(seconds=seconds)
    if counters.empty:
        return G
    acc: dict[tuple[str, str], dict[str, Any]] = {}
    kinds: dict[str, str] = {}
    for _, r in counters.iterrows():
        flags = set(str(r["response_flags"]).split(","))
        dst_known = r["destination_workload"] != "unknown"
        if r["reporter"] == "destination":
            pass
        elif r["reporter"] == "source" and (not dst_known or flags & NEVER_REACHED):
            pass
        else:
            continue
        src = r["source_workload"]
        dst = r["destination_workload"] if dst_known else r["destination_service_name"]
        kinds.setdefault(src, _kind(src))
        if dst_known:
            kinds.setdefault(dst, _kind(dst))
        else:
            kinds[dst] = "service"
        e = acc.setdefault((src, dst), {"requests": 0.0, "errors": 0.0, "errors_4xx": 0.0, "mtls_requests": 0.0,
                                        "dest_requests": 0.0, "buckets": np.zeros(len(_BOUNDS)), "codes": {},
                                        "flags": {}})
        n = float(r["requests"])
        code = str(r["response_code"])
        e["requests"] += n
        if code.startswith("5") or code == "0":
            e["errors"] += n
        elif code.startswith("4"):
            e["errors_4xx"] += n
        e["codes"][code] = e["codes"].get(code, 0.0) + n
        for f in sorted(flags - {"-", ""}):
            e["flags"][f] = e["flags"].get(f, 0.0) + n
        if r["reporter"] == "destination":
            e["dest_requests"] += n
            if r["connection_security_policy"] == "mutual_tls":
                e["mtls_requests"] += n
        e["buckets"] = e["buckets"] + np.asarray(r["buckets"], dtype=float)
    for node, kind in sorted(kinds.items()):
        app, version = meta.get(node, (node if kind != "workload" else node.rsplit("-", 1)[0], ""))
        G.add_node(node, kind=kind, app=app, version=version if kind == "workload" else "")
    for (src, dst), e in sorted(acc.items()):
        if e["requests"] <= 0:
            continue
        pairs = list(zip(_BOUNDS, np.cumsum(e["buckets"]), strict=True))
        mtls = e["mtls_requests"] / e["dest_requests"] if e["dest_requests"] else None
        G.add_edge(src, dst, requests=int(round(e["requests"])), errors=int(round(e["errors"])),
                   errors_4xx=int(round(e["errors_4xx"])), error_rate=e["errors"] / e["requests"],
                   rps=e["requests"] / seconds if seconds else None, p95_ms=histogram_quantile(0.95, pairs),
                   mtls=mtls, lock=mtls == 1.0,
                   codes={k: int(v) for k, v in sorted(e["codes"].items())},
                   flags={k: int(v) for k, v in sorted(e["flags"].items())},
                   health=health(e["requests"], e["errors"], e["errors_4xx"]))
    G.remove_nodes_from([n for n in list(G) if G.degree(n) == 0])
    for node in G:
        ins = list(G.in_edges(node, data=True))
        req = sum(d["requests"] for _, _, d in ins)
        err = sum(d["errors"] for _, _, d in ins)
        err4 = sum(d["errors_4xx"] for _, _, d in ins)
        G.nodes[node].update(requests_in=req, errors_in=err, error_rate=err / req if req else 0.0,
                             health=health(req, err, err4) if req else "healthy")
    return G


def _kind(workload: str) -> str:
    if workload == "unknown":
        return "unknown"
    if workload == "istio-ingressgateway":
        return "gateway"
    return "workload"


def _meta(metrics: pd.DataFrame) -> dict[str, tuple[str, str]]:
    out: dict[str, tuple[str, str]] = {}
    if metrics.empty:
        return out
    m = metrics[metrics["name"] == "istio_requests_total"]
    for side in ("source", "destination"):
        sub = m[[f"{side}_workload", f"{side}_app", f"{side}_version"]].drop_duplicates()
        for w, app, version in sub.itertuples(index=False):
            if w != "unknown":
                out.setdefault(w, (app, "" if version == "unknown" else version))
    return out


def snapshot(mesh: Mesh) -> pd.DataFrame:
    """The mesh's metrics now (``mesh.metrics(buckets=True)``, stamped with the time): pass it
    as ``service_graph(mesh, since=...)`` to draw only the traffic that came after."""
    metrics = mesh.metrics(buckets=True)
    metrics.attrs["monotonic"] = time.monotonic()
    return metrics


def service_graph(mesh: Mesh, window: float | None = None, since: pd.DataFrame | None = None) -> nx.DiGraph:
    """The service graph of ``mesh`` (see the module docstring): over the last ``window``
    seconds (from the built-in Prometheus's scrapes, like Kiali's "Last 1m"), over the traffic
    after a ``snapshot`` (``since``), or since the mesh started (neither). Graph attribute
    ``seconds``: the time covered (rates are requests / seconds)."""
    if window is not None and since is not None:
        raise ValueError("service_graph: give window= or since=, not both")
    metrics = mesh.metrics(buckets=True)
    now = time.monotonic()
    counters = counters_from_metrics(metrics)
    samples = list(mesh.prometheus.samples)
    seconds = now - samples[0][0] if samples else None
    if since is not None:
        counters = _subtract(counters, counters_from_metrics(since))
        t = since.attrs.get("monotonic")
        seconds = now - t if t is not None else None
    elif window is not None:
        if window <= 0:
            raise ValueError("service_graph: window must be > 0 seconds (or None: since the mesh started)")
        base = [s for s in samples if s[0] <= now - window]
        if base:
            t, data = base[-1]
            counters = _subtract(counters, _counters_from_sample(data))
            seconds = now - t
    return build_graph(counters, seconds, _meta(metrics))


# -- tables ----------------------------------------------------------------------------------------
def graph_table(G: nx.DiGraph) -> pd.DataFrame:
    """One row per edge, sorted by source then destination: requests, errors, error rate, rate,
    p95, mTLS share, lock, health, and the response flags seen (``{"FI": 12}``)."""
    rows = [{"source": s, "destination": d, "requests": a["requests"], "errors": a["errors"],
             "error_rate": round(a["error_rate"], 4), "rps": a["rps"], "p95_ms": a["p95_ms"],
             "mtls": a["mtls"], "lock": LOCK if a["lock"] else "", "health": a["health"],
             "flags": ",".join(f"{k}:{v}" for k, v in a["flags"].items()) or "-"}
            for s, d, a in sorted(G.edges(data=True), key=lambda e: (e[0], e[1]))]
    cols = ["source", "destination", "requests", "errors", "error_rate", "rps", "p95_ms", "mtls", "lock", "health",
            "flags"]
    return pd.DataFrame(rows, columns=cols)


def node_table(G: nx.DiGraph) -> pd.DataFrame:
    """One row per node: kind, app, version, depth (layer), requests received, errors, health."""
    depth = _depths(G)
    rows = [{"node": n, "kind": a["kind"], "app": a["app"], "version": a["version"], "depth": depth[n],
             "requests_in": a["requests_in"], "errors_in": a["errors_in"], "health": a["health"]}
            for n, a in G.nodes(data=True)]
    cols = ["node", "kind", "app", "version", "depth", "requests_in", "errors_in", "health"]
    return pd.DataFrame(rows, columns=cols).sort_values(["depth", "node"], kind="stable").reset_index(drop=True)


# -- layout and drawing ----------------------------------------------------------------------------
def _depths(G: nx.DiGraph) -> dict[str, int]:
    """Call depth of every node: the longest chain of calls that reaches it from a node nobody
    calls (so a service called both by the client and by another service sits after its
    caller). Cycles are broken by ignoring, in a fixed order, one edge of each."""
    dag = nx.DiGraph()
    dag.add_nodes_from(sorted(G))
    dag.add_edges_from(sorted(G.edges()))
    while not nx.is_directed_acyclic_graph(dag):
        cycle = nx.find_cycle(dag, source=sorted(dag)[0]) if dag else []
        dag.remove_edge(*cycle[-1][:2])
    depth: dict[str, int] = {}
    for n in nx.lexicographical_topological_sort(dag):
        preds = list(dag.predecessors(n))
        depth[n] = max((depth[m] + 1 for m in preds), default=0)
    return depth


def layout(G: nx.DiGraph) -> dict[str, tuple[float, float]]:
    """Deterministic positions: x = call depth; within a layer, nodes ordered by the mean rank
    of their callers (fewer crossings), then by name; centred vertically."""
    depth = _depths(G)
    layers: dict[int, list[str]] = {}
    for n in sorted(G, key=lambda n: (n.rsplit("-", 1)[0] if G.nodes[n]["kind"] == "workload" else n, n)):
        layers.setdefault(depth[n], []).append(n)
    rank: dict[str, float] = {}
    for d in sorted(layers):
        nodes = layers[d]
        if d > 0:
            def key(n: str, _nodes: list[str] = nodes) -> tuple[float, int]:
                ranks = [rank[m] for m in G.predecessors(n) if m in rank]
                return (sum(ranks) / len(ranks) if ranks else float("inf"), _nodes.index(n))

            nodes = layers[d] = sorted(nodes, key=key)
        for i, n in enumerate(nodes):
            rank[n] = float(i)
    pos = {}
    for d, nodes in layers.items():
        k = len(nodes)
        for i, n in enumerate(nodes):
            pos[n] = (float(d), (k - 1) / 2.0 - i)
    return pos


def _padlock(scale: float = 1.0) -> DrawingArea:
    """A small padlock drawn with patches (no emoji font needed), in points."""
    w, h = 8 * scale, 10 * scale
    da = DrawingArea(w, h, 0, 0)
    da.add_artist(FancyBboxPatch((0.5, 0.5), w - 1, h * 0.55, boxstyle="round,pad=0,rounding_size=1",
                                 fc="#444444", ec="#444444"))
    da.add_artist(Arc((w / 2, h * 0.55), w * 0.65, h * 0.75, theta1=0, theta2=180, lw=1.4 * scale, color="#444444"))
    return da


def draw_graph(G: nx.DiGraph, ax: Axes | None = None, title: str | None = None, labels: bool = True,
               legend: bool = True) -> Figure:
    """Draw the graph like Kiali: nodes coloured by health (circles: workloads, triangles:
    services, squares: gateways, diamond: unknown), edges coloured by health with the label
    ``rps · err · p95`` (``labels``) and a padlock on mutual-TLS edges. Returns the figure."""
    from ..plots import PlotFigure

    if ax is None:
        depth = max(_depths(G).values(), default=0)
        height = max((sum(1 for v in _depths(G).values() if v == d) for d in range(depth + 1)), default=1)
        fig = PlotFigure(figsize=(8.0, max(2.6, 0.9 * height + 1.2)), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure  # type: ignore[assignment]
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize="medium")
    if G.number_of_nodes() == 0:
        ax.text(0.5, 0.5, "no traffic in this window", ha="center", va="center", transform=ax.transAxes)
        return fig
    pos = layout(G)
    shapes = {"workload": "o", "service": "^", "gateway": "s", "unknown": "D"}
    for kind, marker in shapes.items():
        nodes = [n for n, a in G.nodes(data=True) if a["kind"] == kind]
        if nodes:
            nx.draw_networkx_nodes(G, pos, nodelist=nodes, node_shape=marker, node_size=520,
                                   node_color=[HEALTH_COLORS[G.nodes[n]["health"]] for n in nodes],
                                   edgecolors="#333333", linewidths=0.8, ax=ax)
    for n, (x, y) in pos.items():
        a = G.nodes[n]
        text = a["app"] + (f"\n{a['version']}" if a["version"] else "") + (" (svc)" if a["kind"] == "service" else "")
        ax.annotate(text, (x, y), xytext=(0, -15), textcoords="offset points", ha="center", va="top",
                    fontsize="x-small")
    for s, d, a in G.edges(data=True):
        (x0, y0), (x1, y1) = pos[s], pos[d]
        rad = 0.25 if G.has_edge(d, s) else 0.0
        ax.add_patch(FancyArrowPatch((x0, y0), (x1, y1), arrowstyle="-|>", mutation_scale=11,
                                     color=HEALTH_COLORS[a["health"]], lw=1.0 + 2.0 * min(1.0, a["requests"] / 500),
                                     shrinkA=11, shrinkB=11, connectionstyle=f"arc3,rad={rad}", zorder=1))
        mx, my = x0 + (x1 - x0) * 0.55, y0 + (y1 - y0) * 0.55
        if labels:
            ax.annotate(edge_label(a), (mx, my), ha="center", va="bottom", fontsize=6.5, xytext=(0, 2),
                        textcoords="offset points", bbox={"boxstyle": "round,pad=0.15", "fc": "white", "ec": "none",
                                                          "alpha": 0.8}, zorder=3)
        if a["lock"]:
            ax.add_artist(AnnotationBbox(_padlock(0.9), (mx, my), xybox=(0, -7), boxcoords="offset points",
                                         frameon=False, zorder=4))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.45, max(xs) + 0.45)
    ax.set_ylim(min(ys) - 0.7, max(ys) + 0.5)
    if legend:
        handles = [Line2D([], [], color=c, lw=3, label=k) for k, c in HEALTH_COLORS.items() if k != "idle"]
        handles.append(Line2D([], [], color="#444444", marker="s", ls="", markersize=6, label="lock: mutual TLS"))
        ax.legend(handles=handles, loc="lower left", fontsize="x-small", frameon=False, ncols=4,
                  bbox_to_anchor=(0.0, -0.08))
    return fig


def nodes_in(G: nx.DiGraph, kind: str) -> list[str]:
    """The nodes of one kind (``workload``, ``service``, ``gateway``, ``unknown``), sorted."""
    return sorted(n for n, a in G.nodes(data=True) if a["kind"] == kind)


def edge_set(G: nx.DiGraph) -> set[tuple[str, str]]:
    """The edges as a set of (source, destination) pairs."""
    return set(G.edges())
