"""Fault injection (VirtualService ``http[].fault``), in the caller's sidecar: aborts (flag FI)
and delays (flag DI) for a seeded percentage of the requests of the route they are on. An
aborted request never reaches the service and is never retried; a delay happens before the
router, so it does not count against the route timeout."""

from __future__ import annotations

import copy
import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from meshlab import Mesh
from meshlab.apps.httpbin import make_app
from meshlab.config.virtual_service import HTTPFaultInjectionAbort, HTTPFaultInjectionDelay
from meshlab.proxy.filters.fault import fault_percentage

BOOKINFO = Path(__file__).resolve().parents[3] / "shared" / "istio" / "bookinfo-networking"


def vs(fault: str, extra: str = "") -> str:
    return f"""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: httpbin}}
spec:
  hosts: [httpbin]
  http:
  - fault: {fault}
    route: [{{destination: {{host: httpbin}}}}]{extra}
"""


@pytest.fixture
def httpbin(mesh: Mesh) -> Mesh:
    mesh.deploy("httpbin", make_app(), replicas=1)
    return mesh


def flags(resp) -> set[str]:  # type: ignore[no-untyped-def]
    return set((resp.headers.get("x-meshlab-response-flags") or "-").split(","))


def fault_stats(mesh: Mesh) -> dict[str, int]:
    s = mesh.stats(pod="curl")
    return {k: int(v) for k, v in zip(s.stat, s.value, strict=True) if k.startswith("fault.")}


def within_binomial(count: int, n: int, percent: float, sigmas: float = 4.5) -> bool:
    p = percent / 100.0
    return abs(count - n * p) <= sigmas * math.sqrt(n * p * (1 - p))


# -- percentages -------------------------------------------------------------------------------
def test_fault_percentage_forms() -> None:
    assert fault_percentage(HTTPFaultInjectionAbort(httpStatus=503, percentage={"value": 12.5})) == 12.5
    assert fault_percentage(HTTPFaultInjectionDelay(fixedDelay="1s", percentage={"value": 0.1})) == 0.1
    assert fault_percentage(HTTPFaultInjectionDelay(fixedDelay="1s", percent=30)) == 30.0  # deprecated form
    assert fault_percentage(HTTPFaultInjectionDelay(fixedDelay="1s", percent=30, percentage={"value": 5})) == 5.0


def test_without_a_percentage_no_request_is_faulted() -> None:
    # Istio leaves Envoy's FractionalPercent at its zero default (istio/istio#36303)
    assert fault_percentage(HTTPFaultInjectionAbort(httpStatus=503)) == 0.0
    assert fault_percentage(HTTPFaultInjectionDelay(fixedDelay="1s")) == 0.0


# -- aborts --------------------------------------------------------------------------------------
def test_abort_answers_at_once_with_flag_fi(httpbin: Mesh) -> None:
    httpbin.apply(vs("{abort: {httpStatus: 503, percentage: {value: 100}}}"))
    r = httpbin.call("httpbin", "/get")
    assert r.status_code == 503
    assert r.text == "fault filter abort"
    assert flags(r) == {"FI"}
    assert "x-meshlab-attempts" not in r.headers  # a 503, but injected: never retried
    src = httpbin.access_log(reporter="source").iloc[-1]
    assert (src.response_code, src.response_flags, src.response_code_details) == (503, "FI", "fault_filter_abort")
    assert httpbin.access_log(reporter="destination").empty  # it never reached the service
    assert fault_stats(httpbin) == {"fault.aborts_injected": 1}


def test_abort_is_not_retried_even_with_retries_on_the_route(httpbin: Mesh) -> None:
    httpbin.apply(vs("{abort: {httpStatus: 503, percentage: {value: 100}}}",
                     "\n    retries: {attempts: 3, retryOn: \"5xx,retriable-status-codes,503\"}"))
    for _ in range(5):
        r = httpbin.call("httpbin", "/get")
        assert r.status_code == 503 and flags(r) == {"FI"} and "x-meshlab-attempts" not in r.headers
    assert httpbin.stats(pod="curl", contains="retry").empty
    assert httpbin.access_log(reporter="destination").empty


