"""Telemetry: what Istio's sidecars report, and the tools that read it.

============================  ===================================================================
module                        what it teaches
============================  ===================================================================
``metrics``                   Istio's standard metrics per sidecar, Prometheus text format
``accesslog``                 Envoy's access log (default text format and JSON), response flags
``tracing``                   spans per sidecar (OpenTelemetry), W3C and B3 propagation
``prometheus``                a Prometheus in small: scrapes, rate, ``histogram_quantile``
``graph``                     Kiali's service graph, built from the metrics with networkx
``dashboards``                Grafana's Istio dashboards and Jaeger's trace view
============================  ===================================================================

Names are loaded on first use (``from meshlab.telemetry import service_graph``), so importing
meshlab does not import matplotlib or networkx.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "DURATION_BUCKETS_MS",
    "LABELS",
    "SIZE_BUCKETS",
    "TCP_LABELS",
    "TRACE_HEADERS",
    "AccessLog",
    "AccessLogEntry",
    "IstioMetrics",
    "Prometheus",
    "Tracing",
    "connection_stats",
    "dashboard_frame",
    "dashboard_panels",
    "draw_graph",
    "graph_table",
    "histogram_quantile",
    "mesh_dashboard",
    "mesh_table",
    "node_table",
    "service_dashboard",
    "service_graph",
    "snapshot",
    "trace_list",
    "trace_tree",
    "trace_waterfall",
    "workload_dashboard",
]

_WHERE = {
    "DURATION_BUCKETS_MS": "metrics", "LABELS": "metrics", "SIZE_BUCKETS": "metrics", "TCP_LABELS": "metrics",
    "IstioMetrics": "metrics", "connection_stats": "metrics",
    "AccessLog": "accesslog", "AccessLogEntry": "accesslog",
    "TRACE_HEADERS": "tracing", "Tracing": "tracing",
    "Prometheus": "prometheus", "histogram_quantile": "prometheus",
    "draw_graph": "graph", "graph_table": "graph", "node_table": "graph", "service_graph": "graph", "snapshot": "graph",
    "dashboard_frame": "dashboards", "dashboard_panels": "dashboards", "mesh_dashboard": "dashboards",
    "mesh_table": "dashboards", "service_dashboard": "dashboards", "trace_list": "dashboards",
    "trace_tree": "dashboards", "trace_waterfall": "dashboards", "workload_dashboard": "dashboards",
}


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'meshlab.telemetry' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
