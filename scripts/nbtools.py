#!/usr/bin/env python
"""Notebook chores for the guide.

    python scripts/nbtools.py run notebooks/01-*.ipynb   # execute in place (outputs committed)
    python scripts/nbtools.py nav                        # rewrite the navigation cells
    python scripts/nbtools.py toc                        # print the table of contents (markdown)

Navigation cells (first and last cell of each notebook, marked ``<!--NAVIGATION-->``) link the
previous and next notebooks and the contents, as in the Python Data Science Handbook. The
contents are the ``CHAPTERS`` table below: notebooks not written yet are listed as "coming".
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parent.parent
NB_DIR = ROOT / "notebooks"
LAB_DIR = ROOT / "labs"
NAV = "<!--NAVIGATION-->"

#: Every chapter of the guide, in order: (file stem, title, lab stem or None).
CHAPTERS: list[tuple[str, str, str | None]] = [
    ("00-start-here", "Start here: your first mesh", None),
    ("01-monolith-vs-microservices", "Monolith vs microservices", "01-monolith-vs-microservices"),
    ("02-service-mesh-and-sidecar", "The service mesh and the sidecar proxy", None),
    ("03-istio-architecture", "Istio architecture: data plane and control plane", None),
    ("04-virtual-services", "VirtualService: request routing", "04-routing-and-canary"),
    (
        "05-destination-rules-and-traffic-shifting",
        "DestinationRule and traffic shifting",
        "04-routing-and-canary",
    ),
    ("06-gateways", "Gateways: traffic in and out of the mesh", "06-gateways"),
    ("07-timeouts", "Timeouts", "07-timeouts-and-retries"),
    ("08-retries", "Retries", "07-timeouts-and-retries"),
    ("09-fault-injection", "Fault injection", None),
    ("10-circuit-breaking", "Circuit breaking and outlier detection", "10-circuit-breaking"),
    ("11-mutual-tls-and-certificates", "Mutual TLS and certificates", "11-mtls-migration"),
    ("12-authorization", "Authorization policies", "12-least-privilege"),
    ("13-request-authentication-jwt", "Request authentication with JWT", None),
    ("14-observability-metrics-logs-tracing", "Observability: metrics, logs, tracing", "14-find-the-fault"),
    ("15-service-graph", "The service graph", None),
    ("16-from-meshlab-to-real-istio", "From meshlab to a real cluster", None),
]


def exists(stem: str) -> bool:
    """Whether the notebook ``stem`` has been written."""
    return (NB_DIR / f"{stem}.ipynb").exists()


def toc(prefix: str = "", lab_prefix: str = "../labs/") -> str:
    """The table of contents as a markdown table (notebook links start with ``prefix``, lab
    links with ``lab_prefix``)."""
    lines = ["| # | Notebook | Lab |", "|---|---|---|"]
    for stem, title, lab in CHAPTERS:
        num = stem[:2]
        name = f"[{title}]({prefix}{stem}.ipynb)" if exists(stem) else f"{title} *(coming)*"
        lab_cell = ""
        if lab and (LAB_DIR / f"{lab}.ipynb").exists():
            lab_cell = f"[{lab}]({lab_prefix}{lab}.ipynb)"
        lines.append(f"| {num} | {name} | {lab_cell} |")
    return "\n".join(lines)


def nav_text(stem: str) -> str:
    """The navigation line for notebook ``stem``."""
    stems = [s for s, _, _ in CHAPTERS if exists(s)]
    i = stems.index(stem)
    titles = {s: t for s, t, _ in CHAPTERS}
    parts = []
    if i > 0:
        parts.append(f"< [{titles[stems[i - 1]]}]({stems[i - 1]}.ipynb)")
    parts.append("[Contents](00-start-here.ipynb#Contents)")
    if i + 1 < len(stems):
        parts.append(f"[{titles[stems[i + 1]]}]({stems[i + 1]}.ipynb) >")
    return f"{NAV}\n" + " | ".join(parts)


def write_nav() -> None:
    """Insert or refresh the first and last navigation cells of every notebook."""
    for stem, _, _ in CHAPTERS:
        path = NB_DIR / f"{stem}.ipynb"
        if not path.exists():
            continue
        nb = nbformat.read(path, as_version=4)
        text = nav_text(stem)
        cells = [c for c in nb.cells if not (c.cell_type == "markdown" and c.source.startswith(NAV))]
        top, bottom = nbformat.v4.new_markdown_cell(text), nbformat.v4.new_markdown_cell(text)
        top["id"], bottom["id"] = "nav-top", "nav-bottom"  # stable ids: rewriting changes nothing else
        nb.cells = [top, *cells, bottom]
        nbformat.write(nb, path)


def run(paths: list[str], timeout: int = 600) -> int:
    """Execute notebooks in place, in their own folder, with this interpreter's kernel."""
    from nbclient import NotebookClient

    failed = 0
    for p in paths:
        path = Path(p)
        nb = nbformat.read(path, as_version=4)
        client = NotebookClient(
            nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(path.parent)}}
        )
        try:
            client.execute()
        except Exception as exc:  # keep the partial outputs for inspection
            print(f"FAILED {path}: {str(exc)[:2000]}", file=sys.stderr)
            failed += 1
        nbformat.write(nb, path)
        print(f"executed {path}")
    return 1 if failed else 0


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("paths", nargs="+")
    r.add_argument("--timeout", type=int, default=600)
    sub.add_parser("nav")
    sub.add_parser("toc")
    args = ap.parse_args(argv)
    if args.cmd == "run":
        return run(args.paths, args.timeout)
    if args.cmd == "nav":
        write_nav()
        return 0
    print(toc("notebooks/", "labs/"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
