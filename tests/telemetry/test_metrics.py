"""Istio's standard metrics: names and labels as Istio names them, counts that reconcile with what
clients sent, an exposition that prometheus_client's parser reads, Envoy-style counters per sidecar.

Bookinfo runs in a seeded mesh; requests are sent one after the other, so counts are exact.
"""

from __future__ import annotations

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from meshlab import Mesh
from meshlab.apps import bookinfo
from meshlab.telemetry.metrics import (
    DURATION_BUCKETS_MS,
    LABELS,
    SIZE_BUCKETS,
    TCP_LABELS,
    IstioMetrics,
    connection_stats,
)

N = 30
PAGE = "/api/v1/products/0"

#: The labels of istio_requests_total in Istio's metrics reference (telemetry v2).
ISTIO_LABELS = {
    "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app", "source_version",
    "destination_workload", "destination_workload_namespace", "destination_principal", "destination_app",
    "destination_version", "destination_service", "destination_service_name", "destination_service_namespace",
    "request_protocol", "response_code", "grpc_response_status", "response_flags", "connection_security_policy",
}


@pytest.fixture(scope="module")
def bookinfo_mesh():
    mesh = Mesh(seed=0, trace_sampling=None).start()
    try:
        bookinfo.deploy(mesh)
        for _ in range(N):
            assert mesh.call("productpage", PAGE).status_code == 200
        yield mesh
    finally:
        mesh.stop()


def labels(**over: str) -> tuple[str, ...]:
    base = dict.fromkeys(LABELS, "x")
    base.update(reporter="destination", response_code="200", response_flags="-")
    base.update(over)
    return tuple(base[k] for k in LABELS)


# -- the collector, without a mesh ---------------------------------------------------------------

def test_labels_are_istios() -> None:
    assert set(LABELS) == ISTIO_LABELS
    assert set(TCP_LABELS) == ISTIO_LABELS - {"response_code", "grpc_response_status"}


def test_buckets_are_istios_defaults() -> None:
    assert DURATION_BUCKETS_MS[:8] == (0.5, 1, 5, 10, 25, 50, 100, 250)
    assert DURATION_BUCKETS_MS[-1] == 3600000
    assert SIZE_BUCKETS == tuple(10 ** i for i in range(10))


def test_exposition_parses_and_counts_every_request() -> None:
    m = IstioMetrics()
    for ms in (0.3, 0.5, 3.0, 40.0, 400.0):
        m.record(labels(), ms, 10, 2000)
    m.record(labels(response_code="503", response_flags="UF"), 2.0, 0, 91)
    families = {f.name: f for f in text_string_to_metric_families(m.prometheus_text().decode())}
    assert set(families) == {"istio_requests", "istio_request_duration_milliseconds", "istio_request_bytes",
                             "istio_response_bytes"}
    assert families["istio_requests"].type == "counter"
    for name in ("istio_request_duration_milliseconds", "istio_request_bytes", "istio_response_bytes"):
        assert families[name].type == "histogram"
    totals = {s.labels["response_code"]: s.value for s in families["istio_requests"].samples
              if s.name == "istio_requests_total"}
    assert totals == {"200": 5, "503": 1}
    ok = {s.labels["le"]: s.value for s in families["istio_request_duration_milliseconds"].samples
          if s.name.endswith("_bucket") and s.labels["response_code"] == "200"}
    # a value equal to a bound falls in that bucket (le = "less or equal"); counts are cumulative
    assert (ok["0.5"], ok["1"], ok["5"], ok["50"], ok["500"], ok["+Inf"]) == (2, 2, 3, 4, 5, 5)
    sample = next(s for s in families["istio_requests"].samples if s.labels["response_code"] == "503")
    assert set(sample.labels) == ISTIO_LABELS and sample.labels["response_flags"] == "UF"


def test_rows_have_the_metric_names_and_labels() -> None:
    m = IstioMetrics()
    m.record(labels(), 7.0, 1, 2)
    names = {r["name"] for r in m.rows()}
    assert names == {"istio_requests_total", "istio_request_duration_milliseconds_sum",
                     "istio_request_duration_milliseconds_count", "istio_request_bytes_sum",
                     "istio_request_bytes_count", "istio_response_bytes_sum", "istio_response_bytes_count"}
    buckets = [r for r in m.rows(buckets=True) if r["name"] == "istio_request_duration_milliseconds_bucket"]
    assert [r["le"] for r in buckets][-1] == "+Inf" and len(buckets) == len(DURATION_BUCKETS_MS) + 1


def test_tcp_connection_counters() -> None:
    m = IstioMetrics()
    assert "istio_tcp" not in m.prometheus_text().decode()  # no family before a TCP connection
    tcp = dict.fromkeys(TCP_LABELS, "x")
    tcp.update(reporter="destination", request_protocol="tcp")
    key = tuple(tcp[k] for k in TCP_LABELS)
    m.tcp_connection(key, "open")
    m.tcp_connection(key, "open")
    m.tcp_connection(key, "close")
    with pytest.raises(ValueError):
        m.tcp_connection(key, "reset")
    families = {f.name: f for f in text_string_to_metric_families(m.prometheus_text().decode())}
    opened = families["istio_tcp_connections_opened"].samples[0]
    closed = families["istio_tcp_connections_closed"].samples[0]
    assert (opened.name, opened.value, closed.name, closed.value) == (
        "istio_tcp_connections_opened_total", 2, "istio_tcp_connections_closed_total", 1)
    assert set(opened.labels) == set(TCP_LABELS) and opened.labels["request_protocol"] == "tcp"
    rows = {r["name"]: r["value"] for r in m.rows()}
    assert rows == {"istio_tcp_connections_opened_total": 2, "istio_tcp_connections_closed_total": 1}


