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


def _side_points(a: tuple[float, float, float, float], b: tuple[float, float, float, float],
                 gap: float = 0.5) -> tuple[tuple[float, float], tuple[float, float]]:
    """Start and end points of an arrow from box ``a`` to box ``b`` through their facing sides."""
    ax_, ay, aw, ah = a
    bx, by, bw, bh = b
    ca, cb = (ax_ + aw / 2, ay + ah / 2), (bx + bw / 2, by + bh / 2)
    if abs(cb[0] - ca[0]) >= abs(cb[1] - ca[1]):
        sgn = 1 if cb[0] > ca[0] else -1
        return (ca[0] + sgn * (aw / 2 + gap), ca[1]), (cb[0] - sgn * (bw / 2 + gap), cb[1])
    sgn = 1 if cb[1] > ca[1] else -1
    return (ca[0], ca[1] + sgn * (ah / 2 + gap)), (cb[0], cb[1] - sgn * (bh / 2 + gap))


def monolith_vs_microservices() -> Figure:
    """Left: one deployable with six features. Right: six services and their call edges."""
    fig, ax = canvas("One monolith vs six microservices")
    ax.plot([46, 46], [4, 43], color="#bbbbbb", linewidth=1, linestyle=":")

    # Left: the monolith.
    ax.text(23, 42.5, "Monolith: one process, one deploy, one database", ha="center", fontsize=10,
            color="#333333")
    box(ax, 4, 8, 37, 31, "shop (one deployable)", kind="monolith", bold=True, va="top")
    for i, feat in enumerate(FEATURES):
        col, row = i % 3, i // 3
        box(ax, 6.5 + col * 11.7, 24.5 - row * 11, 9.5, 7, feat, kind="app", fontsize=9.5)
    ax.text(22.5, 10.3, "features call each other in memory", ha="center", fontsize=8.5, color="#555555",
            style="italic")
    box(ax, 13.5, 2.2, 18, 3.4, "one shared database", kind="client", fontsize=8.5)

    # Right: the microservices, each its own process, called over the network.
    ax.text(74, 42.5, "Microservices: a process and a deploy per service", ha="center", fontsize=10,
            color="#333333")
    w, h = 12.0, 5.6
    boxes = {
        "browser": (48.5, 20.3, 7.5, h),
        "storefront": (62, 30.8, w, h), "login": (62, 20.3, w, h), "checkout": (62, 9.8, w, h),
        "listing": (83, 36, w, h), "details": (83, 25.6, w, h), "cart": (83, 15, w, h),
        "payment": (83, 4.6, w, h),
    }
    for name, (x, y, bw, bh) in boxes.items():
        label = "web UI\n(storefront)" if name == "storefront" else name
        box(ax, x, y, bw, bh, label, kind="client" if name in ("browser", "storefront") else "app",
            fontsize=9 if name != "storefront" else 8.5)
    for target in ("storefront", "login", "checkout"):
        s, e = _side_points(boxes["browser"], boxes[target])
        arrow(ax, s, e, color="#808080", lw=1.2, dashed=True)
    for a, b in [("storefront", "listing"), ("storefront", "details"), ("checkout", "cart"),
                 ("checkout", "payment")]:
        s, e = _side_points(boxes[a], boxes[b])
        arrow(ax, s, e, color=REQUEST, lw=1.5)
    ax.text(74, 1.0, "each arrow is an HTTP call to a service by name, over the network", ha="center",
            fontsize=8.5, color="#555555", style="italic")
    return fig