def abort_sequence(mesh: Mesh, n: int, percent: float = 30) -> list[int]:
    mesh.apply(vs(f"{{abort: {{httpStatus: 500, percentage: {{value: {percent}}}}}}}"))
    res = mesh.load("httpbin", "/status/200", concurrency=1, requests=n, progress=False)
    return list(res.df.status)


def test_abort_percentage_is_seeded_and_within_binomial_tolerance(httpbin: Mesh) -> None:
    n = 400
    seq = abort_sequence(httpbin, n)
    aborted = seq.count(500)
    assert seq.count(200) + aborted == n
    assert within_binomial(aborted, n, 30), aborted
    log = httpbin.access_log(reporter="source")
    assert (log.response_flags == "FI").sum() == aborted
    assert len(httpbin.access_log(reporter="destination")) == n - aborted
    with Mesh(seed=0) as again:  # a fresh mesh with the same seed: the very same requests fail
        again.deploy("httpbin", make_app(), replicas=1)
        assert abort_sequence(again, n) == seq
    with Mesh(seed=1) as other:
        other.deploy("httpbin", make_app(), replicas=1)
        assert abort_sequence(other, n) != seq


def test_abort_without_percentage_aborts_nothing(httpbin: Mesh) -> None:
    httpbin.apply(vs("{abort: {httpStatus: 503}}"))
    assert {httpbin.call("httpbin", "/get").status_code for _ in range(20)} == {200}


def test_abort_with_any_status(httpbin: Mesh) -> None:
    httpbin.apply(vs("{abort: {httpStatus: 418, percentage: {value: 100}}}"))
    r = httpbin.call("httpbin", "/get")
    assert r.status_code == 418 and flags(r) == {"FI"}


# -- delays --------------------------------------------------------------------------------------
def test_delay_then_forward_with_flag_di(httpbin: Mesh) -> None:
    httpbin.apply(vs("{delay: {fixedDelay: 0.2s, percentage: {value: 100}}}"))
    r = httpbin.call("httpbin", "/get")
    assert r.status_code == 200 and flags(r) == {"DI"}
    src = httpbin.access_log(reporter="source").iloc[-1]
    assert src.response_flags == "DI" and src.duration_ms >= 200
    dst = httpbin.access_log(reporter="destination")
    assert len(dst) == 1 and dst.iloc[0].response_flags == "-"  # the service saw a normal request
    assert fault_stats(httpbin) == {"fault.delays_injected": 1}


@pytest.mark.parametrize("form", ["percent: 50", "percentage: {value: 50}"])
def test_delay_percentage_and_deprecated_percent(httpbin: Mesh, form: str) -> None:
    httpbin.apply(vs(f"{{delay: {{fixedDelay: 0.02s, {form}}}}}"))
    n = 60
    res = httpbin.load("httpbin", "/get", concurrency=1, requests=n, progress=False)
    delayed = res.df[res.df.response_flags == "DI"]
    assert set(res.df.status) == {200}
    assert 0 < len(delayed) < n and within_binomial(len(delayed), n, 50)
    assert (delayed.latency_ms >= 20).all()


def test_delay_without_percentage_delays_nothing(httpbin: Mesh) -> None:
    httpbin.apply(vs("{delay: {fixedDelay: 0.5s}}"))
    res = httpbin.load("httpbin", "/get", concurrency=1, requests=10, progress=False)
    assert set(res.df.response_flags) == {"-"}


def test_delay_and_abort_together(httpbin: Mesh) -> None:
    httpbin.apply(vs("{delay: {fixedDelay: 0.1s, percentage: {value: 100}}, "
                     "abort: {httpStatus: 500, percentage: {value: 100}}}"))
    r = httpbin.call("httpbin", "/get")
    assert r.status_code == 500 and flags(r) == {"DI", "FI"}
    assert httpbin.access_log(reporter="source").iloc[-1].duration_ms >= 100


