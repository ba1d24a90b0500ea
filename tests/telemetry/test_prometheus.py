"""The built-in Prometheus: histogram_quantile as Prometheus computes it, scrapes that agree with
the sidecars' counters, label filters, rate / error rate / percentile queries."""

from __future__ import annotations

import math
import time

import pytest

from meshlab import Mesh
from meshlab.apps.httpbin import make_app
from meshlab.telemetry.prometheus import histogram_quantile

INF = float("inf")

ABORT = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - match: [{uri: {prefix: /status}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 25}}}
    route: [{destination: {host: httpbin}}]
  - route: [{destination: {host: httpbin}}]
"""


@pytest.mark.parametrize(("q", "buckets", "expected"), [
    (0.5, [(1, 0), (5, 10), (INF, 10)], 3.0),       # linear inside (1, 5]
    (0.9, [(10, 50), (25, 100), (INF, 100)], 22.0),  # rank 90 in (10, 25]: 10 + 15 * 40/50
    (0.5, [(0.5, 10), (1, 10), (INF, 10)], 0.25),   # the first bucket starts at 0
    (0.99, [(100, 90), (INF, 100)], 100.0),          # in the +Inf bucket: the highest finite bound
    (0.5, [(5, 0), (INF, 0)], math.nan),             # no data
    (0.5, [], math.nan),
])
def test_histogram_quantile(q: float, buckets: list[tuple[float, float]], expected: float) -> None:
    got = histogram_quantile(q, buckets)
    assert (math.isnan(got) and math.isnan(expected)) or got == pytest.approx(expected)


def test_scrapes_agree_with_the_sidecars_and_queries_filter() -> None:
    with Mesh(seed=0, trace_sampling=None, scrape_interval=0.1) as mesh:
        mesh.deploy("httpbin", make_app())
        mesh.apply(ABORT)
        for i in range(100):  # spread over several scrapes, so rates have two samples to compare
            mesh.call("httpbin", "/status/200" if i % 5 else "/get")
            time.sleep(0.005)
        time.sleep(0.25)
        source = mesh.service_summary(by="destination_service_name", reporter="source").set_index(
            "destination_service_name")
        dest = mesh.service_summary(by="destination_workload").set_index("destination_workload")
        m = mesh.metrics()
        m = m[m["name"] == "istio_requests_total"]
        aborted = m[(m["reporter"] == "source") & (m["response_flags"] == "FI")]["value"].sum()
        assert source.loc["httpbin", "requests"] == 100
        assert source.loc["httpbin", "error_rate"] == pytest.approx(aborted / 100)
        assert 5 <= aborted <= 40
        assert dest.loc["httpbin-v1", "requests"] == 100 - aborted  # aborts never reach the server
        assert dest.loc["httpbin-v1", "error_rate"] == 0
        assert 0 < dest.loc["httpbin-v1", "p50_ms"] <= dest.loc["httpbin-v1", "p99_ms"]

        prom = mesh.prometheus
        only_curl = prom.summary(by="source_workload", reporter="source", where={"destination_service_name": "httpbin"})
        assert list(only_curl["source_workload"]) == ["curl"] and only_curl["requests"].iloc[0] == 100
        nothing = prom.summary(where={"destination_service_name": "nope"})
        assert nothing.empty
        with pytest.raises(ValueError, match="not kept"):
            prom.series(where={"source_principal": "x"})

        over_time = mesh.dashboard(window=1.0, by="destination_service_name", reporter="source")
        assert list(over_time.columns) == ["t", "destination_service_name", "rps", "error_rate", "p50_ms", "p90_ms",
                                           "p99_ms"]
        assert (over_time["rps"] >= 0).all() and over_time["rps"].max() > 0
        assert over_time["t"].is_monotonic_increasing
