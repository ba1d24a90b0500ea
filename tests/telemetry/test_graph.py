"""The service graph: its edges equal the observed calls; which reporter counts; service nodes for
requests no server saw; Kiali's health thresholds; the mTLS lock; windows; layout; drawing."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.offsetbox import AnnotationBbox

from meshlab import Mesh
from meshlab.apps import bookinfo
from meshlab.telemetry.graph import (
    KEEP,
    build_graph,
    counters_from_metrics,
    draw_graph,
    edge_label,
    graph_table,
    health,
    layout,
    node_table,
    service_graph,
    snapshot,
)
from meshlab.telemetry.metrics import DURATION_BUCKETS_MS

PAGE = "/api/v1/products/0"

ABORT_RATINGS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: ratings
spec:
  hosts:
  - ratings
  http:
  - fault:
      abort:
        httpStatus: 500
        percentage:
          value: 50
    route:
    - destination:
        host: ratings
"""

DETAILS_PLAINTEXT = """
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: details
spec:
  selector:
    matchLabels:
      app: details
  mtls:
    mode: DISABLE
"""


def row(reporter: str, src: str, dst: str, n: int, code: str = "200", flags: str = "-", csp: str = "mutual_tls",
        service: str | None = None, ms: float = 3.0) -> dict[str, object]:
    buckets = np.zeros(len(DURATION_BUCKETS_MS) + 1)
    buckets[int(np.searchsorted(DURATION_BUCKETS_MS, ms))] = n
    svc = service or (dst.rsplit("-", 1)[0] if dst != "unknown" else "x")
    return {"reporter": reporter, "source_workload": src, "destination_workload": dst,
            "destination_service_name": svc, "destination_version": "v1", "response_code": code,
            "response_flags": flags, "connection_security_policy": csp if reporter == "destination" else "unknown",
            "requests": float(n), "buckets": buckets}


def frame(*rows: dict[str, object]) -> pd.DataFrame:
    return pd.DataFrame(list(rows), columns=[*KEEP, "requests", "buckets"])


# -- pure ------------------------------------------------------------------------------------------

def test_destination_reporter_counts_and_source_fills_what_no_server_saw() -> None:
    G = build_graph(frame(
        row("source", "curl", "web-v1", 10),                   # also seen by the destination: not counted twice
        row("destination", "curl", "web-v1", 10),
        row("source", "web-v1", "api-v1", 7),
        row("destination", "web-v1", "api-v1", 7),
        row("source", "web-v1", "unknown", 3, "503", "UH", service="db"),    # no endpoint: a service node
        row("source", "web-v1", "unknown", 2, "500", "FI", service="api"),   # injected abort
        row("source", "web-v1", "api-v1", 1, "503", "UF"),                   # connection failure
        row("source", "web-v1", "api-v1", 4, "503", "URX"),                  # retries ran out: tries counted by dest
    ), seconds=2.0)
    assert sorted(G.edges()) == [("curl", "web-v1"), ("web-v1", "api"), ("web-v1", "api-v1"), ("web-v1", "db")]
    assert G.edges["curl", "web-v1"]["requests"] == 10
    assert G.edges["web-v1", "api-v1"]["requests"] == 8 and G.edges["web-v1", "api-v1"]["errors"] == 1
    assert G.edges["web-v1", "db"]["flags"] == {"UH": 3} and G.nodes["db"]["kind"] == "service"
    assert G.edges["web-v1", "api"]["flags"] == {"FI": 2}
    assert G.edges["curl", "web-v1"]["rps"] == 5.0
    assert G.nodes["curl"]["kind"] == "workload" and G.nodes["web-v1"]["app"] == "web"


def test_health_follows_kialis_default_thresholds() -> None:
    assert health(0, 0) == "idle"
    assert health(10_000, 9) == "healthy"       # 5xx below 0.1 %
    assert health(1000, 1) == "degraded"        # 0.1 %
    assert health(100, 9) == "degraded"
    assert health(100, 10) == "failure"         # 10 %
    assert health(100, 0, 9) == "healthy"       # 4xx below 10 %
    assert health(100, 0, 10) == "degraded"
    assert health(100, 0, 20) == "failure"
    G = build_graph(frame(row("destination", "a-v1", "b-v1", 90), row("destination", "a-v1", "b-v1", 10, "503")))
    assert G.edges["a-v1", "b-v1"]["health"] == "failure" and G.nodes["b-v1"]["health"] == "failure"
    assert G.nodes["a-v1"]["health"] == "healthy"


def test_lock_only_when_every_request_is_mutual_tls() -> None:
    G = build_graph(frame(
        row("destination", "a-v1", "b-v1", 5),
        row("destination", "a-v1", "c-v1", 4),
        row("destination", "a-v1", "c-v1", 1, csp="none"),
        row("source", "a-v1", "unknown", 2, "503", "UH", service="d"),
    ))
    assert G.edges["a-v1", "b-v1"]["lock"] and G.edges["a-v1", "b-v1"]["mtls"] == 1.0
    assert not G.edges["a-v1", "c-v1"]["lock"] and G.edges["a-v1", "c-v1"]["mtls"] == 0.8
    assert not G.edges["a-v1", "d"]["lock"] and G.edges["a-v1", "d"]["mtls"] is None
    table = graph_table(G)
    assert list(table["lock"]) == ["🔒", "", ""]


