"""Every plot returns a Figure with a title, labelled axes and a legend, from small synthetic frames."""

from __future__ import annotations

import io

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from meshlab import plots  # noqa: E402


@pytest.fixture
def requests() -> pd.DataFrame:
    """Two features over 2 s; cart fails (503) between 0.5 s and 1.0 s."""
    t = np.round(np.arange(0, 2, 0.05), 3)
    rows = []
    for feature, latency in (("listing", 20.0), ("cart", 60.0)):
        for i, ti in enumerate(t):
            status = 503 if feature == "cart" and 0.5 <= ti < 1.0 else 200
            rows.append({"t": ti, "feature": feature, "service": feature, "status": status,
                         "latency_ms": latency + i % 5, "scenario": "a" if ti < 1 else "b",
                         "generation": "old" if ti < 1 else "new"})
    return pd.DataFrame(rows)


def check(fig: Figure, *, legend: bool = True) -> None:
    assert isinstance(fig, Figure)
    axes = [ax for ax in fig.axes if ax.get_visible()]
    assert axes
    assert any(ax.get_title() for ax in axes) or fig._suptitle is not None
    assert all(ax.get_xlabel() for ax in axes)
    assert any(ax.get_ylabel() for ax in axes)
    if legend:
        assert any(ax.get_legend() is not None for ax in axes)
    fig.savefig(io.BytesIO(), format="png")  # renders without error
    w, h = fig.get_size_inches()
    assert w <= 8.5 and h <= 8


def test_status_class() -> None:
    assert list(plots.status_class([200, 302, 404, 503, 0])) == ["2xx", "3xx", "4xx", "5xx", "failed"]


def test_availability_table(requests: pd.DataFrame) -> None:
    table = plots.availability_table(requests, "feature", bin_s=0.5)
    cart = table[table.feature == "cart"].set_index("t")["availability"]
    assert cart.loc[0.0] == 1.0 and cart.loc[0.5] == 0.0 and cart.loc[1.5] == 1.0
    assert set(table.columns) == {"t", "feature", "requests", "availability"}


def test_availability_one_run_and_side_by_side(requests: pd.DataFrame) -> None:
    check(plots.availability(requests, spans=[(0.5, 1.0, "crash")]))
    fig = plots.availability({"monolith": requests, "microservices": requests},
                             spans={"monolith": [(0.5, 1.0, "crash")]})
    check(fig)
    assert [ax.get_title() for ax in fig.axes] == ["monolith", "microservices"]
    assert fig.axes[0].get_ylabel() == "requests without 5xx (%)"


def test_traffic(requests: pd.DataFrame) -> None:
    fig = plots.traffic(requests, by="feature")
    check(fig)
    assert {ax.get_title() for ax in fig.axes if ax.get_visible()} == {"listing", "cart"}
    assert fig.axes[0].get_ylabel() == "requests/s"


def test_throughput_latency_timeline(requests: pd.DataFrame) -> None:
    check(plots.throughput(requests, by="scenario"))
    fig = plots.latency_percentiles(requests, by="feature")
    check(fig)
    assert fig.axes[0].get_ylabel() == "latency (ms)"
    check(plots.request_timeline(requests, y="feature", hue="generation"))


def test_replicas_and_cost() -> None:
    history = pd.DataFrame({"t": [0.0, 0.25, 0.5, 0.0, 0.5], "service": ["cart"] * 3 + ["shop"] * 2,
                            "replicas": [1, 3, 5, 1, 1]})
    fig = plots.replicas(history)
    check(fig)
    assert fig.axes[0].get_ylabel() == "replicas"
    costs = pd.DataFrame({"scenario": ["monolith x3", "microservices"], "cost_mb": [4128.0, 2016.0],
                          "throughput_rps": [250.0, 250.0]})
    fig = plots.cost_vs_throughput(costs)
    check(fig, legend=False)
    assert "MB" in fig.axes[0].get_xlabel()


def test_request_waterfall() -> None:
    log = pd.DataFrame({
        "start_time": [100.000, 100.001, 100.002, 100.003],
        "reporter": ["source", "destination", "source", "destination"],
        "pod": ["curl", "front-v1-0", "front-v1-0", "cart-v1-0"],
        "method": ["GET"] * 4, "path": ["/", "/", "/items", "/items"],
        "destination_service": ["front.default.svc.cluster.local"] * 2 + ["cart.default.svc.cluster.local"] * 2,
        "duration_ms": [9.0, 8.0, 3.0, 2.0], "response_code": [200] * 4,
    })
    fig = plots.request_waterfall(log)
    check(fig)
    labels = [t.get_text() for t in fig.axes[0].get_yticklabels()]
    assert labels[0] == "curl out: GET front/" and labels[-1] == "cart-v1-0 in: GET cart/items"


def test_colors_are_stable() -> None:
    assert plots.color("cart") == plots.color("cart")
    assert plots.color("cart") != plots.color("listing")
    assert plots.color("some-new-service") == plots.color("some-new-service")


def test_figures_show_themselves_as_png(requests: pd.DataFrame) -> None:
    fig = plots.availability(requests)
    assert isinstance(fig, plots.PlotFigure)
    assert fig._repr_png_().startswith(b"\x89PNG")