def sidecar_pattern() -> Figure:
    """A pod (app + istio-proxy) with all traffic through the sidecar; istiod pushes config."""
    fig, ax = canvas("The sidecar pattern: all traffic in and out passes through the proxy")

    box(ax, 45, 36.5, 24, 6.5, "istiod (control plane)", kind="control", bold=True)
    ax.text(30, 39.7, "config push (xDS): routes, clusters,\nendpoints, certificates", ha="center",
            va="center", fontsize=8.5, color=CONFIG)
    box(ax, 12, 8, 58, 24, "", kind="group", dashed=True)
    ax.text(13.5, 30.2, "pod reviews-v1-0", ha="left", va="center", fontsize=9.5, color="#333333")
    box(ax, 15, 11, 20, 16, "app container\n\nbusiness logic only\n(FastAPI service)", kind="app")
    box(ax, 48, 11, 18, 16, "istio-proxy\n(Envoy sidecar)\n\nrouting, retries,\ntimeouts, mTLS,\nmetrics, logs",
        kind="proxy", fontsize=9.5)

    # inbound: caller -> sidecar -> app
    box(ax, 81, 22, 16, 7, "caller\n(another pod)", kind="client", fontsize=9.5)
    arrow(ax, (80.6, 24.5), (66.6, 24.5), color=RESPONSE)
    arrow(ax, (47.4, 24.5), (35.6, 24.5), color=RESPONSE)
    ax.text(75.5, 26.0, "inbound", ha="center", fontsize=8.5, color=RESPONSE)
    ax.text(41.5, 26.0, "inbound", ha="center", fontsize=8.5, color=RESPONSE)

    # outbound: app -> sidecar -> called service
    box(ax, 81, 10, 16, 7, "called service\n(its own sidecar)", kind="client", fontsize=9.5)
    arrow(ax, (35.6, 13.5), (47.4, 13.5), color=REQUEST)
    arrow(ax, (66.6, 13.5), (80.6, 13.5), color=REQUEST)
    ax.text(41.5, 12.0, "outbound", ha="center", fontsize=8.5, color=REQUEST)
    ax.text(75.5, 12.0, "outbound", ha="center", fontsize=8.5, color=REQUEST)
    ax.text(41.5, 19.0, "localhost", ha="center", fontsize=8, color="#555555", style="italic")
    arrow(ax, (57, 36.2), (57, 27.7), color=CONFIG, dashed=True, lw=1.6)  # drawn last: on top of the pod

    ax.text(41, 5.6, "iptables rules in the pod send every connection in and out through the sidecar;\n"
            "the app never talks to the network directly", ha="center", va="center", fontsize=8.5,
            color="#555555", style="italic")
    legend(ax, [("app", "app"), ("proxy", "sidecar proxy"), ("control", "control plane"),
                (REQUEST, "outbound request"), (RESPONSE, "inbound request"), (CONFIG, "configuration")],
           y=1.5)
    return fig


def request_path() -> Figure:
    """The life of one request through two sidecars, and the response back."""
    fig, ax = canvas("Life of a request: app -> two sidecars -> app, and back")

    box(ax, 1.5, 9, 44.5, 33, "", kind="group", dashed=True)
    box(ax, 54, 9, 44.5, 33, "", kind="group", dashed=True)
    ax.text(3, 40.2, "client pod", ha="left", va="center", fontsize=9.5, color="#333333")
    ax.text(55.5, 40.2, "server pod", ha="left", va="center", fontsize=9.5, color="#333333")

    y, h = 24, 10
    stages = [  # (x, width, text, kind)
        (3, 6, "client\napp", "app"),
        (11, 8, "outbound\nlistener", "proxy"),
        (21, 7.5, "HTTP\nfilters\n(fault)", "proxy"),
        (30.5, 6, "router", "proxy"),
        (38.5, 6.5, "cluster\n(load\nbalancer)", "proxy"),
        (56, 8, "inbound\nlistener", "proxy"),
        (66, 8, "HTTP\nfilters\n(authn,\nauthz)", "proxy"),
        (76, 8, "inbound\nrouter", "proxy"),
        (86, 10.5, "server\napp", "app"),
    ]
    for x, w, text, kind in stages:
        box(ax, x, y, w, h, text, kind=kind, fontsize=8.5)
    up, down = y + h - 1.2, y + 1.2
    for (x1, w1, *_), (x2, *_) in zip(stages, stages[1:], strict=False):
        arrow(ax, (x1 + w1 + 0.35, up), (x2 - 0.35, up), color=REQUEST, lw=1.4)
        arrow(ax, (x2 - 0.35, down), (x1 + w1 + 0.35, down), color=RESPONSE, lw=1.4)
    ax.text(50.2, up + 2.6, "[mTLS]", ha="center", fontsize=8, color="#555555")
    ax.text(50.2, up + 1.2, "request", ha="center", fontsize=8, color=REQUEST)
    ax.text(50.2, down - 1.3, "response", ha="center", fontsize=8, color=RESPONSE)

    box(ax, 3, 12, 41.5, 8,
        "client sidecar: pick the route (VirtualService) and\ncluster, load-balance over endpoints, retry,\n"
        "time out, circuit-break (DestinationRule)", kind="client", fontsize=8.3)
    box(ax, 55.5, 12, 41.5, 8,
        "server sidecar: terminate mTLS, check the caller\n(PeerAuthentication, AuthorizationPolicy),\n"
        "then hand the request to the local app", kind="client", fontsize=8.3)

    box(ax, 17, 1.3, 66, 5,
        "at the end of each request, both sidecars write an access-log line and Istio metrics\n"
        "(reporter=\"source\" on the client side, reporter=\"destination\" on the server side)",
        kind="telemetry", fontsize=8.5)
    arrow(ax, (23.5, 11.6), (27, 6.7), color="#2e7d32", lw=1.2)
    arrow(ax, (76.5, 11.6), (73, 6.7), color="#2e7d32", lw=1.2)
    return fig


