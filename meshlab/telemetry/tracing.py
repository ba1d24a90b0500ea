"""Distributed tracing: every sidecar writes a span for each request it handles.

Theory of operation
-------------------
A trace is the tree of spans of one user request as it crosses services. Sidecars create the
spans (OpenTelemetry's SDK, into an in-memory collector meshlab provides, like Jaeger's), but
only the *application* can connect the spans of its inbound request to the spans of the calls it
makes while serving it::

    client sidecar           server sidecar                        server app
    CLIENT span A  ──traceparent(A)──> SERVER span B ──traceparent(B)──> reads B ...
                                                                      calls another service
                                                                      *copying traceparent(B)*
    CLIENT span C (child of B)  <──traceparent(B)── outbound request of the app

If the app does not copy the trace headers (``traceparent``, ``b3``/``x-b3-*``...) from the
request it serves to the requests it makes, its sidecar sees an outbound request without
context and starts a **new trace**: the trace splits in two. ``meshlab.propagation_headers``
returns exactly those headers.

Sidecars accept W3C ``traceparent`` and B3 (``b3`` single header or ``x-b3-*``), and send both.
Sampling follows the parent's decision, else ``sampling`` percent of new traces (Istio's default
is 1 %; the notebooks use 100 %). Span and trace ids come from the mesh's seeded random source.
"""

from __future__ import annotations

import random
from collections import deque
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import pandas as pd
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.sdk.trace.id_generator import IdGenerator
from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, Status, StatusCode, TraceFlags

if TYPE_CHECKING:
    from ..proxy.http1 import Headers
    from ..proxy.stream import Stream

__all__ = ["Tracing", "SeededIds", "extract_context", "TRACE_HEADERS"]

TRACE_HEADERS = ("traceparent", "tracestate", "b3", "x-b3-traceid", "x-b3-spanid", "x-b3-parentspanid",
                 "x-b3-sampled", "x-b3-flags")


class Collector(SpanExporter):
    """An in-memory span collector (a Jaeger in small), bounded: the oldest spans are dropped."""

    def __init__(self, maxlen: int = 100_000) -> None:
        self.finished: deque[ReadableSpan] = deque(maxlen=maxlen)

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        self.finished.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        pass


