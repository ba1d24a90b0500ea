#!/usr/bin/env python
"""Draw the guide's diagrams into ``images/`` (run from anywhere)::

    python scripts/draw_images.py            # all images
    python scripts/draw_images.py sidecar-pattern

Every diagram is drawn with matplotlib from fixed coordinates (no layout algorithm, no random
numbers, no network), and PNGs are saved without a timestamp or software tag, so running the
script again rewrites identical files. Each image is 900x450 px (9 x 4.5 in at dpi 100).

Colours are shared by every diagram: the app is blue, the sidecar (Envoy, istio-proxy) orange,
the control plane (istiod) purple, clients grey, telemetry green.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "images"

WIDTH, HEIGHT, DPI = 9.0, 4.5, 100

#: Shared palette: (fill, edge) per kind of box.
COLORS: dict[str, tuple[str, str]] = {
    "app": ("#dbe9f7", "#2f6fae"),
    "proxy": ("#fde3c8", "#d2691e"),
    "control": ("#e6dcf2", "#6a4c93"),
    "client": ("#e8e8e8", "#606060"),
    "telemetry": ("#dcefdc", "#2e7d32"),
    "group": ("#ffffff", "#9a9a9a"),
    "monolith": ("#f3f3f3", "#505050"),
}
ARROW = "#333333"
REQUEST = "#2f6fae"
RESPONSE = "#c0392b"
CONFIG = "#6a4c93"

plt.rcParams.update({"font.family": "DejaVu Sans", "font.size": 10, "svg.hashsalt": "meshlab"})


# -- drawing helpers -------------------------------------------------------------------------
def canvas(title: str) -> tuple[Figure, Axes]:
    """A blank 900x450 figure with a 0-100 x 0-50 coordinate system and a title."""
    fig = plt.figure(figsize=(WIDTH, HEIGHT), dpi=DPI)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 50)
    ax.axis("off")
    ax.text(50, 47.5, title, ha="center", va="center", fontsize=14, fontweight="bold", color="#222222")
    return fig, ax


def box(ax: Axes, x: float, y: float, w: float, h: float, text: str = "", kind: str = "app",
        fontsize: float = 10, bold: bool = False, dashed: bool = False, va: str = "center",
        lw: float = 1.5) -> tuple[float, float, float, float]:
    """A rounded box with its lower-left corner at (x, y); returns (x, y, w, h)."""
    fill, edge = COLORS[kind]
    patch = FancyBboxPatch((x, y), w, h, boxstyle="round,pad=0.2,rounding_size=0.8", facecolor=fill,
                           edgecolor=edge, linewidth=lw, linestyle="--" if dashed else "-")
    ax.add_patch(patch)
    if text:
        ty = y + h / 2 if va == "center" else y + h - 1.2
        ax.text(x + w / 2, ty, text, ha="center", va=va, fontsize=fontsize,
                fontweight="bold" if bold else "normal", color="#1a1a1a", linespacing=1.25)
    return (x, y, w, h)


def arrow(ax: Axes, start: tuple[float, float], end: tuple[float, float], color: str = ARROW,
          label: str = "", lw: float = 1.6, style: str = "-|>", rad: float = 0.0, dashed: bool = False,
          label_offset: tuple[float, float] = (0.0, 1.0), fontsize: float = 8.5) -> None:
    """An arrow from ``start`` to ``end`` with an optional label near its middle."""
    ax.add_patch(FancyArrowPatch(start, end, arrowstyle=style, mutation_scale=12, color=color, linewidth=lw,
                                 connectionstyle=f"arc3,rad={rad}", linestyle="--" if dashed else "-",
                                 shrinkA=0, shrinkB=0))
    if label:
        mx = (start[0] + end[0]) / 2 + label_offset[0]
        my = (start[1] + end[1]) / 2 + label_offset[1]
        ax.text(mx, my, label, ha="center", va="center", fontsize=fontsize, color=color)


def legend(ax: Axes, items: list[tuple[str, str]], y: float = 1.6) -> None:
    """A one-line legend at the bottom: (kind, label) pairs."""
    x = 3.0
    for kind, label in items:
        fill, edge = COLORS[kind] if kind in COLORS else ("#ffffff", kind)
        if kind in COLORS:
            ax.add_patch(FancyBboxPatch((x, y - 0.8), 2.2, 1.6, boxstyle="round,pad=0.1,rounding_size=0.3",
                                        facecolor=fill, edgecolor=edge, linewidth=1.2))
        else:
            ax.add_patch(FancyArrowPatch((x, y), (x + 2.6, y), arrowstyle="-|>", mutation_scale=10,
                                         color=kind, linewidth=1.6))
        ax.text(x + 3.2, y, label, ha="left", va="center", fontsize=8.5, color="#333333")
        x += 4.0 + 0.95 * len(label)


def save(fig: Figure, name: str) -> Path:
    """Write ``images/<name>.png`` without timestamps or software tags (reproducible bytes)."""
    OUT.mkdir(exist_ok=True)
    path = OUT / f"{name}.png"
    fig.savefig(path, dpi=DPI, metadata={"Software": None}, facecolor="white", pil_kwargs={"optimize": True})
    plt.close(fig)
    return path


# -- the diagrams ----------------------------------------------------------------------------
FEATURES = ["login", "listing", "details", "cart", "checkout", "payment"]


def monolith_vs_microservices() -> Figure:
    """Left: one deployable with six features. Right: six services and their call edges."""
    fig, ax = canvas("One monolith vs six microservices")
    ax.plot([47, 47], [5, 43], color="#bbbbbb", linewidth=1, linestyle=":")

    # Left: the monolith.
    ax.text(23, 42.5, "Monolith: one process, one deploy, one database", ha="center", fontsize=10,
            color="#333333")
    box(ax, 5, 7, 36, 32, "shop (one deployable)", kind="monolith", bold=True, va="top")
    for i, feat in enumerate(FEATURES):
        col, row = i % 3, i // 3
        box(ax, 7.5 + col * 11.2, 24 - row * 11, 9, 7, feat, kind="app", fontsize=9.5)
    ax.text(23, 9.5, "features call each other in memory", ha="center", fontsize=8.5, color="#555555",
            style="italic")
    box(ax, 16, 2.2, 14, 3.2, "one shared DB", kind="client", fontsize=8.5)

    # Right: the microservices, each its own process.
    ax.text(75, 42.5, "Microservices: one process and deploy per service", ha="center", fontsize=10,
            color="#333333")
    pos = {
        "storefront": (52, 28), "listing": (68, 36), "details": (68, 22),
        "checkout": (52, 10), "cart": (68, 4.5), "payment": (84, 10), "login": (84, 30),
    }
    w, h = 12, 6
    for svc, (x, y) in pos.items():
        box(ax, x, y, w, h, svc, kind="client" if svc in ("storefront", "checkout") else "app", fontsize=9.5)
    edges = [("storefront", "listing"), ("storefront", "details"), ("checkout", "cart"),
             ("checkout", "payment"), ("checkout", "login"), ("storefront", "login")]

    def edge_points(a: str, b: str) -> tuple[tuple[float, float], tuple[float, float]]:
        ax_, ay = pos[a]
        bx, by = pos[b]
        ca = (ax_ + w / 2, ay + h / 2)
        cb = (bx + w / 2, by + h / 2)
        # leave and enter through the facing sides (horizontal if mostly horizontal, else vertical)
        if abs(cb[0] - ca[0]) >= abs(cb[1] - ca[1]) * 1.2:
            sgn = 1 if cb[0] > ca[0] else -1
            return (ca[0] + sgn * (w / 2 + 0.4), ca[1]), (cb[0] - sgn * (w / 2 + 0.6), cb[1])
        sgn = 1 if cb[1] > ca[1] else -1
        return (ca[0], ca[1] + sgn * (h / 2 + 0.4)), (cb[0], cb[1] - sgn * (h / 2 + 0.6))

    for a, b in edges:
        s, e = edge_points(a, b)
        arrow(ax, s, e, color=REQUEST, lw=1.4)
    ax.text(75, 1.4, "entry points (grey) call services over the network: HTTP, by name", ha="center",
            fontsize=8.5, color="#555555", style="italic")
    return fig


def sidecar_pattern() -> Figure:
    """A pod (app + istio-proxy) with all traffic through the sidecar; istiod pushes config."""
    fig, ax = canvas("The sidecar pattern: every request in or out passes through the proxy")

    # istiod on top
    box(ax, 38, 36, 24, 7, "istiod (control plane)", kind="control", bold=True)
    # the pod
    box(ax, 26, 8, 48, 22, "pod  reviews-v1-0", kind="group", va="top", fontsize=9.5, dashed=True)
    box(ax, 29, 11, 17, 14, "app container\n\nbusiness logic only\n(FastAPI service)", kind="app")
    box(ax, 54, 11, 17, 14, "istio-proxy\n(Envoy sidecar)\n\nretries, timeouts,\nmTLS, metrics, logs",
        kind="proxy")
    arrow(ax, (50, 36), (62.5, 25.8), color=CONFIG, lw=1.6, dashed=True,
          label="config push (xDS):\nroutes, clusters,\nendpoints, certificates", label_offset=(-9.5, 0.5))

    # app <-> sidecar over localhost
    arrow(ax, (46.5, 20), (53.4, 20), color=REQUEST, label="outbound", label_offset=(0, 1.2))
    arrow(ax, (53.4, 15), (46.5, 15), color=RESPONSE, label="inbound", label_offset=(0, -1.3))
    ax.text(50, 11.6, "localhost", ha="center", fontsize=8, color="#555555", style="italic")

    # other services
    box(ax, 3, 14, 15, 8, "caller\n(another pod)", kind="client", fontsize=9.5)
    box(ax, 82, 14, 15, 8, "called service\n(its own sidecar)", kind="client", fontsize=9.5)
    arrow(ax, (18.4, 16), (53.4, 12.5), color=RESPONSE, rad=0.12,
          label="inbound traffic is captured\n(iptables) by the sidecar", label_offset=(-6, -4.8))
    arrow(ax, (71.4, 18), (81.6, 18), color=REQUEST, label="outbound", label_offset=(0, 1.2))

    legend(ax, [("app", "app"), ("proxy", "sidecar proxy"), ("control", "control plane"),
                (REQUEST, "outbound request"), (RESPONSE, "inbound request"), (CONFIG, "configuration")])
    return fig


def request_path() -> Figure:
    """The life of one request through two sidecars, and the response back."""
    fig, ax = canvas("Life of a request: app -> two sidecars -> app, and back")

    # two pods
    box(ax, 1.5, 9, 44.5, 33, "client pod", kind="group", va="top", dashed=True, fontsize=9.5)
    box(ax, 54, 9, 44.5, 33, "server pod", kind="group", va="top", dashed=True, fontsize=9.5)

    y, h = 25, 8
    box(ax, 3.5, y, 7, h, "client\napp", kind="app", fontsize=9)
    stages_out = [(13.5, "outbound\nlistener"), (22.5, "HTTP filters\n(fault)"), (31.5, "router\n(route)"),
                  (40.5 - 2.0, "")]
    for x, text in stages_out[:3]:
        box(ax, x, y, 7.5, h, text, kind="proxy", fontsize=8.5)
    box(ax, 39.5, y, 5.5, h, "cluster\nLB,\nretries", kind="proxy", fontsize=8)
    box(ax, 56, y, 8, h, "inbound\nlistener", kind="proxy", fontsize=8.5)
    box(ax, 66.5, y, 9, h, "HTTP filters\n(authn,\nauthz)", kind="proxy", fontsize=8.5)
    box(ax, 78, y, 8, h, "inbound\nrouter", kind="proxy", fontsize=8.5)
    box(ax, 89, y, 7.5, h, "server\napp", kind="app", fontsize=9)

    xs = [(10.7, 13.3), (21.2, 22.3), (30.2, 31.3), (39.2, 39.3 + 0.0), (45.2, 55.8), (64.2, 66.3),
          (75.7, 77.8), (86.2, 88.8)]
    ym = y + h - 2.2
    for a, b in xs:
        if b - a > 0.05:
            arrow(ax, (a, ym), (b, ym), color=REQUEST, lw=1.4)
    ax.text(50.5, ym + 1.4, "[mTLS]", ha="center", fontsize=8, color="#555555")
    ax.text(50.5, ym - 1.5, "request", ha="center", fontsize=8.5, color=REQUEST)

    # response path below
    yr = y + 2.0
    arrow(ax, (88.8, yr), (55.8, yr), color=RESPONSE, lw=1.4)
    arrow(ax, (55.8, yr - 0.001), (55.8, yr - 0.001), color=RESPONSE, lw=0.1, style="-")
    arrow(ax, (45.2, yr), (10.9, yr), color=RESPONSE, lw=1.4)
    ax.text(50.5, yr - 1.5, "response", ha="center", fontsize=8.5, color=RESPONSE)

    # what each sidecar does, and telemetry at the end of the stream
    box(ax, 3.5, 11.5, 40.5, 8,
        "client sidecar: pick route (VirtualService) and cluster,\nload-balance over endpoints, "
        "retry, time out,\ncircuit-break (DestinationRule)", kind="client", fontsize=8.3)
    box(ax, 56, 11.5, 40.5, 8,
        "server sidecar: terminate mTLS, check identity\n(PeerAuthentication) and policy "
        "(AuthorizationPolicy),\nthen hand the request to the local app", kind="client", fontsize=8.3)

    box(ax, 18, 1.5, 64, 5,
        "when the response is sent, each sidecar writes an access-log line and Istio metrics\n"
        "(reporter=\"source\" on the client side, reporter=\"destination\" on the server side)",
        kind="telemetry", fontsize=8.5)
    arrow(ax, (24, 11.2), (28, 6.9), color="#2e7d32", lw=1.2)
    arrow(ax, (76, 11.2), (72, 6.9), color="#2e7d32", lw=1.2)
    return fig


def istio_architecture() -> Figure:
    """Data plane (pods with sidecars) and control plane (istiod: pilot, galley, citadel)."""
    fig, ax = canvas("Istio architecture: data plane and control plane")

    # control plane
    box(ax, 3, 25, 40, 18, "control plane: istiod (one process)", kind="control", va="top", bold=True,
        fontsize=10)
    box(ax, 5, 27, 11.5, 10, "pilot\n\nservice discovery,\nconfig push (xDS)", kind="group", fontsize=8.5)
    box(ax, 18.2, 27, 11.5, 10, "galley\n\nvalidates Istio\nconfig (YAML)", kind="group", fontsize=8.5)
    box(ax, 31.4, 27, 10, 10, "citadel\n\nCA: issues\ncertificates", kind="group", fontsize=8.5)

    box(ax, 5, 6, 17, 8, "operator\nkubectl apply -f vs.yaml", kind="client", fontsize=9)
    arrow(ax, (13.5, 14.3), (23.9, 26.6), color=CONFIG, label="Istio YAML", label_offset=(-5.5, 0.8))
    box(ax, 25, 6, 17, 8, "service registry\n(Kubernetes Services\nand endpoints)", kind="client", fontsize=9)
    arrow(ax, (33.5, 14.3), (14, 26.6), color=ARROW, label="watch", label_offset=(4.2, -2.6))

    # data plane
    box(ax, 52, 5, 45, 38, "data plane: one Envoy sidecar per pod", kind="group", va="top", bold=True,
        fontsize=10, dashed=True)
    pods = [("frontend", 55, 27), ("reviews-v1", 77, 27), ("reviews-v2", 77, 8.5), ("ratings", 55, 8.5)]
    centers = {}
    for name, x, y in pods:
        box(ax, x, y, 17, 10.5, f"pod {name}", kind="group", va="top", fontsize=8.5, lw=1.0)
        box(ax, x + 1, y + 1, 7, 6, "app", kind="app", fontsize=8.5)
        box(ax, x + 9, y + 1, 7, 6, "proxy", kind="proxy", fontsize=8.5)
        centers[name] = (x + 12.5, y + 4)
    # traffic between sidecars (mTLS)
    arrow(ax, (72.2, 31), (85.8, 31), color=REQUEST, lw=1.4)
    arrow(ax, (88, 26.2), (88, 19.2), color=REQUEST, lw=1.4)
    arrow(ax, (76.8, 13), (72.2, 13), color=REQUEST, lw=1.4)
    ax.text(80.5, 22.5, "mTLS between\nsidecars", ha="center", fontsize=8, color=REQUEST)

    # config push from istiod to each sidecar
    arrow(ax, (43.2, 37), (63.5, 35.2), color=CONFIG, dashed=True, lw=1.4,
          label="routes, clusters,\nendpoints (xDS)", label_offset=(-1.5, 2.4))
    arrow(ax, (43.2, 30), (64, 16.5), color=CONFIG, dashed=True, lw=1.4,
          label="certificates\n(SPIFFE identity)", label_offset=(-4.5, -2.8))

    legend(ax, [("app", "app"), ("proxy", "sidecar (Envoy)"), ("control", "istiod"),
                (REQUEST, "service traffic"), (CONFIG, "config and certificates")])
    return fig


DIAGRAMS: dict[str, Callable[[], Figure]] = {
    "monolith-vs-microservices": monolith_vs_microservices,
    "sidecar-pattern": sidecar_pattern,
    "request-path": request_path,
    "istio-architecture": istio_architecture,
}


def main(argv: list[str] | None = None) -> int:
    """Draw the diagrams named on the command line (all by default)."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", metavar="name", help=f"diagrams to draw (default: all): {', '.join(DIAGRAMS)}")
    args = ap.parse_args(argv)
    unknown = [n for n in args.names if n not in DIAGRAMS]
    if unknown:
        ap.error(f"unknown diagram(s) {', '.join(unknown)}; choose from {', '.join(DIAGRAMS)}")
    for name in args.names or list(DIAGRAMS):
        path = save(DIAGRAMS[name](), name)
        print(f"wrote {path.relative_to(ROOT)} ({path.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
