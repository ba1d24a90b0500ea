"""Lab 10, circuit breaking: two DestinationRules and a question about numbers, checked on a
running mesh.

    from meshlab.labs.lab10 import q1, q2, q3, try_outlier, try_pool, ____

    pool_dr = '''...'''      # the learner writes real Istio YAML
    try_pool(pool_dr)        # what the rule does on a fresh mesh (nothing checked)
    q1.check()

Theory of operation
-------------------
Each check of q1 and q2 starts a fresh, seeded mesh (``Mesh(seed=SEED)``) running Istio's
``httpbin`` sample (Service port 8000), applies the learner's DestinationRule exactly as
``kubectl apply`` would, sends traffic from the client workload (Istio's ``curl`` pod) and
reads what happened:

* q1 (connection pool): httpbin is *slow* (``Work(latency_ms=50)``). Ten clients send requests
  back to back for ``Q1_SECONDS``. From the access logs the check measures the most requests
  httpbin was serving at once (its own sidecar's log, ``reporter="destination"``) and the most
  requests the caller's sidecar had *admitted* at once (served or waiting for a connection:
  the client sidecar's log without the refused ``UO`` lines). The rule must keep the first at
  2 or fewer and the second at 3 or fewer, refuse most requests with ``503 UO``, and still let
  httpbin serve.
* q2 (outlier detection): httpbin v1 (2 pods) is healthy, httpbin v2 (1 pod) answers ``500`` to
  everything (``Work(error_rate=1.0)``). Open-loop traffic at ``Q2_RATE``/s for ``Q2_SECONDS``;
  ``mesh.outlier_events()`` must show v2, and only v2, ejected after at most
  ``Q2_MAX_ERRORS`` errors in a row (the rule's effective ``consecutive5xxErrors``, which the
  ejection events report; the errors clients see also depend on timing), and back
  ``Q2_BACK_AFTER`` seconds (+ ``Q2_BACK_SLACK``) after its first ejection. The check also reads the effective ``maxEjectionPercent``: Envoy 1.28+ (Istio
  1.20+) ejects a host only if the ejected share, counting it, stays within the cap, so a
  value that cannot eject one of three hosts would eject nothing on a real cluster (meshlab's
  detector is more lenient here; the check is not).
* q3 (numbers): the status code and response flag of a request refused by the circuit breaker,
  and how long the third ejection in a row lasts with ``baseEjectionTime: 30s``. No mesh.

Messages point at the concept that is wrong without writing the YAML for the learner.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import pandas as pd

from meshlab.config import Resource
from meshlab.labs.blank import contains_blank
from meshlab.labs.core import Incorrect, Question, bind_questions, describe_kinds, load_yaml_answer
from meshlab.labs.core import show as _show
from meshlab.proxy.outlier import OutlierConfig

__all__ = ["SEED", "SERVICE", "PORT", "httpbin_mesh", "most_at_once", "try_pool", "try_outlier"]

#: The mesh seed every check uses.
SEED = 10
SERVICE = "httpbin"
PORT = 8000  # Istio's httpbin sample listens on 8000
FQDN = f"{SERVICE}.default.svc.cluster.local"
CLUSTER = f"outbound|{PORT}||{FQDN}"

Q1_LATENCY_MS = 50
Q1_CLIENTS = 10
Q1_SECONDS = 1.0
Q1_MAX_SERVED = 2
Q1_MAX_ADMITTED = 3
Q1_MIN_REFUSED = 0.5

Q2_RATE = 100
Q2_SECONDS = 3.5
Q2_MAX_ERRORS = 3
Q2_BACK_AFTER = 2.0
Q2_BACK_SLACK = 0.6
BAD_POD = f"{SERVICE}-v2-0"

POOL_SOLUTION = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 2
      http:
        http1MaxPendingRequests: 1
"""

OUTLIER_SOLUTION = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: httpbin
spec:
  host: httpbin
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 0.5s
      baseEjectionTime: 2s
      maxEjectionPercent: 50
