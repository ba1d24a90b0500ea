"""Example lab: two questions that need no running mesh. Copy it to start a new lab.

A lab module defines one :class:`~meshlab.labs.Question` subclass per exercise,
instantiates them as ``q1``, ``q2``, ... and ends with ``bind_questions``. Its
notebook uses it like this::

    from meshlab.labs.example import q1, q2, ____

    default_retries = ____     # the learner replaces the blank
    q1.check()                 # ✅ Correct / ❌ Not yet / ⭕ Not attempted
    q1.hint()                  # next hint; q1.solution() shows the answer
"""

from __future__ import annotations

from typing import Any

from meshlab.labs.core import Incorrect, Question, bind_questions
from meshlab.proxy.flags import FLAGS


class DefaultRetries(Question):
    """How many times does Istio retry a failed request when a route sets no retry policy?"""

    _vars = ["default_retries"]
    _hint = [
        "Retries are set per HTTP route of a VirtualService, in its `retries` field.",
        "Read the `attempts` field of `HTTPRetry` in Istio's VirtualService reference: "
        "what applies when a route has no `retries` at all?",
    ]
    _solution = (
        "# Istio retries twice by default, on connect-failure, refused-stream, unavailable,\n"
        "# cancelled and retriable-status-codes (503). `attempts: 0` turns retries off.\n"
        "default_retries = 2"
    )

    def check(self, default_retries: Any) -> str:
        if isinstance(default_retries, bool) or not isinstance(default_retries, int):
            kind = type(default_retries).__name__
            raise Incorrect(f"`default_retries` should be a whole number (an `int`); yours is a `{kind}`.")
        if default_retries < 0:
            raise Incorrect("a number of retries cannot be negative.")
        if default_retries != 2:
            raise Incorrect(
                "that is not Istio's default. Count only the retries, not the first try, "
                "and check the `retries.attempts` field in the VirtualService reference."
            )
        return "with no retry policy, Istio retries a failed request twice (attempts: 2)."


class NoHealthyUpstreamFlag(Question):
    """Which Envoy response flag marks a request that found no healthy upstream host?"""

    _vars = ["no_healthy_upstream_flag"]
    _hint = [
        "Response flags are the short upper-case codes Envoy writes in the access log after the "
        "response code.",
        "Flags about the upstream (the called service) start with U; the next letter says what went wrong.",
    ]
    _solution = 'no_healthy_upstream_flag = "UH"  # 503 with UH: every host is ejected or unhealthy'

    def check(self, no_healthy_upstream_flag: Any) -> str:
        if not isinstance(no_healthy_upstream_flag, str):
            kind = type(no_healthy_upstream_flag).__name__
            raise Incorrect(f"`no_healthy_upstream_flag` should be a string; yours is a `{kind}`.")
        flag = no_healthy_upstream_flag.strip().upper()
        if flag == "UH":
            return "UH means no healthy upstream: Envoy had no host left to send the request to (503)."
        if flag in FLAGS:
            raise Incorrect(
                f"`{flag}` means {FLAGS[flag]}. Look for the flag for a cluster with no healthy host at all."
            )
        raise Incorrect(
            f"`{flag}` is not a response flag that meshlab's sidecars write. Flags are short upper-case "
            "codes in the access log, after the response code."
        )


q1 = DefaultRetries()
q2 = NoHealthyUpstreamFlag()

__all__ = bind_questions(globals())