def test_delay_longer_than_the_route_timeout_does_not_time_out(httpbin: Mesh) -> None:
    # the fault filter runs before the router, whose timeout starts after the delay
    httpbin.apply(vs("{delay: {fixedDelay: 0.3s, percentage: {value: 100}}}", "\n    timeout: 0.1s"))
    r = httpbin.call("httpbin", "/get")
    assert r.status_code == 200 and flags(r) == {"DI"}


# -- a fault only applies to its own route ----------------------------------------------------------
def test_fault_only_on_its_route(httpbin: Mesh) -> None:
    httpbin.apply("""
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - match: [{uri: {prefix: /status}}]
    fault: {abort: {httpStatus: 503, percentage: {value: 100}}}
    route: [{destination: {host: httpbin}}]
  - route: [{destination: {host: httpbin}}]
""")
    assert httpbin.call("httpbin", "/status/200").status_code == 503
    assert httpbin.call("httpbin", "/get").status_code == 200


needs_bookinfo = pytest.mark.skipif(not BOOKINFO.is_dir(), reason=f"Istio's Bookinfo samples are not at {BOOKINFO}")


def bookinfo_doc(name: str) -> dict[str, Any]:
    return yaml.safe_load((BOOKINFO / name).read_text())


@pytest.fixture
def ratings(mesh: Mesh) -> Mesh:
    mesh.deploy("ratings", make_app("ratings"), replicas=1, port=9080)
    mesh.apply(BOOKINFO / "destination-rule-all.yaml")
    return mesh


@needs_bookinfo
def test_bookinfo_ratings_test_abort_for_jason_only(ratings: Mesh) -> None:
    ratings.apply(BOOKINFO / "virtual-service-ratings-test-abort.yaml")
    jason = ratings.call("ratings", "/get", headers={"end-user": "jason"})
    assert jason.status_code == 500 and flags(jason) == {"FI"}
    assert ratings.call("ratings", "/get", headers={"end-user": "sarah"}).status_code == 200
    assert ratings.call("ratings", "/get").status_code == 200


@needs_bookinfo
def test_bookinfo_ratings_test_delay_for_jason_only(ratings: Mesh) -> None:
    doc = bookinfo_doc("virtual-service-ratings-test-delay.yaml")
    assert doc["spec"]["http"][0]["fault"]["delay"]["fixedDelay"] == "7s"
    scaled = copy.deepcopy(doc)
    scaled["spec"]["http"][0]["fault"]["delay"]["fixedDelay"] = "0.2s"  # 7 s in the sample
    ratings.apply(scaled)
    jason = ratings.call("ratings", "/get", headers={"end-user": "jason"})
    assert jason.status_code == 200 and flags(jason) == {"DI"}
    assert ratings.access_log(reporter="source").iloc[-1].duration_ms >= 200
    other = ratings.call("ratings", "/get")
    assert other.status_code == 200 and flags(other) == {"-"}


# -- retries and timeouts on a route with a fault -----------------------------------------------------
def test_requests_not_aborted_are_still_retried(httpbin: Mesh) -> None:
    httpbin.apply(vs("{abort: {httpStatus: 500, percentage: {value: 0}}}",
                     "\n    retries: {attempts: 2, retryOn: 5xx}"))
    r = httpbin.call("httpbin", "/flaky/fail/1")
    assert r.status_code == 200 and r.headers.get("x-meshlab-attempts") == "2"


def test_requests_not_delayed_still_time_out(httpbin: Mesh) -> None:
    httpbin.apply(vs("{delay: {fixedDelay: 0.01s, percentage: {value: 0}}}", "\n    timeout: 0.1s"))
    r = httpbin.call("httpbin", "/delay/0.5")
    assert r.status_code == 504 and flags(r) == {"UT"}