"""

NUMBERS_SOLUTION = """\
refused_status = 503
refused_flag = "UO"
third_ejection_s = 90
"""


@contextmanager
def httpbin_mesh(work: Any = None, bad_replica: bool = False, seed: int = SEED) -> Iterator[Any]:
    """A fresh, started mesh running httpbin on port 8000 (v1, with ``work``); with
    ``bad_replica``, two healthy v1 pods and one v2 pod that answers 500 to everything."""
    from meshlab import Mesh, Work
    from meshlab.apps import httpbin

    mesh = Mesh(seed=seed).start()
    try:
        if bad_replica:
            mesh.deploy(SERVICE, httpbin.make_app(), replicas=2, port=PORT, work=Work(latency_ms=5))
            mesh.deploy(SERVICE, httpbin.make_app(), version="v2", port=PORT,
                        work=Work(latency_ms=5, error_rate=1.0))
        else:
            mesh.deploy(SERVICE, httpbin.make_app(), port=PORT, work=work)
        yield mesh
    finally:
        mesh.stop()


def most_at_once(log: pd.DataFrame) -> int:
    """The most requests in progress at the same moment, from access-log lines (start, duration)."""
    if log.empty:
        return 0
    starts = log["start_time"].to_numpy(dtype=float)
    ends = starts + log["duration_ms"].to_numpy(dtype=float) / 1000.0
    events = sorted([(t, 1) for t in starts] + [(t, -1) for t in ends])  # a tie: the end first
    return int(np.max(np.cumsum([step for _, step in events])))


# -- reading the learner's YAML -------------------------------------------------------------------

def _parse(text: Any, var: str) -> list[Resource]:
    """The learner's DestinationRule, validated like Istio's admission does; Incorrect if unusable."""
    resources = load_yaml_answer(text, var, "a whole DestinationRule in YAML, several lines long, starting with "
                                            "`apiVersion:` and `kind:`.")
    if [r.kind for r in resources] != ["DestinationRule"]:
        raise Incorrect(f"`{var}` should hold exactly one DestinationRule (found {describe_kinds(resources)}): "
                        "connection pools and outlier detection are traffic policies of the destination.")
    return resources


def _apply(mesh: Any, resources: list[Resource]) -> Any:
    """Apply the learner's rule; the effective traffic policy of httpbin's cluster in the client's
    sidecar (Incorrect when the rule does not govern httpbin)."""
    mesh.apply(resources)
    clusters = mesh.proxy_config("curl", "clusters")
    dr = resources[0]
    mine = clusters[(clusters["service"] == FQDN) & (clusters["subset"] == "-")
                    & (clusters["destination_rule"] == f"destinationrule/{dr.namespace}/{dr.name}")]
    if mine.empty:
        raise Incorrect("your DestinationRule does not apply to the calls to `httpbin`: check `spec.host` (the "
                        "service it is for) and the namespace.")
    config = mesh.pilot.snapshot.clusters.get(CLUSTER)
    return config.policy if config is not None else None


# -- q1: a connection pool ------------------------------------------------------------------------

def _measure_pool(resources: list[Resource]) -> dict[str, Any]:
    """Apply the rule to a slow httpbin, run ten clients; what the sidecars logged."""
    from meshlab import Work

    with httpbin_mesh(Work(latency_ms=Q1_LATENCY_MS)) as mesh:
        policy = _apply(mesh, resources)
        result = mesh.load(f"{SERVICE}:{PORT}", "/get", concurrency=Q1_CLIENTS, duration=Q1_SECONDS,
                           progress=False)
        served = mesh.access_log(service=SERVICE, reporter="destination")
        sent = mesh.access_log(service=SERVICE, reporter="source")
    df = result.df
    admitted = sent[sent["response_flags"] != "UO"]
    return {
        "policy": policy,
        "requests": len(df),
        "ok": int((df["status"] == 200).sum()),
        "uo": int((df["response_flags"] == "UO").sum()),
        "other_errors": int(((df["status"] != 200) & (df["response_flags"] != "UO")).sum()),
        "served_at_once": most_at_once(served),
        "admitted_at_once": most_at_once(admitted),
    }


class ProtectSlowService(Question):
    """A connection pool that keeps at most 2 requests at a slow httpbin and refuses the excess."""

    _vars = ["pool_dr"]
    _error_prefix = "checking your DestinationRule raised an error"
    _solution_lang = "yaml"
    _solution = POOL_SOLUTION
    _hint = [
        "Circuit breaking is the `connectionPool` of a DestinationRule's `trafficPolicy`. On HTTP/1.1 "
        "every request being served holds a connection of its own.",
        "Two numbers decide it: how many connections the caller's sidecar may open to httpbin (`tcp`), "
        "and how many more requests may wait for one of them (`http`). Beyond both, the sidecar refuses "
        "the request at once.",
        "Istio's circuit-breaking task sets both to 1. Here httpbin may serve two at once, and at most "
        "one request may wait.",
    ]

    def check(self, pool_dr: Any) -> str:
        resources = _parse(pool_dr, "pool_dr")
        m = _measure_pool(resources)
        cp = getattr(m["policy"], "connectionPool", None) if m["policy"] is not None else None
        if cp is None:
            raise Incorrect("your rule sets no connection pool for httpbin, so the sidecar never refuses "
                            f"anything: {Q1_CLIENTS} clients had up to {m['served_at_once']} requests at httpbin "
                            "at once. Limits live in `trafficPolicy.connectionPool`.")
        if m["served_at_once"] > Q1_MAX_SERVED:
            raise Incorrect(f"up to {m['served_at_once']} requests were at httpbin at the same time; it should "
                            f"never serve more than {Q1_MAX_SERVED}. Which limit caps the requests that hold a "
                            "connection to it?")
        if m["uo"] == 0:
            raise Incorrect(f"httpbin served at most {m['served_at_once']} at once, but no request was "
                            f"refused: the other clients' requests waited in the caller's sidecar (up to "
                            f"{m['admitted_at_once']} admitted at once) instead of failing fast. Which limit "
                            "caps the requests waiting for a connection?")
        if m["admitted_at_once"] > Q1_MAX_ADMITTED:
            raise Incorrect(f"up to {m['admitted_at_once'] - m['served_at_once']} requests waited in the caller's "
                            f"sidecar for a connection at the same time; at most "
                            f"{Q1_MAX_ADMITTED - Q1_MAX_SERVED} should wait, the rest should be refused at once. "
                            "Look at the limit on pending requests.")
        if m["other_errors"]:
            raise Incorrect(f"{m['other_errors']} requests failed in another way than a circuit-breaker refusal: "
                            "only the circuit breaker should turn requests away. Look at the access log in a "
                            "playground mesh.")
        share = m["uo"] / m["requests"]
        if share < Q1_MIN_REFUSED or m["ok"] < 5:
            raise Incorrect(f"{m['ok']} requests were served and {m['uo']} of {m['requests']} refused: the limits "
                            "should let httpbin work at its limit and refuse the excess.")
        return (f"httpbin never served more than {m['served_at_once']} at once, and the excess was refused at once "
                "by the caller's sidecar: the slow service is protected and its callers fail fast. (`try_pool(pool_dr)` shows "
                "the numbers.)")


# -- q2: outlier detection ------------------------------------------------------------------------

def _ejectable_hosts(policy: Any, hosts: int = 3) -> tuple[float, int]:
    """(effective maxEjectionPercent, hosts Envoy 1.28+ may eject out of ``hosts``)."""
    od = getattr(policy, "outlierDetection", None) if policy is not None else None
    mep = od.maxEjectionPercent if od is not None and od.maxEjectionPercent else 10  # Istio: 0/unset -> 10
    mep = min(float(mep), 100.0)
    return mep, sum(1 for n in range(1, hosts + 1) if n * 100.0 / hosts <= mep)


def _watch_ejections(resources: list[Resource]) -> dict[str, Any]:
    """Apply the rule in front of one bad replica; traffic; the outlier events and the answers."""
    with httpbin_mesh(bad_replica=True) as mesh:
        policy = _apply(mesh, resources)
        result = mesh.load(f"{SERVICE}:{PORT}", "/get", rate=Q2_RATE, duration=Q2_SECONDS, progress=False)
        events = mesh.outlier_events()
    df = result.df
    return {"policy": policy, "events": events, "errors": int((df["status"] >= 500).sum()),
            "bad_requests": int((df["upstream"] == BAD_POD).sum()), "requests": len(df)}


class EjectFailingReplica(Question):
    """Outlier detection that ejects the failing replica quickly and lets it back after about 2 s."""

    _vars = ["outlier_dr"]
    _error_prefix = "checking your DestinationRule raised an error"
    _solution_lang = "yaml"
    _solution = OUTLIER_SOLUTION
    _hint = [
        "Ejecting a failing replica is `outlierDetection`, in a DestinationRule's `trafficPolicy`. Its "
        "defaults (5 errors, a sweep every 10 s, 30 s out, at most 10 % of the hosts) are too slow and too "
        "strict for this service.",
        "An ejected replica comes back at the first sweep (`interval`) after its ejection time "
        "(`baseEjectionTime` x the number of its ejections) is over: both matter for when it returns.",
        "`maxEjectionPercent` counts the host being ejected: with three replicas, one is a third of them.",
    ]

    def check(self, outlier_dr: Any) -> str:
        resources = _parse(outlier_dr, "outlier_dr")
        w = _watch_ejections(resources)
        od = getattr(w["policy"], "outlierDetection", None) if w["policy"] is not None else None
        if od is None:
            raise Incorrect(f"your rule sets no outlier detection for httpbin: the bad replica answered all "
                            f"{w['bad_requests']} of its requests with 500 and was never taken out. Ejection is "
                            "configured in `trafficPolicy.outlierDetection`.")
        ev = w["events"]
        wrong = sorted(set(ev.loc[ev["action"] == "eject", "pod"]) - {BAD_POD})
        if wrong:
            raise Incorrect(f"healthy replicas were ejected too ({', '.join(wrong)}): they never fail. "
                            "Which errors does your rule count?")
        mine = ev[ev["pod"] == BAD_POD].reset_index(drop=True)
        ejections = mine[mine["action"] == "eject"]
        if ejections.empty:
            mep, ejectable = _ejectable_hosts(w["policy"])
            if ejectable < 1:
                yours = f"{mep:g} % in your rule" if od.maxEjectionPercent else "unset in your rule: Istio's default, 10 %"
                raise Incorrect(f"the bad replica answered {w['bad_requests']} requests with 500 and was never "
                                "ejected: every ejection was refused by the cap (`ejections_overflow`). Envoy 1.28+ "
                                "(Istio 1.20+) ejects a host only if the share of ejected hosts, counting it, stays "
                                f"within `maxEjectionPercent` ({yours}), and one of httpbin's three replicas is "
                                "more than that.")
            raise Incorrect(f"the bad replica answered {w['bad_requests']} requests with 500 in {Q2_SECONDS:g} s "
                            "and was never ejected. A 500 is not a gateway error (502, 503, 504): which setting "
                            "counts every 5xx, and is it low enough?")
        threshold = OutlierConfig.from_policy(w["policy"]).consecutive_5xx  # type: ignore[union-attr]
        if threshold is not None and threshold > Q2_MAX_ERRORS:
            raise Incorrect(f"clients got {w['errors']} errors in {Q2_SECONDS:g} s: the bad replica was ejected "
                            f"only after {threshold} errors in a row each time ({ejections['reason'].iloc[0]}); it "
                            f"should be out after at most {Q2_MAX_ERRORS}.")
        first = mine.index[mine["action"] == "eject"][0]
        back = mine[(mine.index > first) & (mine["action"] == "return")]
        if back.empty:
            raise Incorrect(f"the bad replica was ejected and not back {Q2_SECONDS - mine['t'][first]:.1f} s later: "
                            f"it should return about {Q2_BACK_AFTER:g} s after its first ejection. A replica returns "
                            "at the first sweep (`interval`) after its ejection time is over.")
        out_for = float(back["t"].iloc[0] - mine["t"][first])
        if out_for < Q2_BACK_AFTER - 0.05:
            raise Incorrect(f"the bad replica was back {out_for:.1f} s after its first ejection; it should stay out "
                            f"about {Q2_BACK_AFTER:g} s.")
        if out_for > Q2_BACK_AFTER + Q2_BACK_SLACK:
            raise Incorrect(f"the bad replica was back {out_for:.1f} s after its first ejection, later than about "
                            f"{Q2_BACK_AFTER:g} s: its ejection time may be right, but returns happen only at a "
                            "sweep, every `interval`.")
        return ("httpbin-v2-0, and only it, was ejected after a few errors and came back about 2 s later, at a "
                "sweep; ejected again, it stays out longer each time. (`try_outlier(outlier_dr)` shows the events.)")


# -- a playground -----------------------------------------------------------------------------------

def _playground(text: Any, var: str, run: Callable[[list[Resource]], dict[str, Any]]) -> dict[str, Any] | None:
    """What ``run`` (a check's measurement) finds with the learner's rule ``text``; None after showing
    why there is nothing to run (a ``____`` left, a rule the check would not use)."""
    if contains_blank(text):
        _show("⭕ Replace every ____ in your YAML first, then run this again.")
        return None
    try:
        return run(_parse(text, var))
    except Incorrect as exc:
        _show(f"❌ {exc}")
        return None


def try_pool(pool_dr: Any) -> pd.DataFrame | None:
    """Apply ``pool_dr`` to a fresh mesh with a slow httpbin and let ten clients send requests back to
    back for a second, as q1's check does; one row of what happened (nothing is checked)."""
    m = _playground(pool_dr, "pool_dr", _measure_pool)
    if m is None:
        return None
    return pd.DataFrame([{"requests": m["requests"], "served (200)": m["ok"], "refused at once": m["uo"],
                          "other errors": m["other_errors"], "most at httpbin at once": m["served_at_once"],
                          "most admitted at once": m["admitted_at_once"]}])


def try_outlier(outlier_dr: Any) -> pd.DataFrame | None:
    """Apply ``outlier_dr`` in front of httpbin's bad replica and send traffic, as q2's check does; the
    ejections and returns that outlier detection decided (nothing is checked)."""
    w = _playground(outlier_dr, "outlier_dr", _watch_ejections)
    if w is None:
        return None
    _show(f"{w['errors']} of {w['requests']} requests failed; {w['bad_requests']} went to {BAD_POD}.")
    return w["events"][["t", "pod", "action", "times_ejected", "ejection_s", "reason"]].round({"t": 2})


# -- q3: numbers ----------------------------------------------------------------------------------

FLAG_MEANINGS = {
    "UH": "no healthy upstream: every host is down or ejected",
    "UF": "the sidecar could not connect to the upstream",
    "URX": "the retry limit was reached",
    "UT": "the route timeout expired (504)",
    "UC": "the upstream closed the connection",
    "NR": "no route matched",
    "NC": "no such cluster (a subset missing from the DestinationRule)",
    "DC": "the downstream client hung up",
    "FI": "fault injection aborted the request",
    "DI": "fault injection delayed the request",
    "RL": "a rate limiter refused the request",
}


def _seconds(value: Any) -> float | None:
    """90, 90.0, "90", "90s", "1m30s", "1.5m" -> seconds; None when it is not a duration."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip().lower().replace(" ", "")
        if re.fullmatch(r"\d+(\.\d+)?", text):
            return float(text)
        parts = re.findall(r"(\d+(?:\.\d+)?)(ms|s|m|h)", text)
        if parts and "".join(n + u for n, u in parts) == text:
            scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
            return sum(float(n) * scale[u] for n, u in parts)
    return None


class CircuitBreakerNumbers(Question):
    """Status and flag of a refused request; length of the third ejection with baseEjectionTime 30s."""

    _vars = ["refused_status", "refused_flag", "third_ejection_s"]
    _solution_lang = "python"
    _solution = NUMBERS_SOLUTION
    _hint = [
        "Section 2 of notebook 10 shows the refused requests in the load results and in the counters of the "
        "caller's sidecar.",
        "An ejection lasts `baseEjectionTime` times something that grows by one at each ejection in a row.",
    ]

    def check(self, refused_status: Any, refused_flag: Any, third_ejection_s: Any) -> str:
        try:
            status = int(refused_status)
        except (TypeError, ValueError):
            raise Incorrect("`refused_status` should be an HTTP status code, a number such as 200.") from None
        if status != 503:
            if status == 429:
                raise Incorrect("429 is what a rate limiter answers; a request refused by the connection pool "
                                "gets another status.")
            if status == 504:
                raise Incorrect("504 is a timeout (flag UT); the circuit breaker does not wait for anything.")
            if status < 500:
                raise Incorrect(f"{status} is not an error of the server side: the caller's sidecar refuses the "
                                "request because the upstream is overloaded.")
            raise Incorrect(f"{status} is not the status of a request refused by the circuit breaker: look at the "
                            "load results of notebook 10, section 2.")
        flag = str(refused_flag).strip().upper()
        if flag != "UO":
            meaning = FLAG_MEANINGS.get(flag)
            if meaning:
                raise Incorrect(f"{flag} means {meaning}; the circuit breaker's refusal has a flag of its own.")
            raise Incorrect(f"{refused_flag!r} is not the response flag of a request refused by the circuit "
                            "breaker: it is two capital letters, shown in the access log and in "
                            "`response_flags`.")
        seconds = _seconds(third_ejection_s)
        if seconds is None:
            raise Incorrect("`third_ejection_s` should be a number of seconds (or a duration such as \"45s\").")
        if seconds == 30:
            raise Incorrect("30 s is the first ejection. Ejections get longer when a host keeps failing.")
        if seconds == 60:
            raise Incorrect("60 s is the second ejection in a row.")
        if seconds in (120.0, 240.0, 270.0, 810.0):
            raise Incorrect(f"{seconds:g} s: the ejection time grows by the same step at each ejection, it does "
                            "not double or triple.")
        if seconds != 90:
            raise Incorrect(f"{seconds:g} s is not it: an ejection lasts `baseEjectionTime` times the number of "
                            "times the host has been ejected (in a row).")
        return ("503 with the flag UO (upstream overflow), answered by the caller's sidecar; and the third "
                "ejection in a row lasts 3 x 30 s = 90 s.")


q1 = ProtectSlowService()
q2 = EjectFailingReplica()
q3 = CircuitBreakerNumbers()

__all__ = [*__all__, *bind_questions(globals())]
