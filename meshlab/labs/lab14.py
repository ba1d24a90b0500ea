"""Lab 14, find the fault: a running shop with a hidden fault, and only the telemetry to find it.

    from meshlab.labs.lab14 import start_lab, q1, q2, ____

    mesh = start_lab()              # the shop's microservices, one hidden fault, a few seconds of traffic
    ...                             # mesh.metrics(), mesh.access_log(), mesh.traces(), service_graph(mesh)
    faulty_workload = "..."         # the workload where the requests fail
    response_flag = "..."           # the Envoy response flag that says why
    q1.check()
    checkout_p99_ms = ...           # the p99 latency of checkout, as Istio's dashboards compute it
    q2.check()

Theory of operation
-------------------
``start_lab(seed)`` starts a fresh, seeded mesh running the e-commerce shop as microservices
(``meshlab.apps.shop``), hides **one fault** in it, chosen from the seed, then drives every
feature of the shop for a few seconds (``shop.drive``, open loop) and keeps the mesh running for
the learner to inspect. The faults, each with the response flag the telemetry shows:

==============  ==========================================================  ======
fault           what happens                                                flag
==============  ==========================================================  ======
crashed pod     the service runs 2 pods; one pod's app has crashed but its  ``UF``
                readiness probe still passes (it checks only the sidecar),
                so its sidecar keeps receiving requests and cannot reach
                its app: ``503 UF``, reported by that pod's sidecar; the
                callers' retries (Istio's default) hide most of it
no endpoints    the service was scaled to zero pods: the callers' sidecars  ``UH``
                find no healthy upstream, ``503 UH``; services that call
                it fail in turn (their own 503 carries no flag)
fault left on   a VirtualService injects an abort (``503``) into 30 % of    ``FI``
                the requests to the service, in the callers' sidecars
==============  ==========================================================  ======

The truth (scenario, service, flag) is kept in this module for the last lab started; the
checks compare the learner's answers with it. Messages point at the telemetry to read (reporter,
flags, call chain) and never name the faulty workload or its flag. ``q2`` compares with
``histogram_quantile(0.99, ...)`` over checkout's destination-side duration histogram, accepting
any value inside the histogram bucket of that estimate, or within 10 % of it.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

from meshlab.labs.core import Incorrect, Question, bind_questions
from meshlab.labs.core import show as _show

__all__ = ["SEED", "SCENARIOS", "start_lab"]

#: The seed of the lab's mesh (and of the fault it hides).
SEED = 14
#: The faults a lab can hide: scenario -> (services it may hit, response flag).
SCENARIOS: dict[str, tuple[tuple[str, ...], str]] = {
    "crashed pod": (("cart", "listing", "details", "payment"), "UF"),
    "no endpoints": (("payment", "cart", "listing"), "UH"),
    "fault left on": (("listing", "details", "cart", "payment"), "FI"),
}
RATE = 6.0  # requests per second per feature
DURATION = 3.0  # seconds of traffic
CHECKOUT = "checkout-v1"


@dataclass
class _Lab:
    mesh: Any
    scenario: str
    service: str
    flag: str
    checkout_p99_ms: float
    seed: int

    @property
    def workload(self) -> str:
        return f"{self.service}-v1"


_current: _Lab | None = None


def _pick(seed: int) -> tuple[str, str, str]:
    rng = random.Random(f"lab14:{seed}")
    scenario = rng.choice(sorted(SCENARIOS))
    services, flag = SCENARIOS[scenario]
    return scenario, rng.choice(services), flag


def _abort_yaml(service: str) -> str:
    return f"""\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: {service}
spec:
  hosts:
  - {service}
  http:
  - fault:
      abort:
        httpStatus: 503
        percentage:
          value: 30
    route:
    - destination:
        host: {service}
