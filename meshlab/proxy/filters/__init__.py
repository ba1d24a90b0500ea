"""HTTP filters: the chain every request passes through in a sidecar (Envoy's HTTP filters).

A filter is an object with ``async def __call__(stream, next)``. It may look at or change
``stream.request``, answer by itself (return a ``Response`` without calling ``next``), or call
``await next(stream)`` to hand the request on and then look at or change the response. The
router is always last: it sends the request upstream and does not call ``next``::

    outbound:  [fault] -> router  -> cluster -> endpoint (the destination's sidecar)
    inbound:   [authn, authz] -> inbound router -> the local app

Later chapters insert filters (fault injection, authentication, authorization) into these
lists; nothing else changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from ..http1 import Response
    from ..stream import Stream

__all__ = ["HttpFilter", "Next", "run_chain"]

Next = Callable[["Stream"], Awaitable["Response"]]


class HttpFilter(Protocol):
    """One HTTP filter."""

    name: str

    async def __call__(self, stream: Stream, next: Next) -> Response:  # pragma: no cover - protocol
        ...


def run_chain(filters: Sequence[HttpFilter], stream: Stream) -> Awaitable[Response]:
    """Run ``stream`` through ``filters`` in order (the last one must not call ``next``)."""

    def at(i: int) -> Next:
        async def call(s: Stream) -> Response:
            return await filters[i](s, at(i + 1))

        return call

    if len(filters) == 1:
        return filters[0](stream, _end)
    return at(0)(stream)


async def _end(stream: Stream) -> Response:
    raise RuntimeError("the last HTTP filter of a chain must be a router (it called next)")
