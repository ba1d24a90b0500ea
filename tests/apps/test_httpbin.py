"""httpbin: the pure parts with TestClient (no mesh), then every endpoint through a mesh.

What a replica *served* is read from the server sidecars' access log (reporter="destination"):
that stays true when the client sidecar starts retrying 503s (Istio's default retry policy),
while what ``mesh.call`` sees would change.
"""

from __future__ import annotations

import random
import re
import uuid
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from meshlab import Mesh
from meshlab.apps import httpbin
from meshlab.apps.httpbin import LOCAL, MAX_DELAY_S, make_app, parse_codes, pick_code

UUID4 = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


# -- without a mesh ----------------------------------------------------------------------------
@pytest.fixture
def local() -> Iterator[TestClient]:
    with TestClient(make_app()) as client:
        yield client


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("503", [(503, 1.0)]),
        ("200,503", [(200, 1.0), (503, 1.0)]),
        ("200:3, 503:1", [(200, 3.0), (503, 1.0)]),
        ("200:0.9,500:0.1", [(200, 0.9), (500, 0.1)]),
    ],
)
def test_parse_codes(spec: str, expected: list[tuple[int, float]]) -> None:
    assert parse_codes(spec) == expected


@pytest.mark.parametrize(
    ("spec", "message"),
    [("abc", "invalid"), ("200:x", "invalid"), ("99", "outside"), ("600", "outside"),
     ("200:-1", "negative"), ("200:0,503:0", "add up to 0")],
)
def test_parse_codes_rejects(spec: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_codes(spec)


def test_pick_code_follows_weights_and_single_code_draws_nothing() -> None:
    rng = random.Random(0)
    picks = [pick_code([(200, 3.0), (503, 1.0)], rng) for _ in range(4000)]
    assert 0.22 < picks.count(503) / len(picks) < 0.28
    before = rng.getstate()
    assert pick_code([(418, 1.0)], rng) == 418
    assert rng.getstate() == before
    assert {pick_code([(200, 0.0), (503, 1.0)], rng) for _ in range(50)} == {503}


def test_local_status_and_bad_codes(local: TestClient) -> None:
    assert local.get("/status/201").status_code == 201
    r = local.get("/status/204")
    assert r.status_code == 204 and r.content == b""
    assert local.post("/status/418").status_code == 418
    assert {local.get("/status/200:0,503:1").status_code for _ in range(5)} == {503}
    bad = local.get("/status/nope")
    assert bad.status_code == 400 and "invalid" in bad.json()["error"]


def test_local_echo_endpoints(local: TestClient) -> None:
    h = local.get("/headers", headers={"X-Custom": "yes"}).json()["headers"]
    assert h["x-custom"] == "yes"
    g = local.get("/get?a=1&a=2&b=3").json()
    assert g["method"] == "GET" and g["args"] == {"a": ["1", "2"], "b": "3"}
    assert g["url"].endswith("/get?a=1&a=2&b=3")
    for method in ("POST", "PUT", "PATCH", "DELETE"):
        a = local.request(method, "/anything/deep/path?x=1", json={"k": "v"}).json()
        assert a["method"] == method and a["json"] == {"k": "v"} and a["args"] == {"x": "1"}
    raw = local.post("/anything", content=b"not json").json()
    assert raw["data"] == "not json" and raw["json"] is None
    assert local.get("/ip", headers={"x-forwarded-for": "10.0.0.7, 10.0.0.1"}).json() == {"origin": "10.0.0.7"}


def test_local_root_reports_no_replica(local: TestClient) -> None:
    assert local.get("/").json() == {"service": "httpbin", "version": None, "replica": LOCAL}
    with TestClient(make_app("other")) as c:
        assert c.get("/").json()["service"] == "other"


def test_local_delay_is_capped(local: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)

    monkeypatch.setattr(httpbin, "sleep_at_least", fake_sleep)
    assert local.get("/delay/0.25").json()["delay"] == 0.25
    assert local.get("/delay/99").json()["delay"] == MAX_DELAY_S
    assert local.get("/delay/-1").json()["delay"] == 0.0
    assert slept == [0.25, MAX_DELAY_S, 0.0]
    assert local.get("/delay/soon").status_code == 422


def test_local_flaky_fail_then_succeed_per_key_and_reset(local: TestClient) -> None:
    codes = [local.get("/flaky/fail/2").status_code for _ in range(4)]
    assert codes == [503, 503, 200, 200]
    other = local.get("/flaky/fail/1?key=other").json()
    assert other == {"replica": LOCAL, "key": "other", "attempt": 1, "fail_first": 1, "failed": True}
    assert local.get("/flaky/fail/0?key=never").status_code == 200
    assert local.post("/reset").json() == {"cleared": 3}
    assert local.get("/flaky/fail/2").status_code == 503
    assert local.get("/flaky/fail/-1").status_code == 422


def test_local_randomness_is_seeded_per_app() -> None:
    def run(seed: int) -> tuple[list[int], str]:
        with TestClient(make_app(seed=seed)) as c:
            codes = [c.get("/flaky/percent/30").status_code for _ in range(50)]
            return codes, c.get("/uuid").json()["uuid"]

    first, again, other = run(0), run(0), run(1)
    assert first == again and first != other
    assert UUID4.match(first[1])
    assert 5 <= first[0].count(503) <= 25


def test_local_percent_bounds(local: TestClient) -> None:
    assert {local.get("/flaky/percent/0").status_code for _ in range(20)} == {200}
    assert {local.get("/flaky/percent/100").status_code for _ in range(20)} == {503}
    assert local.get("/flaky/percent/101").status_code == 422


# -- in a mesh ---------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def mesh() -> Iterator[Mesh]:
    with Mesh(seed=0) as m:
        m.deploy("httpbin", make_app(), replicas=2)
        yield m


def served(mesh: Mesh, path: str) -> list[tuple[str, int]]:
    """(pod, status) of every request for exactly ``path`` that a replica's sidecar let in."""
    log = mesh.access_log(service="httpbin", reporter="destination")
    log = log[log["path"] == path]
    return list(zip(log["pod"], log["response_code"].astype(int), strict=True))


def test_mesh_root_names_the_replica(mesh: Mesh) -> None:
    r = mesh.call("httpbin", "/")
    assert r.status_code == 200
    body = r.json()
    assert body["service"] == "httpbin" and body["version"] == "v1"
    assert body["replica"] == r.headers["x-meshlab-upstream"]
    assert body["replica"] in {"httpbin-v1-0", "httpbin-v1-1"}


@pytest.mark.parametrize("code", [200, 201, 404, 418, 500, 503])
def test_mesh_status_single_code(mesh: Mesh, code: int) -> None:
    assert mesh.call("httpbin", f"/status/{code}").status_code == code


def test_mesh_status_weighted_is_seeded() -> None:
    # 500, not 503: Istio's default retry policy retries 503s, which would change what the caller sees
    def run() -> list[int]:
        with Mesh(seed=0) as m:
            m.deploy("httpbin", make_app(), replicas=2)
            return [m.call("httpbin", "/status/200:3,500:1").status_code for _ in range(200)]

    first, second = run(), run()
    assert first == second
    assert set(first) == {200, 500}
    assert 30 <= first.count(500) <= 70  # 25 % of 200 = 50, about +-3 standard deviations


def test_mesh_headers_include_the_sidecar_request_id(mesh: Mesh) -> None:
    h = mesh.call("httpbin", "/headers", headers={"x-custom": "hello"}).json()["headers"]
    assert uuid.UUID(h["x-request-id"])
    assert h["host"] == "httpbin"
    assert h["x-custom"] == "hello"
    assert "x-envoy-peer-metadata-id" not in h  # sidecar-to-sidecar header, removed before the app
    mine = mesh.call("httpbin", "/headers", headers={"x-request-id": "abc-123"}).json()["headers"]
    assert mine["x-request-id"] == "abc-123"  # an existing id is kept, not replaced


def test_mesh_get_and_anything_echo(mesh: Mesh) -> None:
    g = mesh.call("httpbin", "/get?user=jason").json()
    assert g["method"] == "GET" and g["args"] == {"user": "jason"}
    assert g["url"] == "http://httpbin/get?user=jason"
    assert "x-request-id" in g["headers"]
    a = mesh.call("httpbin", "/anything/orders", method="PUT", json={"id": 7}).json()
    assert a["method"] == "PUT" and a["json"] == {"id": 7} and a["url"] == "http://httpbin/anything/orders"


def test_mesh_delay(mesh: Mesh) -> None:
    r = mesh.call("httpbin", "/delay/0.05")
    assert r.status_code == 200 and r.json()["delay"] == 0.05


def test_mesh_ip_and_uuid(mesh: Mesh) -> None:
    assert mesh.call("httpbin", "/ip").json() == {"origin": "127.0.0.1"}
    ids = {mesh.call("httpbin", "/uuid").json()["uuid"] for _ in range(5)}
    assert len(ids) == 5 and all(UUID4.match(i) for i in ids)


def test_mesh_uuid_is_seeded_by_the_mesh() -> None:
    def first_uuid(seed: int) -> str:
        with Mesh(seed=seed) as m:
            m.deploy("httpbin", make_app())
            return str(m.call("httpbin", "/uuid").json()["uuid"])

    assert first_uuid(0) == first_uuid(0)
    assert first_uuid(0) != first_uuid(1)


def test_mesh_flaky_fail_counts_per_replica(mesh: Mesh) -> None:
    path = "/flaky/fail/2?key=per-replica"
    bodies = [mesh.call("httpbin", path).json() for _ in range(16)]
    seen = served(mesh, path)
    pods = sorted({pod for pod, _ in seen})
    assert pods == ["httpbin-v1-0", "httpbin-v1-1"]
    for pod in pods:
        codes = [code for p, code in seen if p == pod]
        assert len(codes) > 2, f"{pod} got too few requests to show the pattern"
        assert codes == [503, 503] + [200] * (len(codes) - 2), pod
    for pod in pods:  # the bodies number each replica's attempts 1, 2, 3, ...
        attempts = [b["attempt"] for b in bodies if b["replica"] == pod]
        assert attempts == sorted(attempts) and attempts[-1] == sum(1 for p, _ in seen if p == pod)


def test_mesh_flaky_reset_starts_again(mesh: Mesh) -> None:
    path = "/flaky/fail/1?key=reset-me"
    for _ in range(6):
        mesh.call("httpbin", path)
    before = len(served(mesh, path))
    # counters live in the one app object both replicas share: one /reset clears them all
    assert mesh.call("httpbin", "/reset", method="POST").json()["cleared"] >= 2
    mesh.call("httpbin", path)
    assert served(mesh, path)[before][1] == 503  # the first request after the reset fails again


def test_mesh_flaky_percent_is_roughly_right(mesh: Mesh) -> None:
    path = "/flaky/percent/25?run=1"
    mesh.load("httpbin", path, concurrency=16, requests=400, progress=False)
    seen = served(mesh, path)
    assert len(seen) >= 400  # more if the client sidecar retried some 503s
    failed = sum(code == 503 for _, code in seen)
    assert {code for _, code in seen} == {200, 503}
    assert 0.19 <= failed / len(seen) <= 0.31  # each served request fails with p = 0.25; sd ~ 0.022


def test_mesh_flaky_percent_counts_repeat_with_the_seed() -> None:
    def failures() -> int:
        with Mesh(seed=0) as m:
            m.deploy("httpbin", make_app(), replicas=2)
            for _ in range(40):
                m.call("httpbin", "/flaky/percent/25")
            return sum(code == 503 for _, code in served(m, "/flaky/percent/25"))

    assert failures() == failures()
