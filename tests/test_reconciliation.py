"""Reconciliation: every request is accounted for, once, on both sides of the mesh.

10,000 requests (closed loop, 32 clients) go to httpbin over two routes at once: ``/status/200``
with a 30 % injected abort, and ``/flaky/percent/20`` with ``retries: {attempts: 3, retryOn:
5xx}``. Then:

* the caller's sidecar (``istio_requests_total{reporter="source"}``) counts every request the
  client sent exactly once, under the code and flags the client saw;
* the servers' sidecars (``reporter="destination"``) count exactly the tries that reached them:
  the requests not aborted (aborts never leave the caller) plus every retry;
* the access logs and the Envoy counters (aborts injected, retries, retry limit exceeded) tell
  the same story.
"""

from __future__ import annotations

from collections import Counter

import pandas as pd

from meshlab import Mesh
from meshlab.apps.httpbin import make_app

N = 10_000
CONCURRENCY = 32

VS = """
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: httpbin}
spec:
  hosts: [httpbin]
  http:
  - name: aborts
    match: [{uri: {prefix: /status}}]
    fault: {abort: {httpStatus: 500, percentage: {value: 30}}}
    route: [{destination: {host: httpbin}}]
  - name: retried
    match: [{uri: {prefix: /flaky}}]
    retries: {attempts: 3, retryOn: 5xx}
    route: [{destination: {host: httpbin}}]
"""


def istio_requests(mesh: Mesh, reporter: str) -> pd.DataFrame:
    m = mesh.metrics()
    m = m[(m.name == "istio_requests_total") & (m.reporter == reporter)]
    return m[m.destination_service_name == "httpbin"]


def counter_value(mesh: Mesh, suffix: str) -> int:
    s = mesh.stats(pod="curl")
    return int(s[s.stat.str.endswith(suffix)].value.sum())


def test_every_request_is_counted_once_on_each_side() -> None:
    # Tracing plays no part in the accounting and costs about half the run time: off here.
    with Mesh(seed=0, trace_sampling=None) as mesh:
        reconcile(mesh)


def reconcile(mesh: Mesh) -> None:
    mesh.deploy("httpbin", make_app(), replicas=2)
    mesh.apply(VS)
    half = CONCURRENCY // 2
    runs = [mesh.load("httpbin", path, concurrency=half, requests=N // 2, progress=False, background=True)
            for path in ("/status/200", "/flaky/percent/20")]
    aborts_df, flaky_df = (run.result(timeout=120) for run in runs)  # type: ignore[union-attr]
    sent = pd.concat([aborts_df.df, flaky_df.df], ignore_index=True)
    assert len(sent) == N

    # what the client saw
    assert set(aborts_df.df.status) == {200, 500}
    aborted = int((aborts_df.df.status == 500).sum())
    assert set(aborts_df.df[aborts_df.df.status == 500].response_flags) == {"FI"}
    assert abs(aborted - 0.3 * N / 2) < 4.5 * (N / 2 * 0.3 * 0.7) ** 0.5
    assert set(flaky_df.df.status) <= {200, 503}
    gave_up = int((flaky_df.df.status == 503).sum())
    assert set(flaky_df.df[flaky_df.df.status == 503].response_flags) <= {"URX"}
    assert set(flaky_df.df[flaky_df.df.status == 200].response_flags) == {"-"}

    # the caller's sidecar: every request once, with the code and flags the client saw
    source = istio_requests(mesh, "source")
    assert set(source.pod) == {"curl"}
    assert int(source.value.sum()) == N
    seen = Counter(zip(sent.status.astype(str), sent.response_flags, strict=True))
    counted: Counter[tuple[str, str]] = Counter()
    for code, flags, value in zip(source.response_code, source.response_flags, source.value, strict=True):
        counted[(code, flags)] += int(value)
    assert counted == seen

    # Envoy's counters in the caller's sidecar
    retries = counter_value(mesh, ".upstream_rq_retry")
    assert counter_value(mesh, "fault.aborts_injected") == aborted
    assert counter_value(mesh, ".upstream_rq_retry_limit_exceeded") == gave_up
    assert counter_value(mesh, ".upstream_rq_retry_overflow") == 0
    assert retries > 0.2 * N / 2 * 0.8  # about a quarter of the first tries fail, and some retries too

    # the servers' sidecars: each try that reached a replica, once
    destination = istio_requests(mesh, "destination")
    assert set(destination.pod) == {"httpbin-v1-0", "httpbin-v1-1"}
    tries = (N // 2 - aborted) + N // 2 + retries
    assert int(destination.value.sum()) == tries
    by_code = destination.groupby("response_code").value.sum().to_dict()
    failed_tries = retries + gave_up  # every failed try was either retried or the last one
    assert by_code == {"200": tries - failed_tries, "503": failed_tries}
    assert set(destination.source_workload) == {"curl"}

    # the access logs agree, request by request
    src_log = mesh.access_log(reporter="source")
    dst_log = mesh.access_log(reporter="destination")
    assert len(src_log) == N and src_log.request_id.is_unique
    assert len(dst_log) == tries
    reached = set(dst_log.request_id)
    aborted_ids = set(src_log[src_log.response_flags == "FI"].request_id)
    assert len(aborted_ids) == aborted and not aborted_ids & reached
    assert reached == set(src_log.request_id) - aborted_ids
    per_request = dst_log.groupby("request_id").size()
    assert per_request.max() <= 4 and int((per_request - 1).sum()) == retries
