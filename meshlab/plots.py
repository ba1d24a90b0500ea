"""The plots the notebooks share: traffic, availability, latency, replicas, cost, request paths.

Every function takes DataFrames as ``Mesh.load`` / ``shop.drive`` / ``mesh.access_log`` return
them and returns a ``matplotlib.figure.Figure`` (a ``PlotFigure``: not registered with pyplot, so a
notebook cell that ends with it shows it exactly once as a PNG, and nothing leaks between cells). Figures are small
(8 x 3.5 in by default), with a title, axis labels with units and a legend. A name keeps its
colour in every plot (``cart`` is always the same colour), and status classes use the usual
traffic-light colours.

Request frames have a ``t`` column (seconds since the run started) and ``status``; functions
that compare runs take a ``by`` column (``feature``, ``service``, ``scenario`` ...).
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch

__all__ = [
    "FIGSIZE", "PlotFigure", "availability", "availability_table", "color", "cost_vs_throughput", "latency_percentiles",
    "replicas", "request_timeline", "request_waterfall", "status_class", "throughput", "traffic",
]

FIGSIZE = (8.0, 3.5)
STATUS_COLORS = {"2xx": "#2ca02c", "3xx": "#1f77b4", "4xx": "#ff7f0e", "5xx": "#d62728", "failed": "#7f7f7f"}
_PALETTE = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
            "#bcbd22", "#17becf"]
_KNOWN = ["home", "login", "listing", "details", "cart", "checkout", "payment", "storefront", "shop", "curl"]
_FIXED = {"monolith": "#8c564b", "microservices": "#2ca02c"}
_assigned: dict[str, str] = {}

Runs = pd.DataFrame | Mapping[str, pd.DataFrame]


class PlotFigure(Figure):
    """A Figure that shows itself as a PNG in Jupyter (``_repr_png_``) without pyplot."""

    def _repr_png_(self) -> bytes:
        buffer = io.BytesIO()
        self.savefig(buffer, format="png", bbox_inches="tight")
        return buffer.getvalue()


def color(name: str) -> str:
    """A stable colour for ``name`` (the shop's features and services have fixed ones)."""
    if name in _FIXED:
        return _FIXED[name]
    if name in _KNOWN:
        return _PALETTE[_KNOWN.index(name) % len(_PALETTE)]
    if name not in _assigned:
        _assigned[name] = _PALETTE[(len(_assigned) + 3) % len(_PALETTE)]
    return _assigned[name]


def status_class(status: pd.Series | Sequence[int]) -> pd.Series:
    """``200`` -> ``"2xx"`` ... ``503`` -> ``"5xx"``; 0 (no response at all) -> ``"failed"``."""
    s = pd.Series(status)
    out = (s // 100).astype(int).astype(str) + "xx"
    return out.where(s > 0, "failed")


def _ordered(values: Iterable[object]) -> list[object]:
    """Distinct values, the shop's names in their usual order first, then by first appearance."""
    distinct = list(dict.fromkeys(values))
    return sorted(distinct, key=lambda v: (_KNOWN.index(str(v)) if str(v) in _KNOWN else len(_KNOWN)))


def _runs(runs: Runs) -> dict[str, pd.DataFrame]:
    return dict(runs) if isinstance(runs, Mapping) else {"": runs}


def _figure(n: int = 1, figsize: tuple[float, float] | None = None, sharey: bool = True,
            ncols: int | None = None) -> tuple[Figure, list[Axes]]:
    ncols = ncols or n
    nrows = -(-n // ncols)
    size = figsize or (FIGSIZE[0], FIGSIZE[1] if nrows == 1 else 2.4 * nrows)
    fig = PlotFigure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, sharey=sharey, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def _legend(ax: Axes, title: str | None = None) -> None:
    handles, labels = ax.get_legend_handles_labels()
    if handles:
        ax.legend(handles, labels, title=title, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small",
                  title_fontsize="small", frameon=False)


def _shade(ax: Axes, spans: Iterable[tuple[float, float, str]] | None) -> None:
    for start, end, label in spans or ():
        ax.axvspan(start, end, color="#d62728", alpha=0.08, lw=0)
        ax.annotate(label, xy=(start, 0.5), xycoords=("data", "axes fraction"), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize="x-small", color="#a01c1c")


def _bins(t: pd.Series, bin_s: float) -> pd.Series:
    return (np.floor(t / bin_s) * bin_s).round(6)


def availability_table(df: pd.DataFrame, by: str = "feature", bin_s: float = 0.25, time: str = "t") -> pd.DataFrame:
    """Per time bin and group: requests, and availability = share answered without a 5xx (or a
    failed connection). Requests are binned by the ``time`` column (``t``: sent; ``done``, in
    ``shop.drive`` frames: answered). Columns: t (bin start, s), ``by``, requests, availability."""
    ok = (df["status"] > 0) & (df["status"] < 500)
    g = df.assign(_t=_bins(df[time], bin_s), _ok=ok).groupby(["_t", by], observed=True)["_ok"]
    out = pd.DataFrame({"requests": g.size(), "availability": g.mean()}).reset_index()
    return out.rename(columns={"_t": "t"})


def availability(runs: Runs, by: str = "feature", bin_s: float = 0.25, title: str = "Availability per feature",
                 spans: Mapping[str, Iterable[tuple[float, float, str]]] | Iterable[tuple[float, float, str]]
                 | None = None, time: str = "t") -> Figure:
    """Availability (share of requests without a 5xx) per ``by`` over time; one panel per run
    when ``runs`` is a dict. ``spans``: (start, end, label) intervals to shade (per run name).
    ``time``: the column that places a request in time (``t`` sent, ``done`` answered)."""
    named = _runs(runs)
    fig, axes = _figure(len(named))
    for ax, (name, df) in zip(axes, named.items(), strict=True):
        table = availability_table(df, by, bin_s, time)
        groups = _ordered(table[by])
        for i, group in enumerate(groups):  # thickest first, so lines on top of each other stay visible
            part = table[table[by] == group]
            ax.step(part["t"] + bin_s / 2, 100 * part["availability"], where="mid", lw=1.2 + 1.1 * (len(groups) - 1 - i),
                    color=color(str(group)), label=str(group), solid_capstyle="butt")
        run_spans = spans.get(name) if isinstance(spans, Mapping) else spans
        _shade(ax, run_spans)
        ax.set_ylim(-5, 105)
        ax.set_xlabel("time since start (s)" if time == "t" else "time the answer arrived (s)")
        ax.set_title(name or title, fontsize="medium")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("requests without 5xx (%)")
    _legend(axes[-1], by)
    if len(named) > 1:
        fig.suptitle(title)
    return fig


def traffic(df: pd.DataFrame, by: str = "service", bin_s: float = 0.25,
            title: str = "Traffic by status class") -> Figure:
    """Requests per second over time, one panel per ``by`` value, stacked by status class."""
    groups = _ordered(df[by])
    ncols = min(3, max(1, len(groups)))
    fig, axes = _figure(len(groups), ncols=ncols)
    d = df.assign(_t=_bins(df["t"], bin_s), _class=status_class(df["status"]).to_numpy())
    classes = [c for c in STATUS_COLORS if c in set(d["_class"])]
    for ax, group in zip(axes, groups, strict=True):
        part = d[d[by] == group]
        counts = part.groupby(["_t", "_class"]).size().unstack(fill_value=0).reindex(columns=classes, fill_value=0)
        ax.stackplot(counts.index + bin_s / 2, *(counts[c] / bin_s for c in classes),
                     labels=classes, colors=[STATUS_COLORS[c] for c in classes], alpha=0.85)
        ax.set_title(str(group), fontsize="medium")
        ax.set_xlabel("time since start (s)")
        ax.grid(alpha=0.3)
    for i, ax in enumerate(axes):
        if i % ncols == 0:
            ax.set_ylabel("requests/s")
    _legend(axes[min(ncols, len(axes)) - 1], "status")
    fig.suptitle(title)
    return fig


def throughput(df: pd.DataFrame, by: str = "scenario", bin_s: float = 0.5, only_ok: bool = True,
               title: str = "Throughput") -> Figure:
    """Requests per second over time per ``by`` value (only successful ones by default)."""
    fig, (ax,) = _figure(1)
    d = df[(df["status"] >= 200) & (df["status"] < 400)] if only_ok else df
    for group, part in d.groupby(by, sort=False):
        rate = part.groupby(_bins(part["t"], bin_s)).size() / bin_s
        ax.plot(rate.index + bin_s / 2, rate.to_numpy(), marker=".", ms=3, lw=1.4, color=color(str(group)),
                label=str(group))
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel(("successful " if only_ok else "") + "requests/s")
    ax.set_ylim(bottom=0)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend(ax, by)
    return fig


def latency_percentiles(df: pd.DataFrame, by: str = "scenario", percentiles: Sequence[float] = (50, 90, 99),
                        log: bool = True, title: str = "Latency percentiles") -> Figure:
    """Grouped bars: for each ``by`` value, latency percentiles in ms (log scale by default)."""
    fig, (ax,) = _figure(1)
    groups = list(dict.fromkeys(df[by]))
    width = 0.8 / len(percentiles)
    shades = ["#9ecae1", "#4292c6", "#08519c", "#08306b"]
    x = np.arange(len(groups))
    table = [[float(np.percentile(df.loc[df[by] == g, "latency_ms"], q)) for g in groups] for q in percentiles]
    top = max(max(row) for row in table)
    fmt = "%.0f" if top >= 100 else "%.1f" if top >= 10 else "%.2f"
    for i, (q, values) in enumerate(zip(percentiles, table, strict=True)):
        bars = ax.bar(x + (i - (len(percentiles) - 1) / 2) * width, values, width, label=f"p{q:g}",
                      color=shades[i % len(shades)])
        ax.bar_label(bars, fmt=fmt, fontsize="x-small", padding=1)
    ax.set_xticks(x, [str(g) for g in groups], fontsize="small")
    ax.set_xlabel(by)
    if log:
        ax.set_yscale("log")
    ax.set_ylabel("latency (ms)")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="y")
    _legend(ax, "percentile")
    return fig


def replicas(df: pd.DataFrame, title: str = "Replicas over time") -> Figure:
    """Replicas per service over time (columns t, service, replicas), as steps."""
    fig, (ax,) = _figure(1)
    for service, part in df.groupby("service", sort=False):
        ax.step(part["t"], part["replicas"], where="post", lw=1.8, color=color(str(service)), label=str(service))
    ax.set_xlabel("time since start (s)")
    ax.set_ylabel("replicas")
    ax.set_ylim(bottom=0)
    ax.yaxis.get_major_locator().set_params(integer=True)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    _legend(ax, "service")
    return fig


def cost_vs_throughput(df: pd.DataFrame, x: str = "cost_mb", y: str = "throughput_rps", label: str = "scenario",
                       title: str = "Cost against throughput") -> Figure:
    """One point per row: memory reserved (replicas x footprint, MB) against successful requests/s."""
    fig, (ax,) = _figure(1)
    span_x, span_y = float(df[x].max()) or 1.0, float(df[y].max()) or 1.0
    placed: list[tuple[float, float]] = []
    for _, row in df.iterrows():
        name, px, py = str(row[label]), float(row[x]), float(row[y])
        ax.scatter(px, py, s=60, color=color(name), zorder=3, label=name)
        crowded = sum(abs(px - qx) < 0.1 * span_x and abs(py - qy) < 0.08 * span_y for qx, qy in placed)
        ax.annotate(name, (px, py), xytext=(6, 4 - 12 * crowded), textcoords="offset points", fontsize="small")
        placed.append((px, py))
    ax.set_xlabel("memory reserved: replicas x footprint (MB)")
    ax.set_ylabel("successful requests/s")
    ax.set_xlim(left=0, right=float(df[x].max()) * 1.3)
    ax.set_ylim(bottom=0, top=float(df[y].max()) * 1.2)
    ax.set_title(title)
    ax.grid(alpha=0.3)
    return fig


def request_timeline(runs: Runs, y: str = "feature", hue: str = "generation",
                     title: str = "Which pods answered, over time") -> Figure:
    """Every request as a dot at (t, ``y``), coloured by ``hue`` (e.g. old/new pods); requests
    that failed (5xx or no response) are drawn as red crosses on top. One panel per run when
    ``runs`` is a dict."""
    named = _runs(runs)
    n = len(named)
    fig = PlotFigure(figsize=(FIGSIZE[0], FIGSIZE[1] if n == 1 else 2.6 * n), layout="constrained")
    axes = fig.subplots(n, 1, sharex=True, squeeze=False).ravel().tolist()
    for ax, (name, df) in zip(axes, named.items(), strict=True):
        _timeline(ax, df, y, hue)
        ax.set_title(name or title, fontsize="medium" if name else "large")
    axes[-1].set_xlabel("time since start (s)")
    if n > 1:
        fig.suptitle(title)
    return fig


def _timeline(ax: Axes, df: pd.DataFrame, y: str, hue: str) -> None:
    rows = _ordered(df[y])
    pos = {r: i for i, r in enumerate(rows)}
    failed = (df["status"] == 0) | (df["status"] >= 500)
    hues = list(dict.fromkeys(df[hue]))
    shades = ["#bdbdbd", "#1f77b4", "#2ca02c", "#9467bd"]
    for i, h in enumerate(hues):
        part = df[(df[hue] == h) & ~failed]
        ax.scatter(part["t"], part[y].map(pos) + (i - (len(hues) - 1) / 2) * 0.18, s=6,
                   color=shades[i % len(shades)], label=str(h), lw=0)
    bad = df[failed]
    if len(bad):
        ax.scatter(bad["t"], bad[y].map(pos), marker="x", s=40, color=STATUS_COLORS["5xx"], label="error (5xx)",
                   zorder=3)
    ax.set_yticks(range(len(rows)), [str(r) for r in rows])
    ax.set_ylim(len(rows) - 0.5, -0.5)
    ax.set_ylabel(y)
    ax.grid(alpha=0.3, axis="x")
    _legend(ax, hue)


def request_waterfall(log: pd.DataFrame, title: str = "One request through the mesh") -> Figure:
    """The access-log entries of one request (``mesh.access_log()`` rows with the same
    ``request_id``) as a waterfall: one bar per sidecar entry, from its start for its duration."""
    fig, (ax,) = _figure(1, figsize=(FIGSIZE[0], max(2.0, 0.45 * len(log) + 1.0)))
    d = log.sort_values("start_time", kind="stable").reset_index(drop=True)
    t0 = float(d["start_time"].min())
    for i, row in d.iterrows():
        start = (float(row["start_time"]) - t0) * 1000.0
        side = "outbound" if row["reporter"] == "source" else "inbound"
        shade = "#1f77b4" if side == "outbound" else "#ff7f0e"
        ax.barh(i, float(row["duration_ms"]), left=start, color=shade, alpha=0.85, height=0.6)
        ax.annotate(f"{row['response_code']}", (start + float(row["duration_ms"]), i), xytext=(3, 0),
                    textcoords="offset points", va="center", fontsize="x-small")
    labels = [f"{r['pod']} {'out' if r['reporter'] == 'source' else 'in'}: {r['method']} "
              f"{r['destination_service'].split('.')[0]}{r['path']}" for _, r in d.iterrows()]
    ax.set_yticks(range(len(d)), labels, fontsize="small")
    ax.set_ylim(len(d) - 0.5, -0.5)
    ax.set_xlabel("time since the first sidecar saw the request (ms)")
    ax.set_ylabel("access-log entry")
    ax.set_title(title)
    ax.grid(alpha=0.3, axis="x")
    handles = [Patch(color="#1f77b4", label="outbound (reporter=source)"),
               Patch(color="#ff7f0e", label="inbound (reporter=destination)")]
    ax.legend(handles=handles, title="sidecar side", loc="lower left", fontsize="small", title_fontsize="small",
              framealpha=0.9)
    return fig
