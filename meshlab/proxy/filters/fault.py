"""The fault filter (Envoy's ``envoy.filters.http.fault``): Istio's ``fault`` on an HTTP route.

It runs first in the outbound chain, in the *client's* sidecar, after the route is chosen:

* ``delay``: wait ``fixedDelay`` before handing the request on, for ``percentage`` of requests
  (flag DI);
* ``abort``: answer ``httpStatus`` at once without calling the service, for ``percentage`` of
  requests (flag FI; body ``fault filter abort`` as Envoy's).

A percentage is ``percentage.value`` (a double, 0-100) or, on a delay, the deprecated integer
``percent``. Without either the fault applies to *no* request: Istio leaves Envoy's percentage at
its zero default (istio/istio#36303: the docs once said "all requests"; the behaviour won and
the docs were changed). Write ``percentage: {value: 100}`` to fault every request. The draw uses
the sidecar's seeded random source, so "10 % of requests" is the same 10 % on every run. A delay
and an abort on the same route can both apply (delay first, then abort), as in Envoy.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ...config.duration import parse_duration
from ...timers import sleep_at_least
from .. import flags as F
from ..http1 import local_reply

if TYPE_CHECKING:
    from ..http1 import Response
    from ..stream import Stream
    from . import Next

__all__ = ["FaultFilter", "fault_percentage"]


def fault_percentage(f: Any) -> float:
    """The share (0-100) of requests a delay/abort applies to (0 when neither ``percentage``
    nor the delay's deprecated ``percent`` is set, as in Istio)."""
    if f.percentage is not None:
        return float(f.percentage.value or 0.0)
    percent = getattr(f, "percent", None)  # only a delay has the deprecated integer form
    if percent is not None:
        return float(percent)
    return 0.0


class FaultFilter:
    """Injects the route's delay and abort faults (see module docstring)."""

    name = "envoy.filters.http.fault"

    async def __call__(self, stream: Stream, next: Next) -> Response:
        route = stream.route
        http = route.action.get("http") if route is not None else None
        fault = http.fault if http is not None else None
        if fault is None:
            return await next(stream)
        rng = stream.sidecar.rng
        stats = stream.sidecar.stats
        delay = fault.delay
        if delay is not None and delay.fixedDelay is not None and rng.random() * 100.0 < fault_percentage(delay):
            stream.flag(F.DI)
            stats["fault.delays_injected"] += 1
            await sleep_at_least(parse_duration(delay.fixedDelay))
        abort = fault.abort
        if abort is not None and abort.httpStatus is not None and rng.random() * 100.0 < fault_percentage(abort):
            stream.flag(F.FI)
            stream.details = "fault_filter_abort"
            stats["fault.aborts_injected"] += 1
            return local_reply(abort.httpStatus, "fault filter abort")
        return await next(stream)
