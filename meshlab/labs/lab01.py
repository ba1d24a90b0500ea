"""Lab 01, monolith vs microservices: scale for a spike, predict how far a fault reaches, contain it.

    from meshlab.labs.lab01 import q1, q2, q3, try_spike, ____

    spike_replicas = {"cart": 2}        # the learner's answer
    try_spike(spike_replicas)           # what the spike does to these pods, on a fresh mesh
    q1.check()

Theory of operation
-------------------
Every check starts a fresh mesh (``Mesh(seed=SEED)``) with the shop of ``meshlab.apps.shop``
(the same work model as notebook 01: 4 workers per service pod, about 100 ms per add-to-cart),
does what the question describes, measures, and stops the mesh:

* q1 (scale for the spike): the microservices with the learner's ``spike_replicas`` under
  ``SPIKE`` (100 add-to-cart requests/s, 6/s for every other feature) for ``SPIKE_SECONDS``.
  Correct when the pods reserve at most ``BUDGET_MB`` (checked first, without a mesh) and every
  feature answers at least 97 % of its requests without error.
* q2 (predict the blast radius): both builds under everyday traffic at once; a bug makes every
  request that runs the product-details code crash its process (a crash loop), and the features
  that failed more than 10 % of their requests are "down". The learner's two sets must match.
  (A crash loop, not a single crash: Istio's retries at every hop can outlast a short outage and
  turn its errors into slow answers.)
* q3 (contain a pod crash): the microservices with ``crash_replicas`` under everyday traffic;
  one ``details`` pod is killed. Correct when every feature stays at 97 % or more and the pods
  reserve at most ``CRASH_BUDGET_MB``.

Messages point at the concept (which feature carries the load, who calls whom, where a retry
can go) without giving the numbers or names of the answer.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import pandas as pd

from meshlab.apps import shop
from meshlab.labs.blank import BLANK_TEXT, contains_blank
from meshlab.labs.core import Incorrect, Question, bind_questions, show
from meshlab.mesh import Mesh

__all__ = ["BUDGET_MB", "CRASH_BUDGET_MB", "SEED", "SPIKE", "SPIKE_SECONDS", "memory_mb", "try_spike"]

#: The mesh seed every check uses.
SEED = 11
#: Black Friday, as in notebook 01: add-to-cart at 100 requests/s, everything else at 6/s.
SPIKE: dict[str, float] = {feature: 6.0 for feature in shop.FEATURES} | {"cart": 100.0}
SPIKE_SECONDS = 1.5
#: Memory the pods of q1 may reserve (replicas x footprint), MB.
BUDGET_MB = 2048.0
#: Memory the pods of q3 may reserve, MB.
CRASH_BUDGET_MB = 1600.0
#: Share of requests each feature must answer without error.
GOOD = 0.97

SPIKE_SOLUTION = {"cart": 4}
CRASH_SOLUTION = {"details": 2}
MONOLITH_DOWN = set(shop.FEATURES)
MICROSERVICES_DOWN = {"home", "details"}


def _replicas(value: Any, var: str) -> dict[str, int]:
    """The learner's ``{service: replicas}`` completed with 1 for every other service."""
    if not isinstance(value, Mapping):
        raise Incorrect(f"`{var}` should be a dict of service name to number of pods, like "
                        f"`{{\"login\": 2}}`; yours is a `{type(value).__name__}`.")
    unknown = sorted(str(k) for k in value if k not in shop.SERVICES)
    if unknown:
        hint = " (the monolith is not part of this question)" if shop.MONOLITH in unknown else ""
        raise Incorrect(f"`{var}` names services the shop does not have: {', '.join(unknown)}{hint}. "
                        f"Its services are: {', '.join(shop.SERVICES)}.")
    for name, n in value.items():
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 20:
            raise Incorrect(f"the number of pods of `{name}` should be a whole number from 1 to 20; "
                            f"yours is {n!r}.")
    return {name: int(value.get(name, 1)) for name in shop.SERVICES}


def _memory(replicas: Mapping[str, int]) -> float:
    return float(sum(replicas.get(name, 1) * spec.footprint_mb for name, spec in shop.SERVICES.items()))


