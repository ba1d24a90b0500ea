"""A Prometheus in small: scrape every sidecar's Istio metrics on an interval, keep the time
series, and answer the queries Istio's dashboards are built on.

Theory of operation
-------------------
Sidecars only *count* (``istio_requests_total`` only ever grows). Rates and percentiles come
from a time-series database that scrapes the counters periodically (Prometheus: every 15 s;
here every ``interval`` seconds, 0.5 s by default) and computes, over a window:

* request rate: ``sum(rate(istio_requests_total[w])) by (destination_workload)``, the increase
  of the counter over the window divided by its length;
* error rate: the same restricted to ``response_code=~"5.."`` divided by the total;
* latency percentiles: ``histogram_quantile(0.99, sum(rate(istio_request_duration_milliseconds_bucket[w])) by (le))``,
  interpolated inside the histogram bucket where the quantile falls, which is why a dashboard's
  p99 is only as precise as Istio's buckets (0.5, 1, 5, 10, 25, 50, 100, 250 ms...).

Queries use the *destination* reporter by default (what the server side saw), as Istio's
service dashboards do. ``where`` restricts a query to series with given label values, as a
PromQL selector does (``{destination_service_name="reviews"}``).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from .metrics import DURATION_BUCKETS_MS, LABELS

if TYPE_CHECKING:
    from ..mesh import Mesh

__all__ = ["Prometheus", "histogram_quantile"]

_KEEP = ("reporter", "source_workload", "destination_workload", "destination_service_name", "destination_version",
         "response_code", "response_flags", "connection_security_policy")
_IDX = [LABELS.index(k) for k in _KEEP]


def histogram_quantile(q: float, buckets: Iterable[tuple[float, float]]) -> float:
    """Prometheus' histogram_quantile over (upper bound, cumulative count) pairs: linear
    interpolation inside the bucket where rank ``q * total`` falls; NaN without data."""
    pairs = sorted(buckets)
    if not pairs or pairs[-1][1] <= 0:
        return float("nan")
    total = pairs[-1][1]
    rank = q * total
    prev_bound, prev_count = 0.0, 0.0
    for bound, count in pairs:
        if count >= rank:
            if bound == float("inf"):
                return prev_bound
            if count == prev_count:
                return bound
            return prev_bound + (bound - prev_bound) * (rank - prev_count) / (count - prev_count)
        prev_bound, prev_count = bound, count
    return prev_bound


class Prometheus:
    """Scrapes a mesh's sidecars every ``interval`` seconds (see module docstring)."""

    def __init__(self, mesh: Mesh, interval: float = 0.5, retention: int = 3600) -> None:
        self.mesh = mesh
        self.interval = interval
        self.retention = retention
        #: one entry per scrape: (time, {series labels: (count, duration_sum, bucket counts)})
        self.samples: list[tuple[float, dict[tuple[str, ...], tuple[int, float, tuple[int, ...]]]]] = []
        self._task: asyncio.Task[None] | None = None

    def scrape(self) -> None:
        """Take one sample of every sidecar's counters now (on the mesh loop)."""
        agg: dict[tuple[str, ...], list[Any]] = {}
        for sc in self.mesh.all_sidecars():
            for labels, s in sc.metrics.series.items():
                key = tuple(labels[i] for i in _IDX)
                cur = agg.get(key)
                if cur is None:
                    agg[key] = [s.requests, s.duration.sum, list(s.duration.counts)]
                else:
                    cur[0] += s.requests
                    cur[1] += s.duration.sum
                    cur[2] = [a + b for a, b in zip(cur[2], s.duration.counts, strict=True)]
        self.samples.append((time.monotonic(), {k: (v[0], v[1], tuple(v[2])) for k, v in agg.items()}))
        if len(self.samples) > self.retention:
            del self.samples[: len(self.samples) - self.retention]

    async def _loop(self) -> None:
        while True:
            self.scrape()
            await asyncio.sleep(self.interval)

    def start(self) -> None:
        """Start scraping (on the mesh loop)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    def stop(self) -> None:
        """Stop scraping."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    # -- queries ---------------------------------------------------------------------------
    def series(self, by: str = "destination_workload", reporter: str = "destination",
               where: Mapping[str, str] | None = None) -> pd.DataFrame:
        """Per scrape and group: total requests, 5xx requests, duration sum and bucket counts
        (cumulative counters, as Prometheus stores them); ``where``: label -> value to keep."""
        col = _KEEP.index(by)
        unknown = sorted(set(where or {}) - set(_KEEP))
        if unknown:
            raise ValueError(f"where: labels {unknown} are not kept by this Prometheus; labels: {list(_KEEP)}")
        match = [(_KEEP.index(k), v) for k, v in (where or {}).items()]
        rows = []
        t0 = self.samples[0][0] if self.samples else 0.0
        for t, data in self.samples:
            groups: dict[str, list[Any]] = {}
            for key, (count, dsum, buckets) in data.items():
                if key[0] != reporter or any(key[i] != v for i, v in match):
                    continue
                g = groups.setdefault(key[col], [0, 0, 0.0, np.zeros(len(buckets))])
                g[0] += count
                if key[5].startswith("5"):
                    g[1] += count
                g[2] += dsum
                g[3] = g[3] + np.array(buckets)
            for name, (count, errors, dsum, buckets) in groups.items():
                rows.append({"t": t - t0, by: name, "requests": count, "errors": errors, "duration_sum": dsum,
                             "buckets": buckets})
        return pd.DataFrame(rows, columns=["t", by, "requests", "errors", "duration_sum", "buckets"])

    def dashboard(self, window: float = 2.0, by: str = "destination_workload",
                  reporter: str = "destination", where: Mapping[str, str] | None = None) -> pd.DataFrame:
        """Over time, per group: request rate (req/s), error rate (share of 5xx) and p50/p90/p99
        latency (ms), each computed over the trailing ``window`` seconds as Grafana's Istio
        dashboards do."""
        df = self.series(by, reporter, where)
        out = []
        for name, g in df.groupby(by, sort=True):
            g = g.reset_index(drop=True)
            for i in range(len(g)):
                t = g.at[i, "t"]
                j = int(np.searchsorted(g["t"].to_numpy(), t - window, side="left"))
                if j >= i:
                    continue
                dt = t - g.at[j, "t"]
                dreq = g.at[i, "requests"] - g.at[j, "requests"]
                derr = g.at[i, "errors"] - g.at[j, "errors"]
                dbuckets = np.cumsum(g.at[i, "buckets"] - g.at[j, "buckets"])
                bounds = (*DURATION_BUCKETS_MS, float("inf"))
                pairs = list(zip(bounds, dbuckets, strict=True))
                out.append({"t": t, by: name, "rps": dreq / dt if dt else 0.0,
                            "error_rate": derr / dreq if dreq else 0.0,
                            "p50_ms": histogram_quantile(0.5, pairs), "p90_ms": histogram_quantile(0.9, pairs),
                            "p99_ms": histogram_quantile(0.99, pairs)})
        return pd.DataFrame(out, columns=["t", by, "rps", "error_rate", "p50_ms", "p90_ms", "p99_ms"])

    def summary(self, window: float | None = None, by: str = "destination_workload",
                reporter: str = "destination", where: Mapping[str, str] | None = None) -> pd.DataFrame:
        """One row per group over the last ``window`` seconds (default: everything scraped):
        requests, rate, error rate, p50/p90/p99 (from the histograms)."""
        df = self.series(by, reporter, where)
        rows = []
        for name, g in df.groupby(by, sort=True):
            g = g.reset_index(drop=True)
            last = len(g) - 1
            first = 0 if window is None else int(np.searchsorted(g["t"].to_numpy(), g.at[last, "t"] - window))
            first = min(first, last)
            dt = g.at[last, "t"] - g.at[first, "t"]
            base_req = g.at[first, "requests"] if window is not None else 0
            base_err = g.at[first, "errors"] if window is not None else 0
            base_b = g.at[first, "buckets"] if window is not None else 0
            dreq = g.at[last, "requests"] - base_req
            derr = g.at[last, "errors"] - base_err
            pairs = list(zip((*DURATION_BUCKETS_MS, float("inf")), np.cumsum(g.at[last, "buckets"] - base_b),
                             strict=True))
            rows.append({by: name, "requests": int(dreq), "rps": dreq / dt if dt else float("nan"),
                         "error_rate": derr / dreq if dreq else 0.0,
                         "p50_ms": histogram_quantile(0.5, pairs), "p90_ms": histogram_quantile(0.9, pairs),
                         "p99_ms": histogram_quantile(0.99, pairs)})
        return pd.DataFrame(rows, columns=[by, "requests", "rps", "error_rate", "p50_ms", "p90_ms", "p99_ms"])