def test_edge_label() -> None:
    data = {"rps": 12.34, "requests": 40, "error_rate": 0.05, "p95_ms": 40.2}
    assert edge_label(data) == "12.3 rps · 5% err · p95 40 ms"
    assert edge_label({**data, "rps": None, "error_rate": 0.004, "p95_ms": 0.46}) == "40 req · 0.4% err · p95 0.5 ms"


def test_layout_is_layered_by_call_depth_and_deterministic() -> None:
    G = build_graph(frame(
        row("destination", "curl", "front-v1", 1), row("destination", "curl", "cart-v1", 1),
        row("destination", "front-v1", "cart-v1", 1), row("destination", "cart-v1", "db-v1", 1),
    ))
    pos = layout(G)
    assert {n: x for n, (x, _) in pos.items()} == {"curl": 0, "front-v1": 1, "cart-v1": 2, "db-v1": 3}
    assert layout(G) == pos
    assert list(node_table(G)["node"]) == ["curl", "front-v1", "cart-v1", "db-v1"]
    cyclic = build_graph(frame(row("destination", "a-v1", "b-v1", 1), row("destination", "b-v1", "a-v1", 1)))
    assert sorted(x for x, _ in layout(cyclic).values()) == [0, 1]


def test_empty_graph_draws() -> None:
    G = build_graph(frame())
    assert G.number_of_nodes() == 0 and graph_table(G).empty
    assert isinstance(draw_graph(G), Figure)


# -- a running mesh ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def faulty_bookinfo():
    mesh = Mesh(seed=0, trace_sampling=None).start()
    try:
        bookinfo.deploy(mesh)
        mesh.apply(ABORT_RATINGS)
        for _ in range(40):
            assert mesh.call("productpage", PAGE).status_code == 200
        yield mesh
    finally:
        mesh.stop()


def test_the_graphs_edges_equal_the_observed_calls(faulty_bookinfo: Mesh) -> None:
    mesh = faulty_bookinfo
    G = service_graph(mesh)
    log = mesh.access_log()
    served = log[log["reporter"] == "destination"]
    calls = served.groupby(["source_workload", "destination_workload"]).size().to_dict()
    aborted = log[(log["reporter"] == "source") & (log["response_flags"] == "FI")]
    calls.update({(w, "ratings"): n for w, n in aborted.groupby("source_workload").size().items()})
    assert {(s, d): a["requests"] for s, d, a in G.edges(data=True)} == calls
    assert {("reviews-v2", "ratings"), ("reviews-v3", "ratings")} <= set(G.edges())
    for src in ("reviews-v2", "reviews-v3"):
        edge = G.edges[src, "ratings"]
        assert edge["errors"] == edge["requests"] > 0 and edge["flags"] == {"FI": edge["requests"]}
        assert edge["health"] == "failure"
    assert G.nodes["ratings"]["kind"] == "service" and G.nodes["ratings-v1"]["kind"] == "workload"
    assert all(G.edges[e]["lock"] for e in G.edges() if G.nodes[e[1]]["kind"] == "workload")
    assert G.graph["seconds"] > 0


def test_counters_from_metrics_match_the_metrics(faulty_bookinfo: Mesh) -> None:
    metrics = faulty_bookinfo.metrics(buckets=True)
    counters = counters_from_metrics(metrics)
    req = metrics[metrics["name"] == "istio_requests_total"]
    assert counters["requests"].sum() == req["value"].sum()
    for _, r in counters.iterrows():
        assert r["buckets"].sum() == r["requests"]


def test_since_a_snapshot_and_windows(faulty_bookinfo: Mesh) -> None:
    mesh = faulty_bookinfo
    before = snapshot(mesh)
    for _ in range(5):
        mesh.call("details", "/details/0")
    G = service_graph(mesh, since=before)
    assert sorted(G.edges()) == [("curl", "details-v1")] and G.edges["curl", "details-v1"]["requests"] == 5
    assert G.graph["seconds"] > 0
    time.sleep(1.5)  # scrapes (every 0.5 s) after the calls: the last half second holds no request
    assert service_graph(mesh, window=0.5).number_of_edges() == 0
    assert service_graph(mesh, window=600).number_of_edges() == service_graph(mesh).number_of_edges()
    with pytest.raises(ValueError):
        service_graph(mesh, window=1, since=before)
    with pytest.raises(ValueError):
        service_graph(mesh, window=0)


def test_plaintext_edge_loses_its_lock_and_the_drawing_shows_locks() -> None:
    with Mesh(seed=0, trace_sampling=None) as mesh:
        bookinfo.deploy(mesh, reviews_versions=("v1",))
        mesh.apply(DETAILS_PLAINTEXT)
        for _ in range(5):
            mesh.call("productpage", PAGE)
        G = service_graph(mesh)
    locks = {(s, d): a["lock"] for s, d, a in G.edges(data=True)}
    assert locks == {("curl", "productpage-v1"): True, ("productpage-v1", "details-v1"): False,
                     ("productpage-v1", "reviews-v1"): True}
    fig = draw_graph(G, title="t")
    padlocks = [a for a in fig.axes[0].artists if isinstance(a, AnnotationBbox)]
    assert len(padlocks) == 2
    labels = {t.get_text() for t in fig.axes[0].texts}
    assert any(" rps · 0% err · p95 " in t for t in labels)