def istio_architecture() -> Figure:
    """Data plane (pods with sidecars) and control plane (istiod: pilot, galley, citadel)."""
    fig, ax = canvas("Istio architecture: data plane and control plane")

    # control plane
    box(ax, 2, 24, 42, 19, "control plane: istiod (one process)", kind="control", va="top", bold=True)
    parts = [(3.5, "pilot\n\nservice discovery,\nconfig push (xDS)"),
             (17.2, "galley\n\nvalidates Istio\nconfig (YAML)"),
             (30.9, "citadel\n\nCA: issues\ncertificates")]
    for x, text in parts:
        box(ax, x, 26, 12, 11, text, kind="group", fontsize=8.3)

    box(ax, 2.5, 6, 18.5, 8, "you:\nkubectl apply -f\nreviews-route.yaml", kind="client", fontsize=8.5)
    arrow(ax, (14, 14.4), (21.5, 25.6), color=CONFIG, label="Istio YAML", label_offset=(-5.5, 0.3))
    box(ax, 24.5, 6, 19, 8, "service registry\n(Kubernetes Services\nand endpoints)", kind="client",
        fontsize=8.5)
    arrow(ax, (30, 14.4), (10, 25.6), color=ARROW, label="watch", label_offset=(6.5, -1.6))

    # data plane: bookinfo-like pods, proxies facing the middle so traffic goes proxy to proxy
    box(ax, 53, 5, 45, 38, "", kind="group", dashed=True)
    ax.text(75.5, 41, "data plane: one Envoy sidecar per pod", ha="center", va="center", fontsize=10,
            fontweight="bold", color="#1a1a1a")
    pw, ph = 19, 11
    pods = {"productpage": (55, 25.5, "right"), "reviews-v1": (77, 25.5, "left"),
            "ratings": (55, 8, "right"), "reviews-v2": (77, 8, "left")}
    proxy_box = {}
    for name, (x, y, side) in pods.items():
        box(ax, x, y, pw, ph, "", kind="group", lw=1.0)
        ax.text(x + pw / 2, y + ph - 1.5, f"pod {name}", ha="center", va="center", fontsize=8.5)
        app_x, proxy_x = (x + 1, x + 10) if side == "right" else (x + 10, x + 1)
        box(ax, app_x, y + 1, 8, 6.3, "app", kind="app", fontsize=8.5)
        proxy_box[name] = box(ax, proxy_x, y + 1, 8, 6.3, "proxy", kind="proxy", fontsize=8.5)
    for a, b in [("productpage", "reviews-v1"), ("productpage", "reviews-v2"), ("reviews-v2", "ratings")]:
        s, e = _side_points(proxy_box[a], proxy_box[b], gap=0.6)
        arrow(ax, s, e, color=REQUEST, lw=1.5)
    ax.text(75.5, 22.5, "mTLS between sidecars", ha="center", fontsize=8, color=REQUEST,
            bbox={"facecolor": "white", "edgecolor": "none", "pad": 1.0})

    # istiod pushes to every sidecar
    arrow(ax, (44.5, 38.5), (52.6, 38.5), color=CONFIG, dashed=True, lw=1.6)
    arrow(ax, (44.5, 29), (52.6, 29), color=CONFIG, dashed=True, lw=1.6)
    ax.text(48.5, 35.3, "config\n(xDS)", ha="center", va="center", fontsize=8, color=CONFIG)
    ax.text(48.5, 26.0, "certs\n(SPIFFE)", ha="center", va="center", fontsize=8, color=CONFIG)

    legend(ax, [("app", "app"), ("proxy", "sidecar (Envoy)"), ("control", "istiod"),
                (REQUEST, "service traffic"), (CONFIG, "config and certificates")], y=1.5)
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
