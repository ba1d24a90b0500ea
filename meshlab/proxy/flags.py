"""Envoy's response flags: the short codes in access logs and in the ``response_flags`` metric
label that say *why* a request ended the way it did. meshlab uses the same codes, so what a
learner reads here is what they will read in a real Istio access log."""

from __future__ import annotations

__all__ = ["FLAGS", "NC", "UH", "UF", "UC", "URX", "UT", "UO", "NR", "DC", "FI", "DI", "UAEX", "RL", "UR"]

UH = "UH"    # no healthy upstream host in the cluster
UF = "UF"    # upstream connection failure
UC = "UC"    # upstream connection termination (closed before a complete response)
UR = "UR"    # upstream remote reset
URX = "URX"  # upstream retry limit (or max connect attempts) exceeded
UT = "UT"    # upstream request timeout
UO = "UO"    # upstream overflow: refused by a circuit breaker (connection pool limits)
NR = "NR"    # no route configured for the request
NC = "NC"    # upstream cluster not found
DC = "DC"    # downstream connection terminated (the caller went away)
FI = "FI"    # the request was aborted by fault injection
DI = "DI"    # the request was delayed by fault injection
UAEX = "UAEX"  # unauthorized by an external authorization service
RL = "RL"    # rate limited

FLAGS: dict[str, str] = {
    UH: "no healthy upstream host",
    UF: "upstream connection failure",
    UC: "upstream connection termination",
    UR: "upstream remote reset",
    URX: "upstream retry limit exceeded",
    UT: "upstream request timeout",
    UO: "upstream overflow (circuit breaking)",
    NR: "no route configured",
    NC: "upstream cluster not found",
    DC: "downstream connection termination",
    FI: "fault injection abort",
    DI: "fault injection delay",
    UAEX: "unauthorized by external authorization",
    RL: "rate limited",
}
