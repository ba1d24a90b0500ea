"""Istio's standard metrics, recorded by every sidecar.

Each request a sidecar handles is recorded once, when it ends, under Istio's metric names and
labels: ``istio_requests_total`` (counter), ``istio_request_duration_milliseconds``,
``istio_request_bytes`` and ``istio_response_bytes`` (histograms with Istio's buckets). The
client-side sidecar reports with ``reporter="source"``, the server-side one with
``reporter="destination"``: one request through the mesh is counted twice, once by each side,
as in Istio.

Recording is a dict lookup and a few additions (it runs on the data path). The Prometheus text
exposition (``/stats/prometheus`` on a sidecar's admin port, as Envoy serves on 15090) is
produced with ``prometheus_client`` from the same numbers.

TCP metrics. Istio reports ``istio_tcp_connections_opened_total`` and
``istio_tcp_connections_closed_total`` (with ``request_protocol="tcp"`` and no response code)
for **TCP traffic only**: a connection proxied as HTTP is counted in the request metrics above,
never in the TCP ones (Istio's metrics reference: "For TCP traffic, Istio generates ...").
``IstioMetrics.tcp_connection`` records them for whatever proxies raw TCP. Connections carrying
HTTP show up, as in Envoy, in the listener and cluster counters of ``connection_stats``
(``downstream_cx_active``, ``upstream_cx_total``, ``upstream_cx_active``).
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

if TYPE_CHECKING:
    from ..proxy.sidecar import Sidecar

__all__ = ["LABELS", "TCP_LABELS", "DURATION_BUCKETS_MS", "SIZE_BUCKETS", "IstioMetrics", "connection_stats"]

#: Label names, in the order of the label tuples recorded.
LABELS = (
    "reporter", "source_workload", "source_workload_namespace", "source_principal", "source_app",
    "source_version", "destination_workload", "destination_workload_namespace", "destination_principal",
    "destination_app", "destination_version", "destination_service", "destination_service_name",
    "destination_service_namespace", "request_protocol", "response_code", "grpc_response_status",
    "response_flags", "connection_security_policy",
)

#: Label names of Istio's TCP metrics: the request labels without the response codes (a TCP
#: connection has none); ``request_protocol`` is ``"tcp"``.
TCP_LABELS = tuple(k for k in LABELS if k not in ("response_code", "grpc_response_status"))

#: Istio's default buckets for istio_request_duration_milliseconds.
DURATION_BUCKETS_MS = (0.5, 1, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000,
                       300000, 600000, 1800000, 3600000)
#: Istio's default buckets for istio_request_bytes / istio_response_bytes.
SIZE_BUCKETS = (1, 10, 100, 1000, 10000, 100000, 1000000, 10000000, 100000000, 1000000000)


class _Histogram:
    __slots__ = ("bounds", "counts", "sum", "count")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def cumulative(self) -> list[tuple[str, float]]:
        out, acc = [], 0
        for bound, c in zip((*self.bounds, float("inf")), self.counts, strict=True):
            acc += c
            out.append(("+Inf" if bound == float("inf") else _fmt(bound), acc))
        return out


def _fmt(x: float) -> str:
    return str(int(x)) if float(x).is_integer() else str(x)


class _Series:
    __slots__ = ("requests", "duration", "request_bytes", "response_bytes")

    def __init__(self) -> None:
        self.requests = 0
        self.duration = _Histogram(DURATION_BUCKETS_MS)
        self.request_bytes = _Histogram(SIZE_BUCKETS)
        self.response_bytes = _Histogram(SIZE_BUCKETS)


class IstioMetrics(Collector):
    """The Istio standard metrics of one sidecar."""

    def __init__(self) -> None:
        self.series: dict[tuple[str, ...], _Series] = {}
        #: TCP connections per label tuple (``TCP_LABELS`` order): [opened, closed]
        self.tcp: dict[tuple[str, ...], list[int]] = {}

    def record(self, labels: tuple[str, ...], duration_ms: float, request_bytes: int, response_bytes: int) -> None:
        """Count one finished request under ``labels`` (values in ``LABELS`` order)."""
        s = self.series.get(labels)
        if s is None:
            s = self.series[labels] = _Series()
        s.requests += 1
        s.duration.observe(duration_ms)
        s.request_bytes.observe(request_bytes)
        s.response_bytes.observe(response_bytes)

    def tcp_connection(self, labels: tuple[str, ...], event: str) -> None:
        """Count one TCP connection ``event`` ("open" or "close") under ``labels`` (values in
        ``TCP_LABELS`` order). For raw TCP proxying only: see the module docstring."""
        if event not in ("open", "close"):
            raise ValueError("tcp_connection: event is 'open' or 'close'")
        counts = self.tcp.get(labels)
        if counts is None:
            counts = self.tcp[labels] = [0, 0]
        counts[0 if event == "open" else 1] += 1

    def rows(self, buckets: bool = False) -> Iterator[dict[str, object]]:
        """One dict per sample (Prometheus style): name, the labels, le (buckets only), value."""
        for labels, s in self.series.items():
            base = dict(zip(LABELS, labels, strict=True))
            yield {"name": "istio_requests_total", **base, "value": s.requests}
            for name, h in (("istio_request_duration_milliseconds", s.duration),
                            ("istio_request_bytes", s.request_bytes),
                            ("istio_response_bytes", s.response_bytes)):
                yield {"name": f"{name}_sum", **base, "value": h.sum}
                yield {"name": f"{name}_count", **base, "value": h.count}
                if buckets:
                    for le, v in h.cumulative():
                        yield {"name": f"{name}_bucket", **base, "le": le, "value": v}
        for labels, (opened, closed) in self.tcp.items():
            base = dict(zip(TCP_LABELS, labels, strict=True))
            yield {"name": "istio_tcp_connections_opened_total", **base, "value": opened}
            yield {"name": "istio_tcp_connections_closed_total", **base, "value": closed}

    def collect(self) -> Iterable[Metric]:
        """prometheus_client Collector protocol: the metric families of this sidecar."""
        total = CounterMetricFamily("istio_requests_total", "Requests handled by the proxy.", labels=LABELS)
        hists = {
            "duration": HistogramMetricFamily("istio_request_duration_milliseconds",
                                              "Request duration in milliseconds.", labels=LABELS),
            "request_bytes": HistogramMetricFamily("istio_request_bytes", "Request body sizes.", labels=LABELS),
            "response_bytes": HistogramMetricFamily("istio_response_bytes", "Response body sizes.", labels=LABELS),
        }
        for labels, s in self.series.items():
            total.add_metric(list(labels), s.requests)
            for attr, fam in hists.items():
                h: _Histogram = getattr(s, attr)
                fam.add_metric(list(labels), h.cumulative(), h.sum)
        yield total
        yield from hists.values()
        if self.tcp:  # as Envoy, no family at all until a TCP connection was proxied
            opened = CounterMetricFamily("istio_tcp_connections_opened_total", "TCP connections opened.",
                                         labels=TCP_LABELS)
            closed = CounterMetricFamily("istio_tcp_connections_closed_total", "TCP connections closed.",
                                         labels=TCP_LABELS)
            for labels, (o, c) in self.tcp.items():
                opened.add_metric(list(labels), o)
                closed.add_metric(list(labels), c)
            yield opened
            yield closed

    def prometheus_text(self) -> bytes:
        """The Prometheus text exposition of these metrics."""
        registry = CollectorRegistry(auto_describe=False)
        registry.register(self)
        return generate_latest(registry)


#: Istio's listener ports: inbound traffic is captured to 15006 (``virtualInbound``), outbound to
#: 15001 (``virtualOutbound``). Envoy names listener stats after the address; meshlab's listeners
#: have OS-chosen ports, so their counters use Istio's addresses to keep stat names stable.
_LISTENER_STAT = {"inbound": "listener.0.0.0.0_15006", "outbound": "listener.0.0.0.0_15001"}


def connection_stats(sidecar: Sidecar) -> dict[str, int]:
    """Envoy's connection counters of one proxy, read from its listeners and connection pools
    (call it on the mesh loop): ``listener.0.0.0.0_15006.downstream_cx_active`` (inbound
    connections open now; 15001 for outbound), ``downstream_cx_total`` when the listener counts
    the connections it accepted (an ``accepted`` attribute), and per cluster ``upstream_cx_total``
    (connections ever opened to its hosts) and ``upstream_cx_active`` (open now)."""
    out: dict[str, int] = {}
    for side in ("inbound", "outbound"):
        listener = getattr(sidecar, side)
        out[f"{_LISTENER_STAT[side]}.downstream_cx_active"] = len(listener.connections)
        accepted = getattr(listener, "accepted", None)  # connections accepted, if the listener counts them
        if accepted is not None:
            out[f"{_LISTENER_STAT[side]}.downstream_cx_total"] = accepted
    by_address: dict[str, list[Any]] = {}
    for pool in list(sidecar.pools.pools.values()):
        by_address.setdefault(f"{pool.host}:{pool.port}", []).append(pool)
    for name, cluster in list(sidecar.clusters.items()):
        pools = [p for addr in cluster.hosts for p in by_address.get(addr, ())]
        out[f"cluster.{name}.upstream_cx_total"] = sum(p.opened for p in pools)
        out[f"cluster.{name}.upstream_cx_active"] = sum(p.active for p in pools)
    return out