def memory_mb(replicas: Any) -> float | None:
    """Memory the microservices' pods reserve with ``replicas`` (1 pod for services not named), MB.
    Shows what is wrong instead (and returns None) for a blank or malformed answer."""
    if contains_blank(replicas):
        show(f"⭕ replace the {BLANK_TEXT} first.")
        return None
    try:
        return _memory(_replicas(replicas, "replicas"))
    except Incorrect as exc:
        show(f"❌ {exc}")
        return None


def _spike(replicas: dict[str, int], seed: int = SEED) -> pd.DataFrame:
    with Mesh(seed=seed) as mesh:
        shop.deploy_microservices(mesh, replicas=replicas)
        result = shop.drive(mesh, SPIKE, SPIKE_SECONDS)
    assert isinstance(result, pd.DataFrame)
    return result


def try_spike(replicas: Any) -> pd.DataFrame | None:
    """Run the Black Friday spike on a fresh mesh with ``replicas`` and show, per feature, the
    share of requests answered without error and the median latency (None, with a note, for a
    blank or malformed answer)."""
    if contains_blank(replicas):
        show(f"⭕ replace the {BLANK_TEXT} first.")
        return None
    try:
        pods = _replicas(replicas, "replicas")
    except Incorrect as exc:
        show(f"❌ {exc}")
        return None
    df = _spike(pods)
    table = pd.DataFrame({
        "answered without error (%)": (100 * shop.availability(df)).round(1),
        "median latency (ms)": df.groupby("feature", sort=False).latency_ms.median().round(0),
    }).reindex(list(shop.FEATURES))
    table.index.name = f"feature ({_memory(pods):.0f} MB reserved)"
    return table


# -- the questions --------------------------------------------------------------------------------

class ScaleForTheSpike(Question):
    """Serve the Black Friday spike within a memory budget."""

    _vars = ["spike_replicas"]
    _hint = [
        "Look at the spike: which feature gets almost all the extra traffic, and which service serves it?",
        "One pod has 4 workers and an add-to-cart takes about 100 ms, so one cart pod serves about 40 "
        "requests/s at full load. Leave some headroom: a pod running at 100 % builds a queue.",
    ]
    _solution = ('# Only add-to-cart grew: 100 req/s x 0.1 s = 10 busy workers, 4 per pod -> 3 pods at 83 %;\n'
                 '# 4 pods (66 %) leave headroom, and reserve 1376 + 3 x 160 = 1856 MB.\n'
                 'spike_replicas = {"cart": 4}')
    _correct_message = "the spike was served within the memory budget."

    def check(self, spike_replicas: Any) -> str:
        pods = _replicas(spike_replicas, "spike_replicas")
        memory = _memory(pods)
        if memory > BUDGET_MB:
            raise Incorrect(f"these pods reserve {memory:.0f} MB, over the {BUDGET_MB:.0f} MB budget. Scale only "
                            "what the spike needs: which feature gets the extra traffic?")
        availability = shop.availability(_spike(pods))
        short = [f for f in shop.FEATURES if availability.get(f, 0.0) < GOOD]
        if short:
            raise Incorrect(f"during the spike, {', '.join(short)} answered fewer than {GOOD:.0%} of requests "
                            "without error: their pods could not keep up. How many requests per second does one "
                            "pod of that service serve?")
        extra = {name: n for name, n in pods.items() if n > 1}
        scaled = ", ".join(f"{name} x{n}" for name, n in extra.items())
        return f"with {scaled} every feature was served during the spike, reserving {memory:.0f} MB."


