"""Grafana-style dashboards (mesh, service, workload) from the built-in Prometheus, the Istio Mesh
Dashboard's table, and the exports of ``meshlab.telemetry``."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from matplotlib.figure import Figure

import meshlab.telemetry as telemetry
from meshlab import Mesh, Work
from meshlab.apps import bookinfo
from meshlab.telemetry.dashboards import (
    dashboard_frame,
    dashboard_panels,
    mesh_dashboard,
    mesh_table,
    service_dashboard,
    workload_dashboard,
)


@pytest.fixture(scope="module")
def mesh():
    m = Mesh(seed=0, trace_sampling=None, scrape_interval=0.1).start()
    try:
        bookinfo.deploy(m)
        m.set_work("reviews-v3-0", Work(error_rate=0.5))
        for _ in range(60):
            m.call("productpage", "/api/v1/products/0")
            time.sleep(0.005)
        time.sleep(0.2)
        yield m
    finally:
        m.stop()


def titles(fig: Figure) -> list[str]:
    return [ax.get_title() for ax in fig.axes]


def test_dashboard_frame_filters_like_a_promql_selector(mesh: Mesh) -> None:
    df = dashboard_frame(mesh, window=0.5, by="source_workload", where={"destination_service_name": "reviews"})
    assert set(df["source_workload"]) == {"productpage-v1"}
    by_version = dashboard_frame(mesh, window=0.5, by="destination_workload", where={"destination_service_name": "reviews"})
    assert set(by_version["destination_workload"]) == {"reviews-v1", "reviews-v2", "reviews-v3"}
    v3 = by_version[by_version["destination_workload"] == "reviews-v3"]
    assert v3["error_rate"].max() > 0


def test_mesh_table(mesh: Mesh) -> None:
    table = mesh_table(mesh).set_index("destination_workload")
    assert list(table.columns) == ["requests", "rps", "success_rate", "p50_ms", "p90_ms", "p99_ms"]
    assert table.loc["productpage-v1", "requests"] == 60
    assert table.loc["details-v1", "success_rate"] == 1.0
    assert table.loc["reviews-v3", "success_rate"] < 1.0


def test_dashboards_draw_rate_errors_duration(mesh: Mesh) -> None:
    fig = mesh_dashboard(mesh, window=0.5)
    assert isinstance(fig, Figure)
    assert titles(fig) == ["Request volume", "Success rate (non-5xx)", "Request duration (p99)"]
    assert "Istio Mesh Dashboard" in fig.get_suptitle()
    volume = fig.axes[0]
    assert {line.get_label() for line in volume.get_lines()} == {
        "productpage-v1", "details-v1", "reviews-v1", "reviews-v2", "reviews-v3", "ratings-v1"}
    assert len({line.get_color() for line in volume.get_lines()}) == 6  # one colour per workload

    fig = service_dashboard(mesh, "reviews", window=0.5)
    assert titles(fig) == ["Incoming requests by source", "Success rate by source", "Request duration"]
    assert [line.get_label() for line in fig.axes[2].get_lines()] == ["p50", "p90", "p99"]
    assert "reporter=destination" in fig.get_suptitle()

    fig = workload_dashboard(mesh, "reviews-v2", window=0.5)
    assert len(fig.axes) == 6
    assert titles(fig)[0] == "Inbound: request volume" and titles(fig)[3] == "Outbound: request volume"
    outbound = {line.get_label() for line in fig.axes[3].get_lines()}
    assert outbound == {"ratings"}


def test_dashboard_panels_without_data() -> None:
    import pandas as pd

    empty = pd.DataFrame(columns=["t", "destination_workload", "rps", "error_rate", "p50_ms", "p90_ms", "p99_ms"])
    fig = dashboard_panels(empty, "destination_workload", "nothing yet")
    assert fig.axes[0].texts[0].get_text() == "no data yet"


def test_exports_resolve_and_stay_lazy() -> None:
    for name in telemetry.__all__:
        assert getattr(telemetry, name) is not None, name
    assert set(telemetry.__all__) <= set(dir(telemetry))
    with pytest.raises(AttributeError):
        telemetry.not_a_name  # noqa: B018
    code = ("import sys, meshlab; from meshlab import Mesh; "
            "print('matplotlib' in sys.modules, 'networkx' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]
