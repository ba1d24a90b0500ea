"""A stream: one request's journey through one sidecar, and what is learned on the way.

Filters read and write it; when the request ends the sidecar turns it into one access-log
entry and one metrics sample (Envoy does the same with its stream info).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cluster import Host
    from .http1 import Request, Response
    from .route import Route, Snapshot
    from .sidecar import Sidecar

__all__ = ["Peer", "Stream", "UNKNOWN_PEER"]


@dataclass(frozen=True)
class Peer:
    """Who is on the other side, as the mesh knows it (Istio's peer metadata)."""

    workload: str = "unknown"
    namespace: str = "unknown"
    app: str = "unknown"
    version: str = "unknown"
    principal: str = "unknown"
    pod: str = ""

    def header_value(self) -> str:
        """Encoded for the ``x-envoy-peer-metadata-id`` header."""
        return ";".join((self.workload, self.namespace, self.app, self.version, self.principal, self.pod))

    @classmethod
    def from_header(cls, value: str | None) -> Peer:
        """Decode ``header_value()``; a missing or bad header gives the unknown peer."""
        if not value:
            return UNKNOWN_PEER
        parts = value.split(";")
        if len(parts) != 6:
            return UNKNOWN_PEER
        return cls(*parts)


UNKNOWN_PEER = Peer()


class Stream:
    """One request in one sidecar (see the module docstring)."""

    __slots__ = (
        "sidecar", "direction", "request", "snapshot", "start", "start_wall", "flags", "details",
        "route", "cluster", "host", "source", "destination", "upstream_time_ms", "attempts", "response",
        "downstream_remote", "authority", "path", "extra",
    )

    def __init__(self, sidecar: Sidecar, direction: str, request: Request, snapshot: Snapshot,
                 downstream_remote: str) -> None:
        self.sidecar = sidecar
        self.direction = direction
        self.request = request
        self.snapshot = snapshot
        self.start = time.perf_counter()
        self.start_wall = sidecar.clock()
        self.flags: list[str] = []
        self.details = ""
        self.route: Route | None = None
        self.cluster = ""
        self.host: Host | None = None
        self.source: Peer = UNKNOWN_PEER
        self.destination: Peer = UNKNOWN_PEER
        self.upstream_time_ms: float | None = None
        self.attempts = 0
        self.response: Response | None = None
        self.downstream_remote = downstream_remote
        self.authority = request.authority
        self.path = request.path
        self.extra: dict[str, Any] = {}

    def flag(self, code: str) -> None:
        """Add an Envoy response flag (once)."""
        if code not in self.flags:
            self.flags.append(code)

    @property
    def response_flags(self) -> str:
        """The flags as Envoy prints them (comma separated, ``-`` when none)."""
        return ",".join(self.flags) if self.flags else "-"
