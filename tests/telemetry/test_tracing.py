"""Tracing: sidecars write spans and propagate W3C traceparent (and accept B3); traces are
connected across three hops when the apps forward the headers and split when one does not;
sampling; ids are seeded; Jaeger-like views (trace list, tree, waterfall)."""

from __future__ import annotations

import pandas as pd
import pytest
from fastapi import FastAPI, Request
from matplotlib.figure import Figure

import meshlab
from meshlab import Mesh, MeshError
from meshlab.proxy.http1 import Headers
from meshlab.telemetry.dashboards import trace_list, trace_tree, trace_waterfall
from meshlab.telemetry.tracing import extract_context

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"


def hop(next_service: str | None = None, forward: bool = True) -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def serve(request: Request) -> dict[str, object]:
        if next_service is None:
            return {"last": True}
        headers = meshlab.propagation_headers(request) if forward else {}
        r = await meshlab.client().get(f"http://{next_service}/", headers=headers)
        return {"next": r.status_code}

    return app


def chain(mesh: Mesh, forward_at_b: bool = True) -> None:
    mesh.deploy("a", hop("b"))
    mesh.deploy("b", hop("c", forward=forward_at_b))
    mesh.deploy("c", hop())


def connected(spans: pd.DataFrame) -> bool:
    """Every span of the trace has its parent in the trace, except exactly one root."""
    ids = set(spans["span_id"])
    return (~spans["parent_id"].isin(ids)).sum() == 1


def test_three_hops_forwarded_are_one_connected_trace() -> None:
    with Mesh(seed=0, trace_sampling=100) as mesh:
        chain(mesh)
        assert mesh.call("a", "/").status_code == 200
        spans = mesh.traces()
    assert spans["trace_id"].nunique() == 1
    assert len(spans) == 6 and connected(spans)
    tree = trace_tree(spans)
    assert list(tree["depth"]) == [0, 1, 2, 3, 4, 5]
    assert list(tree["kind"]) == ["client", "server"] * 3
    assert list(tree["workload"]) == ["curl", "a-v1", "a-v1", "b-v1", "b-v1", "c-v1"]
    assert list(tree["service"]) == ["curl", "a", "a", "b", "b", "c"]
    assert spans["request_id"].nunique() == 1  # x-request-id forwarded with the trace headers


def test_trace_splits_when_an_app_does_not_forward_headers() -> None:
    with Mesh(seed=0, trace_sampling=100) as mesh:
        chain(mesh, forward_at_b=False)
        assert mesh.call("a", "/").status_code == 200
        spans = mesh.traces()
    traces = trace_list(spans)
    assert sorted(traces["spans"]) == [2, 4]
    for tid in traces["trace_id"]:
        assert connected(spans[spans["trace_id"] == tid])
    second = trace_tree(spans, traces.loc[traces["spans"] == 2, "trace_id"].iloc[0])
    assert list(second["workload"]) == ["b-v1", "c-v1"] and second["kind"].iloc[0] == "client"


def test_trace_and_span_ids_are_seeded() -> None:
    ids = []
    for _ in range(2):
        with Mesh(seed=7, trace_sampling=100) as mesh:
            chain(mesh)
            mesh.call("a", "/")
            ids.append(sorted(mesh.traces()["span_id"]))
    assert ids[0] == ids[1]


@pytest.mark.parametrize("headers", [
    pytest.param({"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01"}, id="w3c"),
    pytest.param({"x-b3-traceid": TRACE_ID, "x-b3-spanid": SPAN_ID, "x-b3-sampled": "1"}, id="b3-multi"),
    pytest.param({"b3": f"{TRACE_ID}-{SPAN_ID}-1"}, id="b3-single"),
])
def test_incoming_context_is_continued(headers: dict[str, str]) -> None:
    with Mesh(seed=0, trace_sampling=100) as mesh:
        chain(mesh)
        mesh.call("a", "/", headers=headers)
        spans = mesh.traces()
    assert set(spans["trace_id"]) == {TRACE_ID}
    root = spans[~spans["parent_id"].isin(set(spans["span_id"]))]
    assert list(root["parent_id"]) == [SPAN_ID]  # the caller's span is the parent of the first sidecar span


