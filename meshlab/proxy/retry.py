"""Retry policy: when a failed try is tried again (Envoy's ``retry_on`` conditions).

Istio's default, when a VirtualService route sets no ``retries``: 2 retries (3 tries in all) on
``connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes`` with 503 as the
retriable status code. ``attempts: 0`` disables retries, and so does a ``retries`` block without
``attempts`` (an unset integer is 0 in Istio's API; Istio warns about it). ``perTryTimeout``
bounds each try and defaults to the route timeout.

A ``retryOn`` replaces the default conditions *and* the default status codes: the retriable
codes are then only the numbers listed in it (``retryOn: retriable-status-codes`` alone retries
no status at all), as Istio's ``parseRetryOn`` does. A number is a status code only if it is a
known HTTP status; anything else is kept as a condition name.

Conditions (``retryOn``, comma separated; a number such as ``503`` adds a retriable status):

==========================  ====================================================================
``5xx``                     any 5xx answer, a connection failure, a reset, a per-try timeout
``gateway-error``           502, 503 or 504 answers (and per-try timeouts)
``reset``                   the connection dropped or timed out with no answer
``connect-failure``         could not connect (flag UF)
``retriable-4xx``           409 answers
``retriable-status-codes``  answers whose status is in the retriable list
``refused-stream``          HTTP/2 REFUSED_STREAM (never happens on HTTP/1.1; accepted)
gRPC: ``cancelled``, ``deadline-exceeded``, ``internal``, ``resource-exhausted``, ``unavailable``
                            answers whose ``grpc-status`` header has that code
==========================  ====================================================================

Between tries Envoy waits a jittered exponential back-off: here 25 ms (``backoff`` overrides the
base) plus a random share of ``(2**n - 1) * base``, capped at 10 x base.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any

from ..config.duration import parse_duration

__all__ = ["RetryPolicy", "DEFAULT_RETRY_ON", "GRPC_CODES", "Outcome"]

DEFAULT_RETRY_ON = "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
GRPC_CODES = {"cancelled": "1", "deadline-exceeded": "4", "resource-exhausted": "8", "internal": "13",
              "unavailable": "14"}
#: Numbers Istio accepts as status codes in ``retryOn`` (Go's ``http.StatusText`` is not empty).
_HTTP_STATUSES = frozenset(int(s) for s in HTTPStatus)
KNOWN = {"5xx", "gateway-error", "reset", "connect-failure", "retriable-4xx", "retriable-status-codes",
         "refused-stream", "retriable-headers", "envoy-ratelimited", "http3-post-connect-failure", *GRPC_CODES}


@dataclass(frozen=True)
class Outcome:
    """How one try ended: a status (0 if no response), or a local failure kind."""

    status: int
    failure: str = ""  # "" | "connect-failure" | "reset" | "timeout" | "no-host" | "overflow"
    grpc_status: str | None = None


@dataclass(frozen=True)
class RetryPolicy:
    """A route's retry policy (see module docstring)."""

    attempts: int = 2
    conditions: frozenset[str] = field(default_factory=lambda: frozenset(DEFAULT_RETRY_ON.split(",")))
    status_codes: frozenset[int] = frozenset({503})
    per_try_timeout: float | None = None
    backoff_base: float = 0.025

    @classmethod
    def from_istio(cls, retries: Any, route_timeout: float | None) -> RetryPolicy:
        """The policy for a route's ``retries`` field (None: Istio's default)."""
        if retries is None:
            return cls(per_try_timeout=route_timeout)
        # Istio: ``if in.Attempts <= 0 { return nil }``: unset attempts disable retries.
        attempts = retries.attempts or 0
        if retries.retryOn:
            conditions, codes = set(), set()
            for item in (c.strip() for c in retries.retryOn.split(",")):
                if item.isdigit() and int(item) in _HTTP_STATUSES:
                    codes.add(int(item))
                    conditions.add("retriable-status-codes")
                elif item:
                    conditions.add(item)
            status_codes = frozenset(codes)  # Istio: the codes listed in retryOn, nothing else
        else:
            conditions, status_codes = set(DEFAULT_RETRY_ON.split(",")), frozenset({503})
        per_try = parse_duration(retries.perTryTimeout) if retries.perTryTimeout else route_timeout
        base = parse_duration(retries.backoff) if getattr(retries, "backoff", None) else 0.025
        return cls(attempts, frozenset(conditions), status_codes, per_try, base)

    def retriable(self, o: Outcome) -> bool:
        """Whether a try that ended like ``o`` may be retried under this policy."""
        c = self.conditions
        if o.failure in ("no-host", "overflow"):  # answered locally, nothing was tried upstream
            return False
        if o.failure == "connect-failure":
            return bool(c & {"connect-failure", "5xx", "gateway-error", "reset"})
        if o.failure in ("reset", "timeout"):
            return bool(c & {"reset", "5xx", "gateway-error"})
        s = o.status
        if "5xx" in c and s >= 500:
            return True
        if "gateway-error" in c and s in (502, 503, 504):
            return True
        if "retriable-4xx" in c and s == 409:
            return True
        if "retriable-status-codes" in c and s in self.status_codes:
            return True
        if o.grpc_status is not None:
            return any(GRPC_CODES.get(name) == o.grpc_status for name in c)
        return False

    def backoff(self, retry_number: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry_number`` (1-based)."""
        base = self.backoff_base
        return min(base + rng.random() * (2**retry_number - 1) * base, 10 * base)