# -- a running mesh ----------------------------------------------------------------------------------

def test_metric_names_and_labels_as_istio_names_them(bookinfo_mesh: Mesh) -> None:
    df = bookinfo_mesh.metrics(buckets=True)
    assert set(df["name"]) == {
        "istio_requests_total",
        *(f"{m}_{s}" for m in ("istio_request_duration_milliseconds", "istio_request_bytes",
                               "istio_response_bytes") for s in ("bucket", "sum", "count"))}
    assert ISTIO_LABELS <= set(df.columns)
    req = df[df["name"] == "istio_requests_total"]
    assert set(req["reporter"]) == {"source", "destination"}
    assert set(req["request_protocol"]) == {"http"}
    assert set(req.loc[req["reporter"] == "source", "connection_security_policy"]) == {"unknown"}
    assert set(req.loc[req["reporter"] == "destination", "connection_security_policy"]) == {"mutual_tls"}
    dest = req[req["reporter"] == "destination"]
    assert (dest["destination_principal"].str.startswith("spiffe://cluster.local/ns/default/sa/bookinfo-")).all()
    assert set(dest["destination_service"]) == {f"{s}.default.svc.cluster.local"
                                                for s in ("productpage", "details", "reviews", "ratings")}


def test_counts_reconcile_with_what_clients_sent(bookinfo_mesh: Mesh) -> None:
    req = bookinfo_mesh.metrics()
    req = req[req["name"] == "istio_requests_total"]

    def total(reporter: str, **where: str) -> float:
        sel = req[req["reporter"] == reporter]
        for k, v in where.items():
            sel = sel[sel[k] == v]
        return float(sel["value"].sum())

    # every request counted once by each side
    assert total("source", source_workload="curl") == N == total("destination", destination_workload="productpage-v1")
    assert total("source", source_workload="productpage-v1", destination_service_name="details") == N
    assert total("destination", destination_service_name="reviews") == N
    ratings_callers = total("destination", destination_service_name="reviews", destination_version="v2") + total(
        "destination", destination_service_name="reviews", destination_version="v3")
    assert total("destination", destination_workload="ratings-v1") == ratings_callers
    assert total("source", destination_service_name="ratings") == ratings_callers
    # the histograms count the same requests
    counts = bookinfo_mesh.metrics()
    counts = counts[counts["name"] == "istio_request_duration_milliseconds_count"]
    assert counts["value"].sum() == req["value"].sum()


def test_each_sidecar_exposes_prometheus_text_on_its_admin_port(bookinfo_mesh: Mesh) -> None:
    df = bookinfo_mesh.metrics()
    for pod in ("productpage-v1-0", "ratings-v1-0"):
        sc = bookinfo_mesh.sidecar(pod)
        r = httpx.get(sc.admin_url + "/stats/prometheus")
        assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
        families = {f.name: f for f in text_string_to_metric_families(r.text)}
        exposed = sum(s.value for s in families["istio_requests"].samples if s.name == "istio_requests_total")
        mine = df[(df["pod"] == pod) & (df["name"] == "istio_requests_total")]["value"].sum()
        assert exposed == mine > 0


def test_envoy_counters_per_sidecar(bookinfo_mesh: Mesh) -> None:
    stats = bookinfo_mesh.stats(pod="curl")
    by = dict(zip(stats["stat"], stats["value"], strict=True))
    cluster = "cluster.outbound|9080||productpage.default.svc.cluster.local"
    assert by[f"{cluster}.upstream_rq_total"] == N
    assert by[f"{cluster}.circuit_breakers.default.rq_pending_open"] == 0
    assert by["outbound.rq_total"] == N and by["outbound.rq_2xx"] == N


def test_connection_stats(bookinfo_mesh: Mesh) -> None:
    sc = bookinfo_mesh.sidecar("productpage")

    async def read() -> dict[str, int]:
        return connection_stats(sc)

    stats = bookinfo_mesh.runtime.run(read())
    cluster = "cluster.outbound|9080||details.default.svc.cluster.local"
    assert stats[f"{cluster}.upstream_cx_total"] >= 1  # keep-alive: far fewer connections than requests
    assert stats[f"{cluster}.upstream_cx_total"] < N
    assert 0 <= stats[f"{cluster}.upstream_cx_active"] <= stats[f"{cluster}.upstream_cx_total"]
    assert stats["listener.0.0.0.0_15006.downstream_cx_active"] >= 0
    assert "listener.0.0.0.0_15001.downstream_cx_active" in stats
    assert "listener.0.0.0.0_15006.downstream_cx_total" not in stats or hasattr(sc.inbound, "accepted")