def test_sidecars_send_w3c_and_b3() -> None:
    seen: dict[str, str] = {}
    app = FastAPI()

    @app.get("/")
    async def echo(request: Request) -> dict[str, str]:
        seen.update(request.headers)
        return {}

    with Mesh(seed=0, trace_sampling=100) as mesh:
        mesh.deploy("echo", app)
        mesh.call("echo", "/")
        spans = mesh.traces()
    server = spans[spans["kind"] == "server"].iloc[0]
    assert seen["traceparent"] == f"00-{server['trace_id']}-{server['span_id']}-01"
    assert (seen["x-b3-traceid"], seen["x-b3-spanid"], seen["x-b3-sampled"]) == (
        server["trace_id"], server["span_id"], "1")


def test_extract_context_prefers_w3c_and_rejects_garbage() -> None:
    both = Headers({"traceparent": f"00-{TRACE_ID}-{SPAN_ID}-00", "x-b3-traceid": "1" * 32, "x-b3-spanid": "2" * 16})
    ctx = extract_context(both)
    assert ctx is not None and f"{ctx.trace_id:032x}" == TRACE_ID and not ctx.trace_flags.sampled
    assert extract_context(Headers({"traceparent": "garbage"})) is None
    assert extract_context(Headers({"b3": "zz-yy"})) is None
    assert extract_context(Headers({})) is None


def test_sampling_percentage_and_tracing_off() -> None:
    with Mesh(seed=0, trace_sampling=0) as mesh:
        chain(mesh)
        for _ in range(5):
            mesh.call("a", "/")
        assert mesh.traces().empty  # nothing sampled: no span recorded anywhere
    with Mesh(seed=0, trace_sampling=50) as mesh:
        chain(mesh)
        for _ in range(40):
            mesh.call("a", "/")
        traces = trace_list(mesh.traces())
    assert 5 < len(traces) < 35 and set(traces["spans"]) == {6}  # sampled traces are whole
    with Mesh(seed=0, trace_sampling=None) as mesh:
        with pytest.raises(MeshError, match="tracing is off"):
            mesh.traces()


def test_trace_views() -> None:
    with Mesh(seed=0, trace_sampling=100) as mesh:
        chain(mesh)
        mesh.call("a", "/")
        mesh.call("a", "/")
        spans = mesh.traces()
    traces = trace_list(spans)
    assert list(traces.columns) == ["trace_id", "root", "spans", "services", "errors", "start_ms", "duration_ms",
                                    "request_id"]
    assert list(traces["root"]) == ["curl: a/"] * 2 and list(traces["services"]) == [4, 4]
    assert (traces["errors"] == 0).all() and traces["start_ms"].is_monotonic_increasing
    fig = trace_waterfall(spans, traces["trace_id"].iloc[0])
    assert isinstance(fig, Figure)
    ax = fig.axes[0]
    assert [t.get_text().strip() for t in ax.get_yticklabels()] == [
        "curl: a/", "a: a/", "a: b/", "b: b/", "b: c/", "c: c/"]
    with pytest.raises(ValueError, match="no trace"):
        trace_tree(spans, "0" * 32)


def test_stop_releases_the_tracer_and_its_spans() -> None:
    """Mesh.stop() shuts the tracer down: nothing (such as OpenTelemetry's atexit hook) keeps a
    stopped mesh's provider and its spans alive."""
    import gc
    import weakref

    mesh = Mesh(seed=0, trace_sampling=100).start()
    try:
        mesh.deploy("c", hop())
        assert mesh.call("c", "/").status_code == 200
        assert mesh.tracing is not None and mesh.tracing.exporter.finished
        provider = weakref.ref(mesh.tracing.provider)
    finally:
        mesh.stop()
    gc.collect()
    assert provider() is None