class PredictTheBlastRadius(Question):
    """Which features fail when the product-details code crashes its process, again and again?"""

    _vars = ["down_in_monolith", "down_in_microservices"]
    _hint = [
        "In the monolith, which process runs the product-details code, and what else runs in it?",
        "In the microservices, follow the calls: a feature fails if its own service or a service it "
        "calls is down. Which services call details?",
    ]
    _solution = ('down_in_monolith = {"home", "login", "listing", "details", "cart", "checkout"}  # one process\n'
                 'down_in_microservices = {"details", "home"}  # details, and the storefront that calls it')
    _correct_message = "that is how far the fault reached in each build."

    @staticmethod
    def _features(value: Any, var: str) -> set[str]:
        if isinstance(value, str) or not isinstance(value, Iterable):
            raise Incorrect(f"`{var}` should be a set of feature names, like `{{\"login\", \"cart\"}}`.")
        names = {str(v) for v in value}
        unknown = sorted(names - set(shop.FEATURES))
        if unknown:
            raise Incorrect(f"`{var}` has names that are not features: {', '.join(unknown)}. The features are: "
                            f"{', '.join(shop.FEATURES)}.")
        return names

    def check(self, down_in_monolith: Any, down_in_microservices: Any) -> str:
        predicted = {"monolith": self._features(down_in_monolith, "down_in_monolith"),
                     "microservices": self._features(down_in_microservices, "down_in_microservices")}
        measured = blast_radius()
        wrong = []
        for build in ("monolith", "microservices"):
            missing = len(measured[build] - predicted[build])
            extra = len(predicted[build] - measured[build])
            if missing or extra:
                parts = []
                if missing:
                    parts.append(f"{missing} feature(s) that went down are missing")
                if extra:
                    parts.append(f"{extra} feature(s) you listed kept working")
                wrong.append(f"in the {build}, {' and '.join(parts)}")
        if wrong:
            raise Incorrect("; ".join(wrong) + ". Think about which process runs the faulty code, and who "
                            "calls it.")
        return ("in the monolith every feature went down with the one process; in the microservices, details "
                "and the home page that calls it.")


def blast_radius(seed: int = SEED, seconds: float = 1.6) -> dict[str, set[str]]:
    """Run both builds under everyday traffic; 0.3 s in, a bug makes every request that runs the
    product-details code crash its process (a crash loop). Return, per build, the features that
    failed more than 10 % of their requests."""
    down: dict[str, set[str]] = {}
    with Mesh(seed=seed) as mesh:
        faults = {"monolith": shop.Faults(), "microservices": shop.Faults()}
        shop.deploy_monolith(mesh, faults=faults["monolith"])
        shop.deploy_microservices(mesh, faults=faults["microservices"])
        runs = {build: shop.drive(mesh, shop.BASELINE, seconds, build=build, background=True)
                for build in faults}
        time.sleep(0.3)
        for f in faults.values():  # a crash loop: every request running the details code crashes its process
            f.crash("details", times=None, restart_after=0.3)
        for build, run in runs.items():
            assert isinstance(run, shop.Traffic)
            availability = shop.availability(run.result())
            down[build] = {f for f, a in availability.items() if a < 0.9}
    return down


class ContainThePodCrash(Question):
    """Choose replicas so that a dying details pod does not take any feature down."""

    _vars = ["crash_replicas"]
    _hint = [
        "When a pod dies, the caller's sidecar retries the request (Istio's default: 2 retries). "
        "Where can a retry go?",
        "A retry needs another healthy pod of the same service.",
    ]
    _solution = ('# A second details pod: the sidecars retry the failed request on it.\n'
                 'crash_replicas = {"details": 2}')
    _correct_message = "the crash was contained."

    def check(self, crash_replicas: Any) -> str:
        pods = _replicas(crash_replicas, "crash_replicas")
        memory = _memory(pods)
        if memory > CRASH_BUDGET_MB:
            raise Incorrect(f"these pods reserve {memory:.0f} MB, over the {CRASH_BUDGET_MB:.0f} MB budget. "
                            "Which service has the pod that dies?")
        with Mesh(seed=SEED) as mesh:
            shop.deploy_microservices(mesh, replicas=pods)
            run = shop.drive(mesh, shop.BASELINE, 1.2, background=True)
            time.sleep(0.3)
            mesh.kill("details", 0, restart_after=0.6)
            assert isinstance(run, shop.Traffic)
            availability = shop.availability(run.result())
        failed = [f for f in shop.FEATURES if availability.get(f, 0.0) < GOOD]
        if failed:
            raise Incorrect(f"when the details pod died, {', '.join(failed)} failed requests. Where could the "
                            "sidecar send a retry?")
        return "a details pod died and every feature kept answering: the sidecars retried on the other pod."


q1 = ScaleForTheSpike()
q2 = PredictTheBlastRadius()
q3 = ContainThePodCrash()

__all__ = [*__all__, "blast_radius", *bind_questions(globals())]