"""


def start_lab(seed: int = SEED, duration: float = DURATION, quiet: bool = False) -> Any:
    """Start the lab's mesh: the shop with one hidden fault and ``duration`` seconds of traffic.
    Returns the running mesh (a previous lab's mesh is stopped). Another ``seed`` hides another
    fault, for practice."""
    global _current
    from meshlab import Mesh
    from meshlab.apps import shop

    if _current is not None:
        _current.mesh.stop()
        _current = None
    scenario, service, flag = _pick(seed)
    # probe_period: how long a crashed pod stays in the endpoints; here its readiness probe never
    # notices (it checks the sidecar, not the app), so for the whole lab.
    mesh = Mesh(seed=seed, trace_sampling=100, probe_period=3600.0).start()
    try:
        shop.deploy_microservices(mesh, replicas={service: 2} if scenario == "crashed pod" else 1)
        if scenario == "crashed pod":
            mesh.kill(service, replica=1)
        elif scenario == "no endpoints":
            mesh.scale(service, 0)
        else:
            mesh.apply(_abort_yaml(service))
        traffic = shop.drive(mesh, {feature: RATE for feature in shop.FEATURES}, duration)
        p99 = _checkout_p99(mesh)
    except BaseException:
        mesh.stop()
        raise
    _current = _Lab(mesh, scenario, service, flag, p99, seed)
    if not quiet:
        seen = traffic.assign(error=(traffic["status"] >= 500) | (traffic["status"] == 0))
        table = seen.groupby("feature", sort=False)["error"].agg(requests="size", errors="sum")
        _show("The shop is running with one fault hidden in it. What its users saw "
              f"({len(traffic)} requests in {duration:g} s):\n{table.to_string()}\n"
              "Find the fault from the telemetry: mesh.metrics(), mesh.access_log(), mesh.traces(), "
              "meshlab.telemetry.service_graph(mesh).")
    return mesh


def _checkout_p99(mesh: Any) -> float:
    summary = mesh.service_summary(by="destination_workload").set_index("destination_workload")
    return float(summary.loc[CHECKOUT, "p99_ms"]) if CHECKOUT in summary.index else float("nan")


def _lab() -> _Lab:
    if _current is None:
        raise Incorrect("there is no lab mesh yet: run `mesh = start_lab()` first, then look at its telemetry.")
    return _current


def _workloads(_lab: _Lab) -> set[str]:
    from meshlab.apps import shop

    return {f"{s}-v1" for s in shop.SERVICES}


# -- q1 ---------------------------------------------------------------------------------------------

SOLUTION_Q1 = """\
m = mesh.metrics()
flagged = m[(m["name"] == "istio_requests_total") & (m["response_flags"] != "-")]
# URX only says that a caller's retries ran out; the flag of the tries themselves says why
flagged = flagged[~flagged["response_flags"].str.contains("URX")]
row = flagged.sort_values("value").iloc[-1]
response_flag = row["response_flags"]
# no host was picked (FI, UH, ...): the workload is unknown, the service is named
faulty_workload = (row["destination_workload"] if row["destination_workload"] != "unknown"
                   else row["destination_service_name"] + "-v1")
"""


class FindTheFault(Question):
    """Name the faulty workload and the response flag its failed requests carry."""

    _vars = ["faulty_workload", "response_flag"]
    _solution = SOLUTION_Q1
    _hint = [
        "Start from what the sidecars counted: `mesh.metrics()` rows named `istio_requests_total` "
        "whose `response_code` is 5xx. Which workloads answered with errors, and which callers saw errors?",
        "An error can be a consequence: a service fails because a service it calls fails. Compare "
        "`reporter='destination'` (what servers answered) with `reporter='source'` (what callers saw), and "
        "follow the failures down the chain of calls (`meshlab.telemetry.service_graph(mesh)` draws it).",
        "The `response_flags` label, and the `response_flags` column of `mesh.access_log()`, say *why* a request "
        "failed, written by the sidecar closest to the failure. `URX` only says that retries ran out. "
        "`meshlab.FLAGS` explains every flag.",
    ]

    def check(self, faulty_workload: Any, response_flag: Any) -> str:
        lab = _lab()
        if not isinstance(faulty_workload, str) or not isinstance(response_flag, str):
            raise Incorrect("`faulty_workload` and `response_flag` should both be strings, e.g. "
                            "`faulty_workload = \"login-v1\"` and `response_flag = \"UT\"`.")
        workload_ok = self._workload_ok(lab, faulty_workload.strip().lower())
        flag = response_flag.strip().upper()
        flag_ok = flag == lab.flag
        if workload_ok and flag_ok:
            return _EXPLAIN[lab.scenario].format(workload=lab.workload, service=lab.service, flag=lab.flag)
        problems = []
        if not workload_ok:
            problems.append(self._workload_hint(lab, faulty_workload.strip().lower()))
        else:
            problems.append("the workload is right.")
        if not flag_ok:
            problems.append(_flag_hint(flag))
        elif not workload_ok:
            problems.append("The flag is right.")
        raise Incorrect(" ".join(problems))

    @staticmethod
    def _workload_ok(lab: _Lab, name: str) -> bool:
        pods = {f"{lab.workload}-{i}" for i in range(2)} if lab.scenario == "crashed pod" else set()
        return name in {lab.workload, lab.service} | pods

    @staticmethod
    def _workload_hint(lab: _Lab, name: str) -> str:
        if name in ("curl", "istio-ingressgateway"):
            return f"`{name}` is the client that sends the users' requests, not a service of the shop."
        known = _workloads(lab) | {w.rsplit("-", 1)[0] for w in _workloads(lab)}
        if name not in known and not any(name.startswith(w + "-") for w in _workloads(lab)):
            return (f"`{name}` is not a workload of this mesh. Workloads are named `<app>-<version>`, like "
                    "`login-v1`; `mesh.metrics()['destination_workload']` lists them.")
        workload = name if name.endswith("-v1") else (name.rsplit("-", 1)[0] if name.count("-") >= 2 else f"{name}-v1")
        if _failed_as_destination(lab, workload):
            return (f"`{workload}` does answer with errors, but is it the cause? Look at what its own "
                    "calls to other services got (its sidecar's `reporter='source'` rows, or the access log "
                    "of its pod): a service often fails because something it calls fails.")
        return (f"the telemetry shows no failure in the requests `{workload}` served. Look for the requests "
                "that carry a response flag, and for the service they were going to.")


def _failed_as_destination(lab: _Lab, workload: str) -> bool:
    try:
        m = lab.mesh.metrics() if lab.mesh.running else None
    except Exception:
        m = None
    if m is None or m.empty:
        return False
    m = m[(m["name"] == "istio_requests_total") & (m["reporter"] == "destination")
          & (m["destination_workload"] == workload)]
    return bool((m[m["response_code"].str.startswith("5")]["value"] > 0).any())


def _flag_hint(flag: str) -> str:
    from meshlab.proxy.flags import FLAGS

    if flag in ("", "-"):
        return ("`-` means no flag: the request ended normally as far as the sidecars know. The failed requests "
                "that matter carry a flag; look at the `response_flags` of the 5xx requests.")
    if flag == "URX":
        return ("`URX` is what a caller's sidecar reports when its retries ran out: it says that retries "
                "happened, not why each try failed. Look for the flag of the tries themselves.")
    if flag not in FLAGS:
        return f"`{flag}` is not one of Envoy's response flags (`meshlab.FLAGS` lists them)."
    return (f"`{flag}` ({FLAGS[flag]}) is not the flag the failed requests carry: read the `response_flags` "
            "of the requests that failed, in the metrics or the access log.")


_EXPLAIN = {
    "crashed pod": "one of the two pods of {workload} had crashed while its readiness probe kept passing. "
                   "Its sidecar could not reach its app and answered `503 {flag}`; the callers' sidecars "
                   "retried on the healthy pod (Istio's default retries), so users hardly noticed.",
    "no endpoints": "{workload} had been scaled to zero pods. The callers' sidecars found no healthy upstream "
                    "(`503 {flag}`, destination workload `unknown`), and the services calling it failed in turn.",
    "fault left on": "a VirtualService for {service} still injected an abort into 30 % of its requests: the "
                     "callers' sidecars answered `503 {flag}` themselves and {service} never saw those requests. "
                     "`mesh.config()` shows it; remove it with `mesh.delete('VirtualService', '{service}')`.",
}


# -- q2 ---------------------------------------------------------------------------------------------

SOLUTION_Q2 = """\
summary = mesh.service_summary(by="destination_workload").set_index("destination_workload")
checkout_p99_ms = summary.loc["checkout-v1", "p99_ms"]
"""


def _bucket(value: float) -> tuple[float, float]:
    """The bounds (lower, upper] of Istio's duration bucket holding ``value``."""
    from meshlab.telemetry.metrics import DURATION_BUCKETS_MS

    lower = 0.0
    for bound in DURATION_BUCKETS_MS:
        if value <= bound:
            return lower, float(bound)
        lower = float(bound)
    return lower, float("inf")


class CheckoutP99(Question):
    """The p99 latency of checkout, as Istio's dashboards compute it."""

    _vars = ["checkout_p99_ms"]
    _solution = SOLUTION_Q2
    _hint = [
        "Istio's dashboards compute percentiles from the histogram `istio_request_duration_milliseconds` "
        "(its `_bucket` series), as measured by the **destination's** sidecar (`reporter='destination'`), "
        "in milliseconds.",
        "`mesh.service_summary(by='destination_workload')` runs that query for every workload, over the whole "
        "run; or compute it yourself with `meshlab.telemetry.histogram_quantile` over "
        "`mesh.metrics(buckets=True)`.",
    ]

    def check(self, checkout_p99_ms: Any) -> str:
        lab = _lab()
        try:
            value = float(checkout_p99_ms)
        except (TypeError, ValueError):
            raise Incorrect("`checkout_p99_ms` should be a number of milliseconds.") from None
        truth = _checkout_p99(lab.mesh) if lab.mesh.running else lab.checkout_p99_ms
        if truth != truth:
            raise Incorrect("checkout received no request in this lab's mesh: run `mesh = start_lab()` again.")
        low, high = _bucket(truth)
        if low < value <= high or abs(value - truth) <= 0.1 * truth:
            return ("that is checkout's p99 as a Grafana dashboard would show it: interpolated inside the "
                    "histogram bucket where the 99th percentile falls.")
        if 0 < value < 10 and 0.5 < value * 1000 / truth < 2:
            raise Incorrect("that looks like seconds; Istio's duration metric is in milliseconds.")
        if value < truth:
            raise Incorrect("too low: is that the p99 (not the p50 or p90), of `checkout-v1` as a destination, "
                            "over the whole run?")
        raise Incorrect("too high: is that the p99 of the requests `checkout-v1` *served* (reporter "
                        "`destination`), not what its callers measured, and for checkout only?")


q1 = FindTheFault()
q2 = CheckoutP99()

__all__ = [*__all__, *bind_questions(globals())]

