"""What Istio's observability add-ons show: Grafana's Istio dashboards and Jaeger's trace view.

Grafana (``samples/addons/grafana.yaml``) ships three dashboards for the request metrics, each a
grid of *rate, errors, duration* panels computed by Prometheus from ``istio_requests_total`` and
``istio_request_duration_milliseconds``:

* **Istio Mesh Dashboard**: every workload at once (request volume, success rate, latency).
* **Istio Service Dashboard**: one service, its incoming requests by *client* (source
  workload): volume, success rate (non-5xx), duration p50/p90/p99.
* **Istio Workload Dashboard**: one workload, inbound by source and outbound by destination
  service.

``mesh_dashboard``, ``service_dashboard`` and ``workload_dashboard`` draw the same panels from the
built-in Prometheus (``mesh.dashboard`` with a label filter), over a trailing ``window`` of
seconds at every scrape (Grafana's ``rate(...[1m])``, here seconds because everything is scaled
down). ``dashboard_panels`` draws any frame ``mesh.dashboard()`` returns.

Jaeger shows a list of traces (``trace_list``: one row per trace, its root operation, spans,
services, errors) and one trace as a waterfall (``trace_waterfall``: one bar per span, nested by
parent, on a shared time axis). ``trace_tree`` gives the same spans as a table in tree order.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from ..plots import FIGSIZE, PlotFigure, color

if TYPE_CHECKING:
    from ..mesh import Mesh

__all__ = ["dashboard_frame", "dashboard_panels", "mesh_dashboard", "mesh_table", "service_dashboard",
           "trace_list", "trace_tree", "trace_waterfall", "workload_dashboard"]


_TAB10 = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
          "#17becf"]


def _colors(names: Sequence[str]) -> dict[str, str]:
    """A colour per name: meshlab's usual colour of the name (``plots.color``) unless another
    name of the same figure already has it, then the next free one."""
    out: dict[str, str] = {}
    for name in names:
        c = color(name)
        if c in out.values():
            c = next((x for x in _TAB10 if x not in out.values()), c)
        out[name] = c
    return out


# -- Grafana ---------------------------------------------------------------------------------------
def dashboard_frame(mesh: Mesh, window: float = 2.0, by: str = "destination_workload",
                    reporter: str = "destination", where: Mapping[str, str] | None = None) -> pd.DataFrame:
    """``mesh.dashboard()`` with a label filter (``where={"destination_service_name": "reviews"}``):
    per scrape and ``by`` group, ``rps``, ``error_rate`` and ``p50_ms``/``p90_ms``/``p99_ms`` over the
    trailing ``window`` seconds. Takes a fresh scrape first."""

    async def query() -> pd.DataFrame:
        mesh.prometheus.scrape()
        return mesh.prometheus.dashboard(window, by, reporter, where)

    return mesh.runtime.run(query())


def mesh_table(mesh: Mesh, window: float | None = None) -> pd.DataFrame:
    """The Istio Mesh Dashboard's table ("HTTP/GRPC Workloads"): per destination workload,
    requests, rate, success rate (non-5xx) and p50/p90/p99 latency, over the last ``window``
    seconds (default: since the mesh started)."""
    df = mesh.service_summary(window=window, by="destination_workload")
    df.insert(3, "success_rate", 1.0 - df.pop("error_rate"))
    return df


def _groups(df: pd.DataFrame, by: str) -> list[str]:
    return sorted(str(v) for v in dict.fromkeys(df[by])) if not df.empty else []


def _volume(ax: Axes, df: pd.DataFrame, by: str, title: str = "Request volume") -> None:
    colors = _colors(_groups(df, by))
    for name in _groups(df, by):
        g = df[df[by] == name]
        ax.plot(g["t"], g["rps"], color=colors[name], label=name, lw=1.4)
    ax.set_title(title, fontsize="small")
    ax.set_ylabel("requests/s")
    if _groups(df, by):
        ax.legend(fontsize="x-small", frameon=False, title=by, title_fontsize="x-small")
    else:
        ax.text(0.5, 0.5, "no data yet", ha="center", va="center", transform=ax.transAxes)


def _success(ax: Axes, df: pd.DataFrame, by: str, title: str = "Success rate (non-5xx)") -> None:
    colors = _colors(_groups(df, by))
    for name in _groups(df, by):
        g = df[df[by] == name]
        ax.plot(g["t"], 100.0 * (1.0 - g["error_rate"]), color=colors[name], lw=1.4)
    ax.set_title(title, fontsize="small")
    ax.set_ylabel("%")
    ax.set_ylim(-3, 103)


def _duration(ax: Axes, df: pd.DataFrame, by: str, quantiles: Sequence[str], single: bool) -> None:
    if single:
        for q, style in zip(quantiles, ("-", "--", ":"), strict=False):
            for name in _groups(df, by):
                g = df[df[by] == name]
                ax.plot(g["t"], g[q], "k" + style, lw=1.2, label=q.replace("_ms", ""))
        if not df.empty:
            ax.legend(fontsize="x-small", frameon=False)
        ax.set_title("Request duration", fontsize="small")
    else:
        colors = _colors(_groups(df, by))
        for name in _groups(df, by):
            g = df[df[by] == name]
            ax.plot(g["t"], g[quantiles[-1]], color=colors[name], lw=1.4)
        ax.set_title(f"Request duration ({quantiles[-1].replace('_ms', '')})", fontsize="small")
    ax.set_ylabel("ms")


def _finish(fig: Figure, axes: Sequence[Axes], title: str) -> None:
    for ax in axes:
        ax.set_xlabel("time (s)")
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize="x-small")
    if title:
        fig.suptitle(title, fontsize="medium")


def dashboard_panels(df: pd.DataFrame, by: str, title: str,
                     quantiles: Sequence[str] = ("p50_ms", "p90_ms", "p99_ms"), single: bool = False) -> Figure:
    """Three Grafana-style panels from a ``mesh.dashboard()`` frame: request volume (req/s) and
    success rate (non-5xx, %) per ``by`` group, and request duration: each group's last quantile
    (p99), or with ``single`` (one group) its p50/p90/p99 lines."""
    fig = PlotFigure(figsize=FIGSIZE, layout="constrained")
    axes = fig.subplots(1, 3)
    _volume(axes[0], df, by)
    _success(axes[1], df, by)
    _duration(axes[2], df, by, quantiles, single)
    _finish(fig, axes, title)
    return fig


def mesh_dashboard(mesh: Mesh, window: float = 2.0) -> Figure:
    """Istio Mesh Dashboard: request volume, success rate and p99 of every workload (as the
    destination's sidecar measured them)."""
    df = dashboard_frame(mesh, window, by="destination_workload")
    return dashboard_panels(df, "destination_workload", f"Istio Mesh Dashboard (rate over {window:g} s)")


def service_dashboard(mesh: Mesh, service: str, window: float = 2.0, reporter: str = "destination") -> Figure:
    """Istio Service Dashboard for ``service`` (short name): incoming requests by client workload,
    their success rate and the service's request duration p50/p90/p99. ``reporter="source"``
    shows what the clients' sidecars saw, including requests that never reached the service."""
    where = {"destination_service_name": service}
    by_source = dashboard_frame(mesh, window, by="source_workload", reporter=reporter, where=where)
    overall = dashboard_frame(mesh, window, by="destination_service_name", reporter=reporter, where=where)
    fig = PlotFigure(figsize=FIGSIZE, layout="constrained")
    axes = fig.subplots(1, 3)
    _volume(axes[0], by_source, "source_workload", "Incoming requests by source")
    _success(axes[1], by_source, "source_workload", "Success rate by source")
    _duration(axes[2], overall, "destination_service_name", ("p50_ms", "p90_ms", "p99_ms"), single=True)
    side = "the server's sidecars" if reporter == "destination" else "the clients' sidecars"
    _finish(fig, axes, f"Istio Service Dashboard: {service} (reporter={reporter}: {side}, rate over {window:g} s)")
    return fig


def workload_dashboard(mesh: Mesh, workload: str, window: float = 2.0) -> Figure:
    """Istio Workload Dashboard for ``workload`` (e.g. ``reviews-v2``): inbound requests by source
    (top row, reporter destination) and outbound requests by destination service (bottom row,
    reporter source)."""
    inbound = dashboard_frame(mesh, window, by="source_workload", where={"destination_workload": workload})
    outbound = dashboard_frame(mesh, window, by="destination_service_name", reporter="source",
                               where={"source_workload": workload})
    fig = PlotFigure(figsize=(FIGSIZE[0], 5.2), layout="constrained")
    axes = fig.subplots(2, 3)
    q = ("p50_ms", "p90_ms", "p99_ms")
    _volume(axes[0][0], inbound, "source_workload", "Inbound: request volume")
    _success(axes[0][1], inbound, "source_workload", "Inbound: success rate")
    _duration(axes[0][2], inbound, "source_workload", q, single=False)
    _volume(axes[1][0], outbound, "destination_service_name", "Outbound: request volume")
    _success(axes[1][1], outbound, "destination_service_name", "Outbound: success rate")
    _duration(axes[1][2], outbound, "destination_service_name", q, single=False)
    _finish(fig, list(axes.ravel()), f"Istio Workload Dashboard: {workload} (rate over {window:g} s)")
    return fig


# -- Jaeger ----------------------------------------------------------------------------------------
def _service(workload: Any) -> str:
    """Jaeger's service name of a span: the workload's app (``reviews-v2`` -> ``reviews``)."""
    w = str(workload)
    head, _, tail = w.rpartition("-")
    return head if head and tail.startswith("v") and tail[1:].isdigit() else w


def trace_list(spans: pd.DataFrame) -> pd.DataFrame:
    """Jaeger's search results from ``mesh.traces()``: one row per trace, in the order the traces
    started: trace id, root span (service and operation), number of spans, services crossed,
    spans with an error, total duration (ms)."""
    rows = []
    for tid, g in spans.groupby("trace_id", sort=False):
        ids = set(g["span_id"])
        roots = g[~g["parent_id"].isin(ids)]
        root = roots.iloc[0] if len(roots) else g.iloc[0]
        start = g["start_ms"].min()
        end = (g["start_ms"] + g["duration_ms"]).max()
        errors = int(((g["status"].fillna(0) >= 500) | (g["status"].fillna(0) == 0)).sum())
        rows.append({"trace_id": tid, "root": f"{_service(root['workload'])}: {root['name']}",
                     "spans": len(g), "services": len({_service(w) for w in g["workload"]}),
                     "errors": errors, "start_ms": start, "duration_ms": end - start,
                     "request_id": root["request_id"]})
    cols = ["trace_id", "root", "spans", "services", "errors", "start_ms", "duration_ms", "request_id"]
    out = pd.DataFrame(rows, columns=cols)
    return out.sort_values("start_ms", kind="stable").reset_index(drop=True)


def trace_tree(spans: pd.DataFrame, trace_id: str | None = None) -> pd.DataFrame:
    """The spans of one trace (default: the last one started) in tree order, depth first, children
    by start time, with ``depth`` (0: root) and ``service``; times relative to the trace start."""
    if spans.empty:
        raise ValueError("trace_tree: no spans (is tracing on? Mesh(trace_sampling=100))")
    if trace_id is None:
        trace_id = spans.sort_values("start_ms", kind="stable")["trace_id"].iloc[-1]
    g = spans[spans["trace_id"] == trace_id].sort_values("start_ms", kind="stable")
    if g.empty:
        raise ValueError(f"trace_tree: no trace {trace_id!r}")
    ids = set(g["span_id"])
    children: dict[str, list[int]] = {}
    roots = []
    for i, r in g.iterrows():
        if r["parent_id"] in ids:
            children.setdefault(r["parent_id"], []).append(i)
        else:
            roots.append(i)
    order: list[tuple[int, int]] = []

    def walk(i: int, depth: int) -> None:
        order.append((i, depth))
        for c in children.get(g.at[i, "span_id"], []):
            walk(c, depth + 1)

    for r in roots:
        walk(r, 0)
    out = g.loc[[i for i, _ in order]].copy()
    out.insert(0, "depth", [d for _, d in order])
    out.insert(1, "service", [_service(w) for w in out["workload"]])
    out["start_ms"] = out["start_ms"] - g["start_ms"].min()
    return out.reset_index(drop=True)


def trace_waterfall(spans: pd.DataFrame, trace_id: str | None = None, title: str | None = None,
                    ax: Axes | None = None) -> Figure:
    """One trace as Jaeger draws it: one bar per span from its start for its duration, indented
    by depth, coloured by service; client spans (the caller's sidecar) hatched, spans with an
    error outlined in red with their status code."""
    tree = trace_tree(spans, trace_id)
    if ax is None:
        fig = PlotFigure(figsize=(FIGSIZE[0], max(2.2, 0.32 * len(tree) + 1.1)), layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure  # type: ignore[assignment]
    total = float((tree["start_ms"] + tree["duration_ms"]).max()) or 1.0
    services = list(dict.fromkeys(tree["service"]))
    colors = _colors(services)
    for i, r in tree.iterrows():
        err = r["status"] is None or r["status"] != r["status"] or r["status"] >= 500 or r["status"] == 0
        ax.barh(i, max(r["duration_ms"], total * 0.004), left=r["start_ms"], height=0.62,
                color=colors[r["service"]], alpha=0.9, hatch="///" if r["kind"] == "client" else None,
                edgecolor="#c9190b" if err else "white", linewidth=1.6 if err else 0.5)
        note = f"{r['duration_ms']:.1f} ms" + (f"  {int(r['status'] or 0)} {r['response_flags']}" if err else "")
        ax.annotate(note, (r["start_ms"] + r["duration_ms"], i), xytext=(3, 0), textcoords="offset points",
                    va="center", fontsize="x-small", color="#c9190b" if err else "#333333")
    labels = [f"{'  ' * int(r['depth'])}{r['service']}: {r['name']}" for _, r in tree.iterrows()]
    ax.set_yticks(range(len(tree)), labels, fontsize="x-small")
    ax.set_ylim(len(tree) - 0.5, -0.5)
    ax.set_xlim(0, total * 1.25)
    ax.set_xlabel("time since the trace started (ms)")
    ax.grid(alpha=0.3, axis="x")
    tid = str(tree["trace_id"].iloc[0])
    ax.set_title(title or f"Trace {tid[:12]}…: {len(tree)} spans", fontsize="medium")
    handles = [Patch(color=colors[s], label=s) for s in services]
    handles.append(Patch(facecolor="white", edgecolor="#555555", hatch="///", label="client span"))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="x-small", frameon=False)
    return fig