class SeededIds(IdGenerator):
    """Trace and span ids from a seeded random source (reproducible runs)."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        #: a trace id drawn ahead (``Tracing.start`` decides sampling first), handed out once
        self.next_trace_id: int | None = None

    def generate_span_id(self) -> int:
        return self.rng.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        if self.next_trace_id is not None:
            trace_id, self.next_trace_id = self.next_trace_id, None
            return trace_id
        return self.rng.getrandbits(128) or 1


def extract_context(headers: Headers) -> SpanContext | None:
    """The remote span context a request carries (W3C first, then B3), or None."""
    tp = headers.get("traceparent")
    if tp:
        parts = tp.split("-")
        if len(parts) == 4 and len(parts[1]) == 32 and len(parts[2]) == 16:
            try:
                return SpanContext(int(parts[1], 16), int(parts[2], 16), True, TraceFlags(int(parts[3], 16) & 1))
            except ValueError:
                pass
    b3 = headers.get("b3")
    if b3:
        parts = b3.split("-")
        if len(parts) >= 2:
            try:
                sampled = len(parts) < 3 or parts[2] in ("1", "d")
                return SpanContext(int(parts[0], 16), int(parts[1], 16), True, TraceFlags(int(sampled)))
            except ValueError:
                pass
    tid, sid = headers.get("x-b3-traceid"), headers.get("x-b3-spanid")
    if tid and sid:
        try:
            sampled = headers.get("x-b3-sampled", "1") in ("1", "true") or headers.get("x-b3-flags") == "1"
            return SpanContext(int(tid, 16), int(sid, 16), True, TraceFlags(int(sampled)))
        except ValueError:
            pass
    return None


def inject(headers: Headers, ctx: SpanContext) -> None:
    """Write ``ctx`` into the request as W3C and B3 headers (replacing older ones)."""
    tid, sid, sampled = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}", int(ctx.trace_flags.sampled)
    headers.set("traceparent", f"00-{tid}-{sid}-{sampled:02x}")
    headers.set("x-b3-traceid", tid)
    headers.set("x-b3-spanid", sid)
    headers.set("x-b3-sampled", str(sampled))
    headers.remove("b3")
    headers.remove("x-b3-parentspanid")


class Tracing:
    """The mesh's tracer and in-memory collector (see module docstring)."""

    def __init__(self, rng: random.Random, sampling: float = 100.0) -> None:
        self.exporter = Collector()
        self.sampling = sampling
        # shutdown_on_exit=False: the SDK would otherwise register the provider with atexit and keep
        # every mesh's spans alive until the interpreter exits; Mesh.stop() shuts it down instead.
        self.ids = SeededIds(rng)
        self.root_sampler = TraceIdRatioBased(sampling / 100.0)
        self.provider = TracerProvider(sampler=ParentBased(self.root_sampler),
                                       id_generator=self.ids, shutdown_on_exit=False)
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("meshlab.sidecar")

    def start(self, stream: Stream) -> trace.Span | None:
        """Open the span of ``stream`` (child of the context the request carries) and put the new
        span's context into the request headers going on. An unsampled request gets no span (None)
        but still carries the trace context on, so every hop follows the same decision."""
        req = stream.request
        parent_ctx = extract_context(req.headers)
        if parent_ctx is not None and not parent_ctx.is_valid:
            parent_ctx = None
        # The sampling decision first, as OpenTelemetry's ParentBased(TraceIdRatioBased) makes it,
        # with the ids it would draw in the same order (trace id of a new trace, then span id):
        # the SDK is only asked to build spans that are recorded (1 % of new traces by default).
        if parent_ctx is None:
            trace_id = self.ids.generate_trace_id()
            sampled = self.root_sampler.should_sample(None, trace_id, "").decision.is_sampled()
        else:
            trace_id, sampled = parent_ctx.trace_id, parent_ctx.trace_flags.sampled
        if not sampled:
            inject(req.headers, SpanContext(trace_id, self.ids.generate_span_id(), True, TraceFlags(0)))
            return None
        if parent_ctx is None:
            self.ids.next_trace_id = trace_id  # the SDK draws the new trace's id: this one
        parent = trace.set_span_in_context(NonRecordingSpan(parent_ctx)) if parent_ctx else None
        outbound = stream.direction == "outbound"
        sc = stream.sidecar
        span = self.tracer.start_span(
            f"{stream.authority.split(':')[0]}{stream.path.split('?')[0]}",
            context=parent,
            kind=SpanKind.CLIENT if outbound else SpanKind.SERVER,
            attributes={"meshlab.workload": sc.identity.workload, "meshlab.pod": sc.name,
                        "meshlab.direction": stream.direction, "http.method": req.method,
                        "http.url": f"http://{stream.authority}{stream.path}",
                        "guid:x-request-id": req.headers.get("x-request-id") or "",
                        "component": "proxy", "istio.canonical_service": sc.identity.app},
        )
        inject(req.headers, span.get_span_context())
        return span

    def end(self, span: trace.Span, stream: Stream, status: int) -> None:
        """Close the span with the request's outcome."""
        if span.is_recording():
            span.set_attribute("http.status_code", status)
            span.set_attribute("response_flags", stream.response_flags)
            if stream.host is not None:
                span.set_attribute("upstream_cluster", stream.cluster)
                span.set_attribute("meshlab.upstream_pod", stream.host.endpoint.pod)
            if status >= 500 or status == 0:
                span.set_status(Status(StatusCode.ERROR))
        span.end()

    def spans(self) -> tuple[ReadableSpan, ...]:
        """Every finished span collected so far."""
        return tuple(self.exporter.finished)

    def clear(self) -> None:
        """Forget the collected spans."""
        self.exporter.finished.clear()

    def frame(self) -> pd.DataFrame:
        """The spans as a table: trace, span, parent, name, workload, pod, kind, start, duration,
        status code and flags (times in ms relative to the first span)."""
        rows: list[dict[str, Any]] = []
        for s in self.spans():
            a = s.attributes or {}
            rows.append({
                "trace_id": f"{s.context.trace_id:032x}", "span_id": f"{s.context.span_id:016x}",
                "parent_id": f"{s.parent.span_id:016x}" if s.parent is not None else "",
                "name": s.name, "workload": a.get("meshlab.workload"), "pod": a.get("meshlab.pod"),
                "kind": "client" if s.kind == SpanKind.CLIENT else "server",
                "start_ns": s.start_time, "duration_ms": ((s.end_time or s.start_time) - s.start_time) / 1e6,
                "status": a.get("http.status_code"), "response_flags": a.get("response_flags"),
                "request_id": a.get("guid:x-request-id"),
            })
        cols = ["trace_id", "span_id", "parent_id", "name", "workload", "pod", "kind", "start_ms", "duration_ms",
                "status", "response_flags", "request_id"]
        if not rows:
            return pd.DataFrame(columns=cols)
        df = pd.DataFrame(rows)
        df["start_ms"] = (df["start_ns"] - df["start_ns"].min()) / 1e6
        return df[cols].sort_values(["start_ms"], kind="stable").reset_index(drop=True)

    def shutdown(self) -> None:
        """Release the provider."""
        self.provider.shutdown()
