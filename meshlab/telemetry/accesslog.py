"""Access logs, as Envoy writes them in Istio.

Every request a sidecar handles leaves one entry, written when the request ends. The fields are
those of Istio's default text format (``meshConfig.accessLogFile``), which ``AccessLogEntry.text()``
reproduces::

    [START_TIME] "METHOD PATH PROTOCOL" RESPONSE_CODE RESPONSE_FLAGS RESPONSE_CODE_DETAILS
    CONNECTION_TERMINATION_DETAILS "UPSTREAM_TRANSPORT_FAILURE_REASON" BYTES_RECEIVED BYTES_SENT
    DURATION UPSTREAM_SERVICE_TIME "X-FORWARDED-FOR" "USER-AGENT" "X-REQUEST-ID" "AUTHORITY"
    "UPSTREAM_HOST" UPSTREAM_CLUSTER UPSTREAM_LOCAL_ADDRESS DOWNSTREAM_LOCAL_ADDRESS
    DOWNSTREAM_REMOTE_ADDRESS REQUESTED_SERVER_NAME ROUTE_NAME

``-`` stands for an empty field, as in Envoy. The log of one sidecar is a bounded ring
(oldest entries dropped), so a long load run cannot exhaust memory.
"""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, fields
from datetime import UTC, datetime

__all__ = ["AccessLogEntry", "AccessLog"]


@dataclass(slots=True)
class AccessLogEntry:
    """One access-log line (Envoy's command operators, in snake case)."""

    start_time: float
    reporter: str
    workload: str
    pod: str
    method: str
    path: str
    protocol: str
    response_code: int
    response_flags: str
    response_code_details: str
    bytes_received: int
    bytes_sent: int
    duration_ms: float
    upstream_service_time_ms: float | None
    x_forwarded_for: str
    user_agent: str
    request_id: str
    authority: str
    upstream_host: str
    upstream_cluster: str
    downstream_local_address: str
    downstream_remote_address: str
    route_name: str
    source_workload: str
    destination_workload: str
    destination_service: str
    destination_version: str
    upstream_pod: str

    def text(self) -> str:
        """The entry in Istio's default text format."""

        def d(v: object) -> str:
            return "-" if v in ("", None) else str(v)

        ts = _timestamp(self.start_time)
        ust = "-" if self.upstream_service_time_ms is None else str(round(self.upstream_service_time_ms))
        return (
            f'[{ts}] "{self.method} {self.path} {self.protocol}" {self.response_code} {d(self.response_flags)} '
            f'{d(self.response_code_details)} - "-" {self.bytes_received} {self.bytes_sent} '
            f'{round(self.duration_ms)} {ust} "{d(self.x_forwarded_for)}" "{d(self.user_agent)}" '
            f'"{d(self.request_id)}" "{d(self.authority)}" "{d(self.upstream_host)}" {d(self.upstream_cluster)} - '
            f"{d(self.downstream_local_address)} {d(self.downstream_remote_address)} - {d(self.route_name)}"
        )

    def json(self) -> str:
        """The entry as one JSON object with the keys of Istio's JSON encoding
        (``meshConfig.accessLogEncoding: JSON``); empty fields are ``null``, as Envoy writes them."""

        def n(v: object) -> object:
            return None if v in ("", None) else v

        ust = None if self.upstream_service_time_ms is None else str(round(self.upstream_service_time_ms))
        return json.dumps({
            "start_time": _timestamp(self.start_time), "method": self.method, "path": self.path,
            "protocol": self.protocol, "response_code": self.response_code,
            "response_flags": n(self.response_flags), "response_code_details": n(self.response_code_details),
            "connection_termination_details": None, "upstream_transport_failure_reason": None,
            "bytes_received": self.bytes_received, "bytes_sent": self.bytes_sent,
            "duration": round(self.duration_ms), "upstream_service_time": ust,
            "x_forwarded_for": n(self.x_forwarded_for), "user_agent": n(self.user_agent),
            "request_id": n(self.request_id), "authority": n(self.authority),
            "upstream_host": n(self.upstream_host), "upstream_cluster": n(self.upstream_cluster),
            "upstream_local_address": None, "downstream_local_address": n(self.downstream_local_address),
            "downstream_remote_address": n(self.downstream_remote_address), "requested_server_name": None,
            "route_name": n(self.route_name),
        })


def _timestamp(t: float) -> str:
    """Envoy's %START_TIME%: UTC, milliseconds, ``Z``."""
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


FIELDS = [f.name for f in fields(AccessLogEntry)]


class AccessLog:
    """A bounded in-memory access log (one per sidecar)."""

    def __init__(self, maxlen: int = 50_000) -> None:
        self.entries: deque[AccessLogEntry] = deque(maxlen=maxlen)

    def write(self, entry: AccessLogEntry) -> None:
        """Append one entry."""
        self.entries.append(entry)

    def __len__(self) -> int:
        return len(self.entries)

    def text(self, last: int | None = None, encoding: str = "TEXT") -> str:
        """The (last ``last``) entries, one per line, in Istio's ``TEXT`` or ``JSON`` encoding."""
        if encoding not in ("TEXT", "JSON"):
            raise ValueError(f"encoding: expected TEXT or JSON (meshConfig.accessLogEncoding), got {encoding!r}")
        items = list(self.entries)[-last:] if last else list(self.entries)
        return "\n".join(e.text() if encoding == "TEXT" else e.json() for e in items)
