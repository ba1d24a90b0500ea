"""Integration: a mesh of FastAPI services and sidecars on loopback, driven through the public API.

The main scenario is a call chain ``a -> b -> c`` (two replicas each): ``a`` and ``b`` call the
next service with ``meshlab.client()`` and forward ``meshlab.propagation_headers``; a failure
further down is passed back up as the status code, so the caller sees the whole chain's fate.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future

import httpx
import pandas as pd
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from prometheus_client.parser import text_string_to_metric_families

import meshlab
from meshlab import LoadRun, Mesh, MeshError, Work
from meshlab.load import LoadProgress

CHAIN = {"a": "b", "b": "c", "c": None}


def make_app(name: str, downstream: str | None = None, propagate: bool = True) -> FastAPI:
    app = FastAPI()

    @app.get("/")
    async def root(request: Request):  # type: ignore[no-untyped-def]
        me = meshlab.current_replica()
        assert me is not None
        out = {"service": name, "pod": me.name, "version": me.version,
               "request_id": request.headers.get("x-request-id")}
        if downstream is not None:
            headers = meshlab.propagation_headers(request) if propagate else {}
            r = await meshlab.client().get(f"http://{downstream}/", headers=headers)
            if r.status_code != 200:
                return PlainTextResponse(f"{name}: {downstream} answered {r.status_code}: {r.text}",
                                         status_code=r.status_code)
            out["next"] = r.json()
        return out

    return app


def deploy_chain(mesh: Mesh, replicas: int = 2) -> None:
    for name in ("c", "b", "a"):
        mesh.deploy(name, make_app(name, CHAIN[name]), replicas=replicas)


def calls(mesh: Mesh, service: str, n: int, **kw) -> list[httpx.Response]:  # type: ignore[no-untyped-def]
    return [mesh.call(service, "/", **kw) for _ in range(n)]


def requests_total(mesh: Mesh) -> pd.DataFrame:
    m = mesh.metrics()
    return m[m["name"] == "istio_requests_total"]


def hops(m: pd.DataFrame) -> dict[tuple[str, ...], int]:
    """istio_requests_total summed by (reporter, source, destination, version, code, flags)."""
    keys = ["reporter", "source_workload", "destination_workload", "destination_version", "response_code",
            "response_flags"]
    return {k: int(v) for k, v in m.groupby(keys)["value"].sum().items()}


def wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.02)


# -- calls across the mesh ---------------------------------------------------------------------


def test_call_chain_through_sidecars(mesh: Mesh) -> None:
    deploy_chain(mesh)
    assert mesh.services == ["a", "b", "c"]
    for r in calls(mesh, "a", 6):
        assert r.status_code == 200
        body = r.json()
        assert [body["service"], body["next"]["service"], body["next"]["next"]["service"]] == ["a", "b", "c"]
        assert body["pod"].startswith("a-v1-") and body["next"]["next"]["pod"].startswith("c-v1-")
        assert r.headers["x-meshlab-upstream"] == body["pod"]
        # the id the client's sidecar gave the request reached every app of the chain
        ids = {body["request_id"], body["next"]["request_id"], body["next"]["next"]["request_id"]}
        assert len(ids) == 1 and None not in ids
    # two replicas each: both served (seeded, so this is reproducible)
    pods = {r.json()["next"]["pod"] for r in calls(mesh, "a", 20)}
    assert pods == {"b-v1-0", "b-v1-1"}


def test_short_and_long_service_names(mesh: Mesh) -> None:
    mesh.deploy("c", make_app("c"))
    for host in ("c", "c.default", "c.default.svc", "c.default.svc.cluster.local", "c:80"):
        assert mesh.call(host, "/").json()["service"] == "c"


def test_connection_handling_is_hop_by_hop(mesh: Mesh) -> None:
    """HEAD keeps the upstream's Content-Length; an app closing its connection does not make the
    sidecars close theirs (connection management is per hop, as in Envoy)."""
    app = FastAPI()

    @app.api_route("/", methods=["GET", "HEAD"])
    async def root() -> PlainTextResponse:
        return PlainTextResponse("twelve bytes")

    @app.get("/close")
    async def close() -> PlainTextResponse:
        return PlainTextResponse("bye", headers={"connection": "close"})  # uvicorn then closes

    mesh.deploy("h", app)
    assert mesh.call("h", "/").text == "twelve bytes"
    for _ in range(3):
        r = mesh.call("h", "/close")
        assert r.text == "bye" and "connection" not in r.headers
    assert mesh.call("h", "/").text == "twelve bytes"
    # the caller's keep-alive connection to its sidecar survived: one connection in all
    assert sum(pool.opened for pool in mesh._pools.pools.values()) == 1
    r = mesh.call("h", "/", method="HEAD")
    assert r.status_code == 200 and r.content == b"" and r.headers["content-length"] == "12"
    assert "connection" not in r.headers


def test_access_log_both_reporters_and_request_id_across_hops(mesh: Mesh) -> None:
    deploy_chain(mesh)
    r = mesh.call("a", "/", headers={"x-request-id": "req-test-1"})
    assert r.status_code == 200
    log = mesh.access_log()
    mine = log[log["request_id"] == "req-test-1"]
    got = sorted(zip(mine["reporter"], mine["source_workload"], mine["destination_workload"], strict=True))
    assert got == sorted([(rep, src, dst) for rep in ("source", "destination")
                          for src, dst in (("curl", "a-v1"), ("a-v1", "b-v1"), ("b-v1", "c-v1"))])
    assert set(mine["response_code"]) == {200} and set(mine["response_flags"]) == {"-"}
    inbound = mine[mine["reporter"] == "destination"]
    assert set(inbound["pod"]) <= {f"{s}-v1-{i}" for s in "abc" for i in (0, 1)}
    assert set(mine["method"]) == {"GET"} and set(mine["path"]) == {"/"}
    # an id the client did not set is generated once and still propagated along the chain
    body = mesh.call("a", "/").json()
    assert (mesh.access_log()["request_id"] == body["request_id"]).sum() == 6
    # filters
    assert set(mesh.access_log(service="c")["destination_workload"]) == {"c-v1"}
    assert set(mesh.access_log(reporter="source")["reporter"]) == {"source"}
    assert len(mesh.access_log(last=2)) == 2


def test_request_id_breaks_when_an_app_does_not_propagate(mesh: Mesh) -> None:
    mesh.deploy("c", make_app("c"))
    mesh.deploy("x", make_app("x", "c", propagate=False))
    body = mesh.call("x", "/", headers={"x-request-id": "req-lost"}).json()
    assert body["request_id"] == "req-lost" and body["next"]["request_id"] != "req-lost"
    log = mesh.access_log()
    assert len(log[log["request_id"] == "req-lost"]) == 2  # only the first hop


def test_istio_requests_total_reconciles_with_requests_sent(mesh: Mesh) -> None:
    deploy_chain(mesh)
    n = 13
    assert [r.status_code for r in calls(mesh, "a", n)] == [200] * n
    expected = {(rep, src, dst, "v1", "200", "-"): n for rep in ("source", "destination")
                for src, dst in (("curl", "a-v1"), ("a-v1", "b-v1"), ("b-v1", "c-v1"))}
    m = requests_total(mesh)
    assert hops(m) == expected
    # the destination side is reported by each replica's own sidecar; the replicas add up
    dest = m[m["reporter"] == "destination"]
    per_pod = dest.groupby("pod")["value"].sum()
    assert set(per_pod.index) <= {f"{s}-v1-{i}" for s in "abc" for i in (0, 1)}
    assert per_pod.sum() == 3 * n
    md = mesh.metrics()
    count = md[md["name"] == "istio_request_duration_milliseconds_count"]["value"].sum()
    assert count == 6 * n
    assert set(m["destination_service"]) == {f"{s}.default.svc.cluster.local" for s in "abc"}
    assert set(m[m["reporter"] == "destination"]["source_principal"]) == {
        "spiffe://cluster.local/ns/default/sa/curl", "spiffe://cluster.local/ns/default/sa/a",
        "spiffe://cluster.local/ns/default/sa/b"}


# -- response flags -----------------------------------------------------------------------------


def test_nr_unknown_host_is_404(mesh: Mesh) -> None:
    mesh.deploy("c", make_app("c"))
    r = mesh.call("nope", "/")
    assert r.status_code == 404 and r.headers["x-meshlab-response-flags"] == "NR"
    assert "'nope' is not a service in the mesh" in r.text
    assert hops(requests_total(mesh)) == {("source", "curl", "unknown", "unknown", "404", "NR"): 1}
    entry = mesh.access_log().iloc[-1]
    assert (entry["response_flags"], entry["response_code_details"]) == ("NR", "route_not_found")


def test_uh_when_all_replicas_scaled_to_zero(mesh: Mesh) -> None:
    deploy_chain(mesh)
    mesh.scale("c", 0)
    assert mesh.endpoints("c").empty and mesh.services == ["a", "b", "c"]
    r = mesh.call("c", "/")
    assert r.status_code == 503 and r.headers["x-meshlab-response-flags"] == "UH"
    assert r.text == "no healthy upstream"
    assert mesh.call("a", "/").status_code == 503  # b's sidecar had no host for c
    m = requests_total(mesh)
    h = hops(m)
    assert h[("source", "curl", "unknown", "unknown", "503", "UH")] == 1
    # every request b's app sent to c ended UH in b's sidecar (how many there were depends on the
    # retries a's and curl's sidecars made; they reconcile exactly with what b's inbound saw)
    b_in = m[(m["reporter"] == "destination") & (m["destination_workload"] == "b-v1")]["value"].sum()
    b_out = m[(m["reporter"] == "source") & (m["source_workload"] == "b-v1")]
    assert b_in >= 1 and hops(b_out) == {("source", "b-v1", "unknown", "unknown", "503", "UH"): b_in}
    mesh.scale("c", 2)
    assert [r.status_code for r in calls(mesh, "a", 4)] == [200] * 4


def served_by(mesh: Mesh, pod: str) -> int:
    """Requests the sidecar of ``pod`` handled on its inbound side."""
    log = mesh.access_log(reporter="destination")
    return int((log["pod"] == pod).sum())


def test_uf_killed_replica_alone_is_503_uf() -> None:
    with Mesh(seed=0, probe_period=5.0) as mesh:
        mesh.deploy("c", make_app("c"))
        mesh.kill("c", 0)
        r = mesh.call("c", "/")
        assert r.status_code == 503 and r.headers["x-meshlab-upstream"] == "c-v1-0"
        # the pod's sidecar is up; its app is not: it answers 503 UF (connection failure)
        log = mesh.access_log(reporter="destination")
        assert len(log) >= 1 and set(zip(log["response_code"], log["response_flags"], strict=True)) == {(503, "UF")}
        assert "connection_failure" in log["response_code_details"].iloc[0]


def test_uf_killed_replica_until_readiness_removes_it() -> None:
    with Mesh(seed=0, probe_period=1.0) as mesh:
        mesh.deploy("c", make_app("c"), replicas=2)
        killed = mesh.kill("c", 0)
        assert killed.name == "c-v1-0" and not killed.alive
        ep = mesh.endpoints("c").set_index("pod")
        assert bool(ep.loc["c-v1-0", "healthy"]) and not bool(ep.loc["c-v1-0", "alive"])
        rs = calls(mesh, "c", 20)
        # still an endpoint until its readiness probe fails: it is chosen and answers 503 UF
        # (the client may not see it: Istio's default retries go to the other replica)
        hit = served_by(mesh, "c-v1-0")
        assert hit > 0
        m = requests_total(mesh)
        dest_killed = m[(m["reporter"] == "destination") & (m["pod"] == "c-v1-0")]
        assert set(zip(dest_killed["response_code"], dest_killed["response_flags"], strict=True)) == {("503", "UF")}
        assert dest_killed["value"].sum() == hit
        for r in rs:
            assert (r.status_code, r.headers["x-meshlab-upstream"]) in {(200, "c-v1-1"), (503, "c-v1-0")}
        # after probe_period the replica is unready and no longer chosen
        wait_for(lambda: not mesh.endpoints("c").set_index("pod").loc["c-v1-0", "healthy"])
        rs = calls(mesh, "c", 20)
        assert {r.status_code for r in rs} == {200}
        assert {r.headers["x-meshlab-upstream"] for r in rs} == {"c-v1-1"}
        assert served_by(mesh, "c-v1-0") == hit
        mesh.revive("c", 0)
        assert {r.headers["x-meshlab-upstream"] for r in calls(mesh, "c", 20)} == {"c-v1-0", "c-v1-1"}
        assert mesh.endpoints("c")["restarts"].tolist() == [1, 0]


def test_kill_with_restart_after_comes_back(mesh: Mesh) -> None:
    mesh.deploy("c", make_app("c"))
    mesh.kill("c", 0, restart_after=0.1)
    wait_for(lambda: bool(mesh.endpoints("c")["alive"].iloc[0]))
    assert mesh.call("c", "/").status_code == 200


# -- scale, restart, versions --------------------------------------------------------------------


def test_scale_up_and_down(mesh: Mesh) -> None:
    deploy_chain(mesh)
    mesh.scale("b", 3)
    assert mesh.endpoints("b")["pod"].tolist() == ["b-v1-0", "b-v1-1", "b-v1-2"]
    assert {r.json()["next"]["pod"] for r in calls(mesh, "a", 30)} == {"b-v1-0", "b-v1-1", "b-v1-2"}
    mesh.scale("b", 1)
    assert mesh.endpoints("b")["pod"].tolist() == ["b-v1-0"]
    assert {r.json()["next"]["pod"] for r in calls(mesh, "a", 5)} == {"b-v1-0"}
    assert mesh.pod("b-v1-2") is None


def test_rolling_restart_under_load_fails_no_request(mesh: Mesh) -> None:
    deploy_chain(mesh)
    run = mesh.load("a", "/", concurrency=4, duration=60, background=True, progress=False)
    wait_for(lambda: run.progress.done >= 50)
    before = run.progress.done
    mesh.restart("c")
    mesh.restart("b")
    assert not run.done()
    wait_for(lambda: run.progress.done >= before + 50)  # traffic kept flowing through the restart
    res = run.stop()
    assert len(res.df) >= before + 50
    assert res.status_counts() == {200: len(res.df)}
    assert mesh.endpoints("c")["pod"].tolist() == ["c-v1-2", "c-v1-3"]
    assert mesh.endpoints("b")["pod"].tolist() == ["b-v1-2", "b-v1-3"]
    assert mesh.call("a", "/").json()["next"]["next"]["pod"] in {"c-v1-2", "c-v1-3"}


def counting_app(name: str, seconds: float) -> tuple[FastAPI, dict[str, int]]:
    """An app that takes ``seconds`` and counts requests it started, finished, and had cut short
    (cancelled mid-way: its replica was closed with the request in flight)."""
    app, state = FastAPI(), {"started": 0, "finished": 0, "cut": 0}

    @app.get("/")
    async def root() -> dict[str, str]:
        state["started"] += 1
        try:
            await asyncio.sleep(seconds)
        except asyncio.CancelledError:
            state["cut"] += 1
            raise
        state["finished"] += 1
        return {"service": name}

    return app, state


def change_under_load(mesh: Mesh, service: str, leaving: list[meshlab.Replica], change: Callable[[], None]) -> None:
    """Run ``change`` while a closed-loop load keeps requests in flight at the ``leaving`` replicas."""
    run = mesh.load(service, "/", concurrency=6, duration=60, background=True, progress=False)
    wait_for(lambda: all(r.in_flight > 0 for r in leaving))
    change()
    run.stop()


def test_scale_down_under_load_cuts_no_request_in_flight(mesh: Mesh) -> None:
    app, state = counting_app("c", 0.3)
    mesh.deploy("c", app, replicas=3)
    change_under_load(mesh, "c", mesh.replicas("c")[1:], lambda: mesh.scale("c", 1))
    assert state["started"] > 0 and mesh.endpoints("c")["pod"].tolist() == ["c-v1-0"]
    assert state["cut"] == 0


def test_rolling_restart_of_a_slow_service_cuts_no_request_in_flight(mesh: Mesh) -> None:
    app, state = counting_app("c", 0.3)
    mesh.deploy("c", app, replicas=2)
    change_under_load(mesh, "c", mesh.replicas("c"), lambda: mesh.restart("c"))
    assert state["started"] > 0 and mesh.endpoints("c")["pod"].tolist() == ["c-v1-2", "c-v1-3"]
    assert state["cut"] == 0


def test_restart_with_a_new_app(mesh: Mesh) -> None:
    mesh.deploy("c", make_app("c"), replicas=2)
    fixed = FastAPI()

    @fixed.get("/")
    async def root() -> dict[str, str]:
        return {"service": "c", "build": "fixed"}

    mesh.restart("c", app=fixed)
    assert {r.json().get("build") for r in calls(mesh, "c", 6)} == {"fixed"}


def test_two_versions_both_receive_traffic(mesh: Mesh) -> None:
    mesh.deploy("c", make_app("c"), replicas=2)
    mesh.deploy("c", make_app("c"), version="v2")
    ep = mesh.endpoints("c")
    assert ep["version"].tolist() == ["v1", "v1", "v2"]
    assert ep["labels"].iloc[2] == {"app": "c", "version": "v2"}
    seen = [r.json()["version"] for r in calls(mesh, "c", 40)]
    assert set(seen) == {"v1", "v2"}
    m = requests_total(mesh)
    by_version = m[m["reporter"] == "source"].groupby("destination_version")["value"].sum().to_dict()
    assert by_version == {"v1": seen.count("v1"), "v2": seen.count("v2")}
    res = mesh.load("c", "/", concurrency=2, requests=60, progress=False)
    assert set(res.df["version"]) == {"v1", "v2"}
    with pytest.raises(MeshError, match=r"versions \['v1', 'v2'\]; say which with version="):
        mesh.scale("c", 3)
    mesh.scale("c", 0, version="v1")
    assert {r.json()["version"] for r in calls(mesh, "c", 5)} == {"v2"}


def build_app(build: str) -> FastAPI:
    """An app that says which build it is (a fix deployed with ``mesh.restart(..., app=...)``)."""
    app = FastAPI()

    @app.get("/")
    async def root() -> dict[str, str]:
        me = meshlab.current_replica()
        assert me is not None
        return {"pod": me.name, "version": me.version, "build": build}

    return app


def test_kill_and_revive_one_version_leave_the_other_untouched(mesh: Mesh) -> None:
    mesh.deploy("c", make_app("c"))  # c-v1-0
    mesh.deploy("c", make_app("c"), version="v2", replicas=2)  # c-v2-0, c-v2-1
    v1_before = mesh.endpoints("c").query("version == 'v1'").to_dict("records")
    # replica= counts within the version: replica 1 of v2 is c-v2-1 (replica 1 of the service is c-v2-0)
    killed = mesh.kill("c", 1, version="v2")
    assert (killed.name, killed.version, killed.alive) == ("c-v2-1", "v2", False)
    with pytest.raises(MeshError, match="no replica 1"):
        mesh.kill("c", 1, version="v1")  # v1 has one replica
    assert mesh.kill("c", 0, version="v2").name == "c-v2-0"  # now every v2 replica is down
    wait_for(lambda: not mesh.endpoints("c").query("version == 'v2'")["healthy"].any())
    ep = mesh.endpoints("c")
    assert ep.query("version == 'v1'").to_dict("records") == v1_before  # same pod, address, health, restarts
    assert ep.set_index("pod")["alive"].to_dict() == {"c-v1-0": True, "c-v2-0": False, "c-v2-1": False}
    # v1 serves every request; none fails on the way (the dead v2 pods are out of the endpoints)
    assert {(r.status_code, r.json()["pod"]) for r in calls(mesh, "c", 20)} == {(200, "c-v1-0")}

    revived = mesh.revive("c", 1, version="v2")
    assert revived is killed and revived.alive
    ep = mesh.endpoints("c").set_index("pod")
    assert ep["restarts"].to_dict() == {"c-v1-0": 0, "c-v2-0": 0, "c-v2-1": 1}
    assert ep["healthy"].to_dict() == {"c-v1-0": True, "c-v2-0": False, "c-v2-1": True}
    assert {r.json()["pod"] for r in calls(mesh, "c", 30)} == {"c-v1-0", "c-v2-1"}


def test_restart_one_version_leaves_the_other_untouched(mesh: Mesh) -> None:
    mesh.deploy("c", make_app("c"), replicas=2)
    mesh.deploy("c", make_app("c"), version="v2")
    v1_replicas = mesh.replicas("c", version="v1")
    v1_before = mesh.endpoints("c").query("version == 'v1'").to_dict("records")

    mesh.restart("c", version="v2", app=build_app("fixed"))
    ep = mesh.endpoints("c")
    assert ep["pod"].tolist() == ["c-v1-0", "c-v1-1", "c-v2-1"]  # only v2's pod was replaced
    assert ep.query("version == 'v1'").to_dict("records") == v1_before
    assert all(a is b for a, b in zip(mesh.replicas("c", version="v1"), v1_replicas, strict=True))
    answers = [r.json() for r in calls(mesh, "c", 40)]
    assert {(a["version"], a.get("build")) for a in answers} == {("v1", None), ("v2", "fixed")}
    assert {a["pod"] for a in answers} == {"c-v1-0", "c-v1-1", "c-v2-1"}

    # restarting v1 (same app) keeps v2's new app and leaves its pod alone
    v2_before = mesh.endpoints("c").query("version == 'v2'").to_dict("records")
    mesh.restart("c", version="v1")
    ep = mesh.endpoints("c")
    assert ep["pod"].tolist() == ["c-v2-1", "c-v1-2", "c-v1-3"]
    assert ep.query("version == 'v2'").to_dict("records") == v2_before
    answers = [r.json() for r in calls(mesh, "c", 40)]
    assert {(a["pod"], a.get("build")) for a in answers} == {("c-v1-2", None), ("c-v1-3", None),
                                                             ("c-v2-1", "fixed")}


def test_endpoints_frame(mesh: Mesh) -> None:
    deploy_chain(mesh)
    ep = mesh.endpoints("b")
    assert ep.columns.tolist() == ["pod", "version", "address", "labels", "healthy", "alive", "restarts"]
    assert ep["pod"].tolist() == ["b-v1-0", "b-v1-1"]
    assert ep["address"].str.startswith("127.0.0.1:").all() and ep["address"].is_unique
    assert ep["healthy"].all() and ep["alive"].all()
    assert ep["address"].tolist() == [mesh.sidecar("b", i).inbound.address for i in (0, 1)]


# -- the sidecar's admin port ---------------------------------------------------------------------


def test_sidecar_admin_endpoints(mesh: Mesh) -> None:
    deploy_chain(mesh)
    calls(mesh, "a", 10)
    sc = mesh.sidecar("b", 0)
    assert mesh.sidecar("b-v1-0") is sc
    with httpx.Client(base_url=sc.admin_url, trust_env=False) as http:
        stats = dict(line.split(": ", 1) for line in http.get("/stats").text.splitlines())
        served = int(stats["inbound.rq_total"])
        log = mesh.access_log(reporter="destination")
        assert served == (log["pod"] == "b-v1-0").sum() and served > 0
        assert int(stats["outbound.rq_total"]) == served  # each b request called c once

        prom = http.get("/stats/prometheus")
        assert prom.status_code == 200 and prom.headers["content-type"].startswith("text/plain")
        fams = {f.name: f for f in text_string_to_metric_families(prom.text)}
        assert {"istio_requests", "istio_request_duration_milliseconds", "istio_request_bytes",
                "istio_response_bytes"} <= set(fams)
        samples = [s for s in fams["istio_requests"].samples if s.name == "istio_requests_total"]
        assert sum(s.value for s in samples if s.labels["reporter"] == "destination") == served
        assert {s.labels["destination_workload"] for s in samples} == {"b-v1", "c-v1"}

        dump = http.get("/config_dump").json()
        assert dump["listeners"]["inbound"] == sc.inbound.address
        c_cluster = dump["clusters"]["outbound|80||c.default.svc.cluster.local"]
        assert sorted(c_cluster["endpoints"]) == sorted(mesh.endpoints("c")["address"])

        clusters = http.get("/clusters").json()
        c_rows = [row for row in clusters if row["cluster"] == "outbound|80||c.default.svc.cluster.local"]
        assert {row["pod"] for row in c_rows} == {"c-v1-0", "c-v1-1"}
        assert sum(row["rq_total"] for row in c_rows) == served
        assert http.get("/ready").status_code == 200
        assert http.get("/nope").status_code == 404
    assert json.loads(json.dumps(sc.config_dump()))["version"] >= 1


# -- the work model -----------------------------------------------------------------------------------


def test_work_capacity_and_queue_reject_when_full(mesh: Mesh) -> None:
    mesh.deploy("w", make_app("w"), work=Work(capacity=1, queue=0, latency_ms=300))
    res = mesh.load("w", "/", concurrency=3, requests=3, progress=False)
    assert sorted(res.df["status"]) == [200, 503, 503]
    rejected = mesh.access_log(reporter="destination").query("response_code == 503")
    assert mesh.replicas("w")[0].rejected == len(rejected) >= 2  # (retries may add more tries)
    assert rejected["response_flags"].eq("-").all()  # the app itself said 503: no proxy flag
    mesh.deploy("q", make_app("q"), work=Work(capacity=1, queue=1, latency_ms=300))
    res = mesh.load("q", "/", concurrency=3, requests=3, progress=False)
    assert sorted(res.df["status"]) == [200, 200, 503]


def test_work_error_rate_is_seeded() -> None:
    def statuses(seed: int) -> list[int]:
        with Mesh(seed=seed) as m:
            m.deploy("e", make_app("e"), work=Work(error_rate=0.3))
            return [r.status_code for r in calls(m, "e", 120)]

    first = statuses(0)
    assert set(first) == {200, 500}
    assert 0.15 < first.count(500) / len(first) < 0.45
    assert statuses(0) == first  # same seed, same failures
    assert statuses(1) != first


def test_work_latency(mesh: Mesh) -> None:
    mesh.deploy("slow", make_app("slow"), work=Work(latency_ms=40))
    r = mesh.call("slow", "/")
    assert r.status_code == 200 and int(r.headers["x-envoy-upstream-service-time"]) >= 40
    log = mesh.access_log(reporter="destination")
    assert log["duration_ms"].iloc[-1] >= 40


# -- load generation ------------------------------------------------------------------------------------

COLUMNS = ["t", "service", "path", "latency_ms", "status", "response_flags", "upstream", "version", "attempts"]


def test_load_open_loop(mesh: Mesh) -> None:
    mesh.deploy("c", make_app("c"), replicas=2)
    res = mesh.load("c", "/", rate=200, requests=60, progress=False)
    assert res.df.columns.tolist() == COLUMNS and len(res.df) == 60
    assert res.status_counts() == {200: 60} and res.success_rate == 1.0
    assert res.achieved_rate > 0 and res.rate == 200
    assert set(res.df["version"]) == {"v1"} and set(res.df["upstream"]) == {"c-v1-0", "c-v1-1"}
    assert res.df["t"].is_monotonic_increasing
    # open loop: request i is scheduled at i / rate
    assert res.df["t"].tolist() == pytest.approx([i / 200 for i in range(60)])
    assert set(res.percentiles()) == {"p50", "p90", "p99"}
    m = requests_total(mesh)
    assert m[(m["reporter"] == "destination")]["value"].sum() == 60


def test_load_closed_loop(mesh: Mesh) -> None:
    deploy_chain(mesh)
    res = mesh.load("a", "/", concurrency=4, requests=80, progress=False)
    assert len(res.df) == 80 and res.concurrency == 4 and res.achieved_rate > 0
    assert res.status_counts() == {200: 80}
    assert set(res.df["service"]) == {"a"} and set(res.df["path"]) == {"/"}
    assert set(res.df["response_flags"]) == {"-"}
    h = hops(requests_total(mesh))
    assert h[("source", "b-v1", "c-v1", "v1", "200", "-")] == 80
    res = mesh.load("a", "/", concurrency=2, duration=0.3, progress=False)
    assert len(res.df) > 0 and res.status_counts() == {200: len(res.df)}
    assert "LoadResult concurrency=2" in repr(res)
    assert res.summary()["requests"] == len(res.df)


def test_load_version_column_outside_the_default_namespace(mesh: Mesh) -> None:
    mesh.deploy("c", make_app("c"), namespace="shop", replicas=2)
    res = mesh.load("c.shop", "/", concurrency=2, requests=10, progress=False)
    assert res.status_counts() == {200: 10} and set(res.df["upstream"]) == {"c-v1-0", "c-v1-1"}
    assert set(res.df["version"]) == {"v1"}


def test_load_counts_failures(mesh: Mesh) -> None:
    res = mesh.load("ghost", "/", concurrency=2, requests=10, progress=False)
    assert res.status_counts() == {404: 10} and set(res.df["response_flags"]) == {"NR"}
    assert res.success_rate == 1.0  # a 404 is an answer, not a server failure
    assert set(res.df["version"]) == {""}


# -- the progress bar of mesh.load ---------------------------------------------------------------------
# tqdm writes the bar to stderr: "load w/: 100%|██████████| 25/25 [00:01<00:00, 16.3req/s]"


def bar_counts(err: str, label: str) -> list[tuple[int, int]]:
    """(done, total) of every state of the tqdm bar ``label`` drawn on stderr."""
    return [(int(n), int(total)) for n, total in re.findall(rf"{re.escape(label)}: +\d+%\|[^|]*\| (\d+)/(\d+) ", err)]


def test_load_shows_a_progress_bar_for_runs_over_a_second(mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    mesh.deploy("w", make_app("w"), work=Work(latency_ms=60))
    # a closed loop of 25 requests one at a time: at least 25 x 60 ms = 1.5 s, a length not known in
    # advance (it depends on the service), so the bar starts once the run has lasted 1 s
    res = mesh.load("w", "/", concurrency=1, requests=25)
    assert len(res.df) == 25 and res.elapsed_s > 1.5
    seen = bar_counts(capsys.readouterr().err, "load w/")
    assert seen and seen[-1] == (25, 25), seen
    assert seen[0][0] > 0, "started late, already counting the requests done in the first second"
    # open loop: 24 requests at 20/s last 1.2 s, known in advance: a bar from the start
    mesh.deploy("fast", make_app("fast"))
    mesh.load("fast", "/", rate=20, requests=24)
    seen = bar_counts(capsys.readouterr().err, "load fast/")
    assert seen and seen[-1] == (24, 24), seen


def test_load_shows_no_progress_bar_for_short_runs_or_when_asked(mesh: Mesh,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    mesh.deploy("w", make_app("w"), work=Work(latency_ms=60))
    mesh.deploy("fast", make_app("fast"))
    mesh.load("fast", "/", concurrency=2, requests=10)  # well under a second
    mesh.load("fast", "/", rate=200, requests=20)  # 0.1 s, known in advance
    mesh.load("w", "/", concurrency=1, requests=20, progress=False)  # 1.2 s, but no bar asked for
    assert capsys.readouterr().err == ""


def test_load_run_result_draws_a_late_bar_from_the_shared_counters(capsys: pytest.CaptureFixture[str]) -> None:
    """LoadRun alone (no mesh): a run of unknown length shows a bar only once it has lasted 1 s."""

    def drive(future: Future[str], progress: LoadProgress, steps: int, step_s: float) -> None:
        for _ in range(steps):
            time.sleep(step_s)
            progress.done += 1
        future.set_result("finished")

    for steps, step_s, label in [(12, 0.12, "slow"), (5, 0.02, "quick")]:
        future: Future[str] = Future()
        progress = LoadProgress(total=steps)
        threading.Thread(target=drive, args=(future, progress, steps, step_s), daemon=True).start()
        run = LoadRun(future, progress, None, label)  # type: ignore[arg-type]
        assert run.result() == "finished"
        seen = bar_counts(capsys.readouterr().err, label)
        if label == "slow":
            assert seen and seen[-1] == (12, 12) and seen[0][0] > 0, seen
        else:
            assert seen == []


# -- errors and lifecycle -----------------------------------------------------------------------------


def test_errors_have_clear_messages(mesh: Mesh) -> None:
    app = make_app("c")
    with pytest.raises(MeshError, match=r"service name 'Cart_1' is not a valid Kubernetes name"):
        mesh.deploy("Cart_1", app)
    with pytest.raises(MeshError, match=r"version 'V1' is not a valid Kubernetes name"):
        mesh.deploy("cart", app, version="V1")
    with pytest.raises(MeshError, match="replicas must be >= 0"):
        mesh.deploy("cart", app, replicas=-1)
    mesh.deploy("cart", app)
    with pytest.raises(MeshError, match=r"cart v1 is already deployed in default; use mesh.scale\(\)"):
        mesh.deploy("cart", app)
    with pytest.raises(MeshError, match=r"no service 'ghost' in namespace 'default' \(services: cart\)"):
        mesh.scale("ghost", 2)
    for op in (lambda: mesh.endpoints("ghost"), lambda: mesh.kill("ghost"), lambda: mesh.sidecar("ghost"),
               lambda: mesh.restart("ghost"), lambda: mesh.replicas("ghost")):
        with pytest.raises(MeshError, match="no service 'ghost'"):
            op()
    with pytest.raises(MeshError, match=r"kill: cart has 1 replica\(s\), numbered 0 to 0; no replica 3"):
        mesh.kill("cart", 3)
    with pytest.raises(MeshError, match="no replica 1"):
        mesh.sidecar("cart", 1)
    with pytest.raises(MeshError, match="replicas must be >= 0"):
        mesh.scale("cart", -1)
    with pytest.raises(ValueError, match="exactly one of rate= .* or concurrency="):
        mesh.load("cart", "/", requests=5)
    with pytest.raises(ValueError, match="Work: error_rate must be between 0 and 1"):
        Work(error_rate=2)


def test_not_started() -> None:
    mesh = Mesh()
    for op in (lambda: mesh.call("a", "/"), lambda: mesh.deploy("a", make_app("a")), lambda: mesh.metrics(),
               lambda: mesh.load("a", "/", concurrency=1, requests=1), lambda: mesh.access_log()):
        with pytest.raises(MeshError, match=r"the mesh is not started: call mesh.start\(\)"):
            op()
    mesh.stop()  # stopping a mesh that never started is fine


def test_start_stop_idempotent_and_restart_is_empty() -> None:
    mesh = Mesh(seed=0)
    assert mesh.start() is mesh and mesh.start() is mesh
    mesh.deploy("c", make_app("c"))
    assert mesh.call("c", "/").status_code == 200
    mesh.stop()
    mesh.stop()
    assert not mesh.running
    with mesh:
        assert mesh.services == []
        mesh.deploy("c", make_app("c"))
        assert mesh.call("c", "/").status_code == 200
    assert not mesh.running


def test_client_outside_a_mesh_request() -> None:
    with pytest.raises(meshlab.NotInMesh, match=r"use mesh.call\(service, path\)"):
        meshlab.client()
    assert meshlab.propagation_headers({"x-request-id": "1", "cookie": "no", "end-user": "jason"}) == {
        "x-request-id": "1", "end-user": "jason"}


def test_acall_and_aload_from_another_event_loop(mesh: Mesh) -> None:
    mesh.deploy("c", make_app("c"))

    async def main() -> tuple[int, int]:
        r = await mesh.acall("c", "/")
        res = await mesh.aload("c", "/", concurrency=2, requests=6)
        return r.status_code, len(res.df)

    assert asyncio.run(main()) == (200, 6)


def test_kill_revive_restart_name_what_does_not_exist(mesh: Mesh) -> None:
    mesh.deploy("c", make_app("c"), replicas=1)
    mesh.deploy("c", make_app("c"), replicas=2, version="v2")
    with pytest.raises(MeshError, match=r"kill: c v1 has 1 replica\(s\), numbered 0 to 0; no replica 1"):
        mesh.kill("c", 1, version="v1")
    with pytest.raises(MeshError, match=r"kill: c has no version 'v9' \(deployed: v1, v2\)"):
        mesh.kill("c", 0, version="v9")
    with pytest.raises(MeshError, match=r"revive: c v2 has 2 replica\(s\), numbered 0 to 1; no replica 5"):
        mesh.revive("c", 5, version="v2")
    with pytest.raises(MeshError, match=r"restart: c has no version 'v9' \(deployed: v1, v2\)"):
        mesh.restart("c", version="v9")
    with pytest.raises(MeshError, match="nope"):
        mesh.kill("nope")
    mesh.scale("c", 0, version="v2")
    with pytest.raises(MeshError, match="kill: c v2 has no replicas"):
        mesh.kill("c", 0, version="v2")
