"""``python -m meshlab.bench``: what the sidecars cost, measured in one run.

Theory of operation
-------------------
One echo app (FastAPI, ``GET /echo`` answers a small JSON document) is deployed in a ``Mesh``
(seed 0) and called along the paths a learner meets in the guide:

==========  ===========================================================================
direct      generator -> app (the replica's uvicorn server, origin-form ``/echo``)
one-hop     generator -> server sidecar inbound -> app (origin-form, ``Host: echo``)
mesh        generator -> client sidecar outbound -> server sidecar inbound -> app
            (proxy form ``GET http://echo/echo``: the path of every ``mesh.call``)
mesh-plain  the mesh path with a plaintext sidecar-to-sidecar hop (see "mTLS cost" below)
nginx       generator -> nginx (reverse proxy, keep-alive upstream) -> app; only where
            Debian's ``nginx`` is installed: a proxy written in C as a baseline
==========  ===========================================================================

Each path is measured twice, after a short warm-up on the same connections:

* *closed loop* (``--concurrency`` clients, 32 by default, each sending its next request when
  the previous one is answered): the maximum throughput of the path, in requests/s;
* *open loop* (``--rate``, 1000 requests/s by default, on a fixed schedule): latency
  percentiles p50/p90/p99 at a load every path sustains.

Two latencies are recorded per request. ``meshlab.load`` counts from the request's *scheduled*
start, so a stalled server cannot hide its queue ("coordinated omission"). But the generator's
event loop has timers of 1 ms resolution: it sends up to about a millisecond late (or a little
early), the same on every path, which is as large as the differences measured here. So the
generator also records when it really sent each request; "send" latency counts from there, and
"lag" is real minus scheduled send time. In an open loop the generator never waits for a
response before sending the next request, so the send latency still contains every queue
in the mesh; it only leaves out the generator's own timer jitter. The *added latency over
direct* (and its target) compares send latencies; the scheduled ones are printed beside them.

Why the load comes from another process: the whole mesh (apps, sidecars, control plane) runs on
one event-loop thread of this process. A generator in the same interpreter would share the
interpreter lock and the core with the servers it measures and steal exactly the time being
measured. So the generator is a separate process (``multiprocessing``, "spawn" start method)
with its own uvloop event loop and meshlab's own HTTP/1.1 client (``PoolSet``), driven by
``meshlab.load.generate``. It receives one command per run through a pipe and sends back the
samples (numpy arrays) and its own CPU time.

Before each measured run (after its warm-up) the mesh process collects its garbage, so that no
run pays for the garbage of the runs before it. Also reported per run: the server side's CPU time per request (this process, plus nginx on its
path), the cost of a hop whatever the number of free cores; and the garbage collector's work in
this process (``GcWatch``): a full collection walks every object the process tracks and stops
every server of the mesh meanwhile, which is what shows in a p99.

mTLS cost (issue 6): the mesh path's sidecar-to-sidecar hop is mutual TLS by default (Istio's
*auto mTLS*: the client sidecar originates mTLS to every endpoint that has a sidecar, and the
server sidecar, PERMISSIVE, accepts it). ``mesh-plain`` is the same path in the same mesh, measured
right after ``mesh`` in each mode, with ``PLAINTEXT_CONFIG`` applied for its runs only (applied
after the ``mesh`` run, deleted before the next path): a PeerAuthentication for the namespace
with ``mtls.mode: DISABLE`` and a DestinationRule for ``echo`` with ``tls.mode: DISABLE``. Either
one turns the client sidecar's auto mTLS off; the PeerAuthentication also makes the server
sidecar refuse TLS, so nothing can fall back to mTLS unnoticed. Every run reads the
server sidecar's ``istio_requests_total`` (reporter destination, source ``curl``) before and after
its measured requests: the ``connection_security_policy`` of those requests (``mutual_tls`` or
``none``) is the measured security of the run, and the report prints it beside each two-sidecar
path. Reported: closed-loop throughput mesh / mesh-plain (below 1: what mTLS costs) and the
open-loop latency mTLS adds (mesh minus mesh-plain, per percentile).

Tracing cost (issue 7): the share of new traces sampled is fixed when a ``Mesh`` is made
(``trace_sampling``), so the tracing variants run in three more meshes, one after another, each
alone in this process once the main mesh has stopped (garbage collected, started, echo deployed,
the mesh path measured in both modes with the same generator, stopped, its tracer shut down so
that its spans do not outlive it): ``mesh-trace-off`` (``None``: no spans, no trace headers),
``mesh-trace-1pct`` (the default, Istio's 1 %) and ``mesh-trace-100pct`` (every request makes a
client and a server span, kept in the in-memory collector, at most 100 000 spans, which the
garbage collector walks too: part of the cost measured). Ratios are against ``mesh-trace-1pct``,
the default measured the same way. The main mesh's ``mesh`` row, the same configuration measured
earlier in another mesh, is compared with it too: how far apart two measurements of one
configuration land in this run, the noise to read the tracing ratios against. Each run also
counts the spans collected (per request: 2 at 100 %, about 0.02 at 1 %), a check that sampling
was what the row says. A full garbage collection stops the mesh for tens of milliseconds, a large
share of a short run: both variant tables show the closed-loop run's full collections beside its
throughput, so that a ratio moved by one pause can be recognised as such.

Scale: a fresh process starts an empty mesh, reads its resident memory (RSS), deploys
``--workloads`` workloads (500 services of one replica each: an app server plus a sidecar with
its three listeners, four sockets per workload), times it, reads RSS again and calls one of
them. RSS after minus before, divided by the count, is what a workload adds (this includes the
modules first imported by the first deployment, so it is an upper bound). One service with the
same number of replicas is measured the same way for comparison.

Every number is measured in the run that prints it; ratios compare paths measured seconds apart
on the same machine. The figures vary by a few percent between runs, much more on a busy machine
(the report says how busy the CPU was before the run).
Nothing here runs in CI: tests only check that the benchmark completes and prints its tables.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing as mp
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager, nullcontext
from dataclasses import asdict, dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BenchPath", "RunResult", "GcWatch", "Generator", "Nginx", "TARGETS", "make_echo_app", "measure_scale", "main"]

#: The targets of the issue; the printout marks each PASS or FAIL (tests never assert on them).
TARGETS = {
    "mesh_added_p90_ms": 0.5,     # two-sidecar path at 1000/s: added p90 over direct, at most
    "mesh_added_p99_ms": 1.5,     # ... added p99 over direct, at most
    "one_hop_vs_nginx": 0.70,     # one-hop throughput / nginx throughput, at least
    "scale_seconds": 2.0,         # 500 workloads up in at most
    "scale_kb_per_workload": 200.0,  # resident memory added per workload, at most
}
ENVOY_SIDECAR_MB = (40, 60)  # what an Envoy sidecar takes, for comparison

#: Applied to the mesh for the ``mesh-plain`` runs only: the sidecar-to-sidecar hop in plaintext.
PLAINTEXT_CONFIG = """\
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata:
  name: bench-plaintext
spec:
  mtls:
    mode: DISABLE
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata:
  name: echo-plaintext
spec:
  host: echo
  trafficPolicy:
    tls:
      mode: DISABLE
"""

#: The tracing variants of the mesh path: row name -> ``Mesh(trace_sampling=...)`` (percent, None: off).
TRACE_VARIANTS = {"mesh-trace-off": None, "mesh-trace-1pct": 1.0, "mesh-trace-100pct": 100.0}
TRACE_DEFAULT = "mesh-trace-1pct"


def make_echo_app() -> Any:
    """The echo app: ``GET /echo`` returns ``{"service": "echo", "ok": true}``."""
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/echo")
    async def echo() -> dict[str, object]:
        return {"service": "echo", "ok": True}

    return app


@dataclass(frozen=True)
class BenchPath:
    """Where the generator sends: ``host:port``, the request-target and the Host header."""

    name: str
    host: str
    port: int
    target: str
    authority: str = "echo"


@dataclass
class RunResult:
    """One measured run of one path. Latencies in ms: ``p50/p90/p99`` from each request's
    scheduled start (``meshlab.load``'s definition), ``send_p*`` from the moment the generator
    really sent it, ``lag_p*`` how late the generator sent (open loop only)."""

    path: str
    mode: str  # "closed" or "open"
    load: str  # "c=32" or "1000/s"
    requests: int
    errors: int
    elapsed_s: float
    rps: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    send_p50_ms: float
    send_p90_ms: float
    send_p99_ms: float
    server_cpu_us_per_req: float
    gen_cpu_pct: float
    lag_p50_ms: float | None = None
    lag_p99_ms: float | None = None
    gen_conns: int = 0  # connections the generator opened during the run (after warm-up)
    proxy_conns: int = 0  # upstream connections the sidecars opened during the run
    gc_full: int = 0  # full (generation 2) garbage collections in the mesh process during the run
    gc_max_ms: float = 0.0  # the longest garbage-collection pause in the mesh process
    #: connection_security_policy of the run's requests at the server sidecar (source curl):
    #: "mutual_tls", "none" or both; None on paths that do not go through the client sidecar
    hop_security: str | None = None
    spans: int | None = None  # spans collected during the run (None: tracing off, or the collector full)


class GcWatch:
    """Counts the garbage collections of this process and their pauses (``gc.callbacks``): a
    full collection walks every tracked object and stops every server of the mesh meanwhile."""

    def __init__(self) -> None:
        self.full = 0
        self.max_ms = 0.0
        self._start = 0.0

    def _callback(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
            return
        self.max_ms = max(self.max_ms, (time.perf_counter() - self._start) * 1000.0)
        if info.get("generation") == 2:
            self.full += 1

    def __enter__(self) -> GcWatch:
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._callback)


# -- the generator process ---------------------------------------------------------------------
async def _drive(pools: Any, cmd: dict[str, Any]) -> dict[str, Any]:
    """One run in the generator process (see the module docstring).

    Besides ``generate``'s samples (latency from the scheduled start), it records for each
    request when ``send`` really began and ended: the difference between the scheduled and the
    real start is the generator's own lag (its event loop's timers have millisecond
    resolution), the time from real start to response is the latency the path alone causes."""
    from meshlab.load import generate
    from meshlab.proxy.http1 import Headers, Request

    host, port, rate = cmd["host"], cmd["port"], cmd["rate"]
    req = Request("GET", cmd["target"], Headers([("host", cmd["authority"]), ("user-agent", "meshlab-bench")]))
    timing: list[tuple[int, float, float]] = []
    pool = pools.get(host, port)
    clock = time.perf_counter

    async def send(i: int) -> tuple[int, str, str]:
        start = clock()
        resp = await pool.send(req)
        timing.append((i, start, clock()))
        return resp.status, "", ""

    opened0 = pool.opened
    cpu0 = time.process_time()
    t_before = clock()
    samples, elapsed = await generate(send, rate=rate, concurrency=cmd["concurrency"], duration=cmd["duration"])
    cpu = time.process_time() - cpu0
    out: dict[str, Any] = {
        "latency_ms": np.fromiter((s[1] for s in samples), float, len(samples)),
        "status": np.fromiter((s[2] for s in samples), np.int32, len(samples)),
        "elapsed": elapsed, "cpu_s": cpu, "lag_ms": None, "send_ms": None, "opened": pool.opened - opened0,
    }
    if timing:
        idx, start, end = np.array(timing).T
        out["send_ms"] = (end - start) * 1000.0
        if rate is not None:
            out["lag_ms"] = (start - (t_before + idx / rate)) * 1000.0
    return out


def _generator_main(conn: Connection) -> None:
    """Entry point of the generator process: serve commands from ``conn`` until "stop"."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides when we stop
    import uvloop

    from meshlab.proxy.pool import PoolSet

    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    pools = PoolSet()
    try:
        while True:
            try:
                op, arg = conn.recv()
            except EOFError:  # the parent went away
                return
            if op == "stop":
                return
            try:
                if op == "run":
                    conn.send(("ok", loop.run_until_complete(_drive(pools, arg))))
                elif op == "reset":
                    pools.close()
                    loop.run_until_complete(asyncio.sleep(0.01))
                    conn.send(("ok", None))
                else:
                    conn.send(("error", f"unknown command {op!r}"))
            except Exception:
                conn.send(("error", traceback.format_exc()))
    finally:
        pools.close()
        loop.close()


class Generator:
    """The parent's handle on the generator process (a context manager)."""

    def __init__(self) -> None:
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self.process = ctx.Process(target=_generator_main, args=(child,), name="meshlab-bench-generator",
                                   daemon=True)
        self.process.start()
        child.close()

    def _call(self, op: str, arg: Any = None) -> Any:
        self._conn.send((op, arg))
        status, value = self._conn.recv()
        if status != "ok":
            raise RuntimeError(f"load generator failed:\n{value}")
        return value

    def run(self, path: BenchPath, *, concurrency: int | None = None, rate: float | None = None,
            duration: float) -> dict[str, Any]:
        """Drive ``path`` for ``duration`` seconds; returns the raw samples (see ``_drive``)."""
        return self._call("run", {"host": path.host, "port": path.port, "target": path.target,
                                  "authority": path.authority, "concurrency": concurrency, "rate": rate,
                                  "duration": duration})

    def reset(self) -> None:
        """Close the generator's connections."""
        self._call("reset")

    def close(self) -> None:
        """Stop the process (asks politely, then terminates; idempotent)."""
        if self.process.is_alive():
            try:
                self._conn.send(("stop", None))
            except (OSError, ValueError):
                pass
            self.process.join(5)
        if self.process.is_alive():
            self.process.terminate()
            self.process.join(5)
        self._conn.close()

    def __enter__(self) -> Generator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# -- nginx --------------------------------------------------------------------------------------
NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {d}/client_body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    keepalive_requests 1000000;
    upstream app {{
        server {upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://app;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $host;
        }}
    }}
}}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Nginx:
    """nginx as a reverse proxy to ``upstream`` (``host:port``), with its own config file, pid,
    logs and temp paths in a temporary directory, on 127.0.0.1 and a free port; one process
    (``master_process off``, ``daemon off``), terminated by ``stop()``."""

    def __init__(self, binary: str, upstream: str) -> None:
        self.binary = binary
        self.upstream = upstream
        self.dir = Path(tempfile.mkdtemp(prefix="meshlab-bench-nginx-"))
        self.port = 0
        self.process: subprocess.Popen[bytes] | None = None

    @staticmethod
    def version(binary: str) -> str:
        """``nginx/1.22.1``-style version string."""
        out = subprocess.run([binary, "-v"], capture_output=True, text=True, timeout=10)
        m = re.search(r"nginx/\S+", out.stderr + out.stdout)
        return m.group(0) if m else "nginx"

    def start(self, attempts: int = 3) -> Nginx:
        """Start nginx and wait until it accepts connections (a new port if one was taken)."""
        last = ""
        for _ in range(attempts):
            self.port = _free_port()
            conf = self.dir / "nginx.conf"
            conf.write_text(NGINX_CONF.format(d=self.dir, upstream=self.upstream, port=self.port))
            self.process = subprocess.Popen(
                [self.binary, "-p", str(self.dir), "-e", str(self.dir / "error.log"), "-c", str(conf)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                start_new_session=True,  # Ctrl-C reaches us; we stop nginx ourselves
            )
            deadline = time.monotonic() + 5.0
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                        return self
                except OSError:
                    time.sleep(0.02)
            err = self.process.stderr.read().decode(errors="replace") if self.process.poll() is not None else ""
            log = self.dir / "error.log"
            last = err + (log.read_text(errors="replace") if log.exists() else "")
            self.stop(cleanup=False)
        raise RuntimeError(f"nginx did not start: {last.strip()}")

    @property
    def pid(self) -> int | None:
        """nginx's process id while it runs."""
        return self.process.pid if self.process is not None and self.process.poll() is None else None

    def stop(self, cleanup: bool = True) -> None:
        """Terminate nginx (SIGTERM, then SIGKILL) and remove its directory (idempotent)."""
        p, self.process = self.process, None
        if p is not None:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)
            if p.stderr is not None:
                p.stderr.close()
        if cleanup:
            shutil.rmtree(self.dir, ignore_errors=True)


# -- scale --------------------------------------------------------------------------------------
def _rss_bytes() -> int:
    import psutil

    return int(psutil.Process().memory_info().rss)


def _scale_main(conn: Connection, n: int, layout: str) -> None:
    """Entry point of the scale process: a fresh mesh, ``n`` workloads, figures to ``conn``."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        need = 4 * n + 256  # app, inbound, outbound, admin socket per workload, and spare
        if soft < need:
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
        from meshlab import Mesh

        app = make_echo_app()
        mesh = Mesh(seed=0).start()
        try:
            gc.collect()
            rss0 = _rss_bytes()
            t0 = time.perf_counter()
            if layout == "services":
                for i in range(n):
                    mesh.deploy(f"echo-{i}", app)
                last = f"echo-{n - 1}"
            else:
                mesh.deploy("echo", app, replicas=n)
                last = "echo"
            up = time.perf_counter() - t0
            gc.collect()
            rss1 = _rss_bytes()
            fds = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else -1
            t1 = time.perf_counter()
            resp = mesh.call(last, "/echo")
            first_call = time.perf_counter() - t1
            t2 = time.perf_counter()
            resp2 = mesh.call(last, "/echo")
            second_call = time.perf_counter() - t2
            warm: dict[str, float] = {}
            if layout == "services":  # every workload once: certificates are issued on first use
                t4 = time.perf_counter()
                ok = sum(mesh.call(f"echo-{i}", "/echo").status_code == 200 for i in range(n))
                warm["warm_seconds"] = time.perf_counter() - t4
                gc.collect()
                warm["warm_kb_per_workload"] = (_rss_bytes() - rss0) / n / 1024
                warm["warm_ok"] = ok
        finally:
            t3 = time.perf_counter()
            mesh.stop()
            down = time.perf_counter() - t3
        conn.send(("ok", {
            "layout": layout, "workloads": n, "seconds": up, "rss_before_mb": rss0 / 2**20,
            "rss_after_mb": rss1 / 2**20, "kb_per_workload": (rss1 - rss0) / n / 1024, "open_fds": fds,
            "call": f"GET http://{last}/echo -> {resp.status_code} {resp.text}",
            "call_ok": resp.status_code == 200 and resp2.status_code == 200,
            "first_call_ms": first_call * 1000, "second_call_ms": second_call * 1000, "stop_seconds": down,
            **warm,
        }))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    finally:
        conn.close()


def measure_scale(n: int, layout: str = "services", timeout: float = 300.0) -> dict[str, Any]:
    """Deploy ``n`` workloads in a fresh mesh in a fresh process (``layout``: "services" =
    ``n`` services of one replica, "replicas" = one service of ``n`` replicas); returns the
    figures (seconds, kb_per_workload, ...)."""
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    p = ctx.Process(target=_scale_main, args=(child, n, layout), name="meshlab-bench-scale", daemon=True)
    p.start()
    child.close()
    try:
        if not parent.poll(timeout):
            raise RuntimeError(f"scale measurement did not finish in {timeout:.0f} s")
        status, value = parent.recv()
        if status != "ok":
            raise RuntimeError(f"scale measurement failed:\n{value}")
        return value
    except EOFError:
        raise RuntimeError(f"scale process died (exit code {p.exitcode})") from None
    finally:
        p.join(5)
        if p.is_alive():
            p.terminate()
            p.join(5)
        parent.close()


# -- measuring the paths ------------------------------------------------------------------------
def _cpu_seconds(pid: int | None) -> float:
    import psutil

    if pid is None:
        return 0.0
    t = psutil.Process(pid).cpu_times()
    return float(t.user + t.system)


def _measure(gen: Generator, path: BenchPath, mode: str, value: float, duration: float, warmup: float,
             server_pids: list[int | None], mesh: Any = None) -> RunResult:
    """Warm up, then measure one path in one mode; server CPU, garbage collections and, from
    ``mesh``, the connections the sidecars open, the security of the sidecar-to-sidecar hop and
    the spans collected are read around the measured run."""
    kw: dict[str, Any] = {"concurrency": int(value)} if mode == "closed" else {"rate": value}
    if warmup > 0:
        gen.run(path, duration=warmup, **kw)
    gc.collect()  # no run pays for the garbage of the runs before it
    before = _mesh_counters(mesh)
    cpu0 = sum(_cpu_seconds(p) for p in server_pids)
    with GcWatch() as gcw:
        raw = gen.run(path, duration=duration, **kw)
    cpu = sum(_cpu_seconds(p) for p in server_pids) - cpu0
    after = _mesh_counters(mesh)
    conns = after["conns"] - before["conns"]
    hop = {k: v - before["hop"].get(k, 0.0) for k, v in after["hop"].items()}
    security = ", ".join(sorted(k for k, v in hop.items() if v > 0)) or None
    spans = (after["spans"] - before["spans"] if after["spans"] is not None and before["spans"] is not None
             else None)
    gen.reset()
    lat, status, send, lag = raw["latency_ms"], raw["status"], raw["send_ms"], raw["lag_ms"]
    n, elapsed = len(lat), raw["elapsed"]
    p50, p90, p99 = _pct(lat, (50, 90, 99))
    s50, s90, s99 = _pct(send, (50, 90, 99))
    l50, l99 = _pct(lag, (50, 99)) if lag is not None else (None, None)
    return RunResult(
        path=path.name, mode=mode, load=f"c={int(value)}" if mode == "closed" else f"{value:g}/s",
        requests=n, errors=int(np.count_nonzero(status != 200)), elapsed_s=round(elapsed, 3),
        rps=n / elapsed if elapsed > 0 else 0.0, p50_ms=p50, p90_ms=p90, p99_ms=p99,
        send_p50_ms=s50, send_p90_ms=s90, send_p99_ms=s99,
        server_cpu_us_per_req=cpu / n * 1e6 if n else float("nan"),
        gen_cpu_pct=100.0 * raw["cpu_s"] / elapsed if elapsed > 0 else 0.0, lag_p50_ms=l50, lag_p99_ms=l99,
        gen_conns=raw["opened"], proxy_conns=conns, gc_full=gcw.full, gc_max_ms=gcw.max_ms,
        hop_security=security, spans=spans,
    )


def _mesh_counters(mesh: Any) -> dict[str, Any]:
    """What ``_measure`` reads from ``mesh`` before and after a run: upstream connections opened by
    the sidecars, requests per ``connection_security_policy`` that reached a server sidecar from
    the client sidecar, spans collected (None: tracing off, or the collector is full and drops)."""
    if mesh is None:
        return {"conns": 0, "hop": {}, "spans": None}

    async def spans() -> int | None:
        if mesh.tracing is None:
            return None
        finished = mesh.tracing.exporter.finished
        return None if finished.maxlen is not None and len(finished) >= finished.maxlen else len(finished)

    return {"conns": _proxy_conns(mesh), "hop": _hop_counts(mesh), "spans": mesh.runtime.run(spans())}


def _pct(values: np.ndarray | None, qs: tuple[float, ...]) -> list[float]:
    if values is None or not len(values):
        return [float("nan")] * len(qs)
    return [float(v) for v in np.percentile(values, qs)]


def machine_info(nginx_version: str | None) -> dict[str, Any]:
    """Cores, CPU model, OS, Python, uvloop and nginx versions, and how busy the machine is
    (CPU used by other processes over half a second, load average) before the run."""
    import psutil
    import uvloop

    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cores": usable, "cpu": model, "os": f"{platform.system()} {platform.release()}",
            "python": platform.python_version(), "uvloop": uvloop.__version__, "nginx": nginx_version,
            "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "busy_pct": float(psutil.cpu_percent(interval=0.5)), "cpu_pressure": cpu_pressure()}


def cpu_pressure() -> float | None:
    """Linux pressure-stall information: share of the last 10 s in which some runnable task
    waited for a CPU (``/proc/pressure/cpu``, "some avg10"), in percent; None where unknown."""
    try:
        first = Path("/proc/pressure/cpu").read_text().splitlines()[0]
        return float(re.search(r"avg10=([\d.]+)", first).group(1))  # type: ignore[union-attr]
    except (OSError, IndexError, AttributeError, ValueError):
        return None


def measure_paths(args: argparse.Namespace, stack: ExitStack,
                  nginx_binary: str | None) -> tuple[list[RunResult], str]:
    """Deploy the echo app, start nginx (if ``nginx_binary``) and measure every path, mesh-plain
    included; then the tracing variants, each in its own mesh (see the module docstring).
    Everything started is registered on ``stack`` to be stopped. Returns the results and the
    security of the main mesh's sidecar-to-sidecar hop before the runs (``mutual_tls`` or ``none``)."""
    gen = stack.enter_context(Generator())
    mesh, replica = _echo_mesh(stack)
    assert replica.server is not None
    inbound = mesh.sidecar("echo").inbound
    assert mesh.client_sidecar is not None
    outbound = mesh.client_sidecar.outbound
    paths = [
        BenchPath("direct", replica.server.host, replica.server.port, "/echo"),
        BenchPath("one-hop", inbound.host, inbound.port, "/echo"),
        BenchPath("mesh", outbound.host, outbound.port, "http://echo/echo"),
        BenchPath("mesh-plain", outbound.host, outbound.port, "http://echo/echo"),
    ]
    nginx: Nginx | None = None
    if nginx_binary:
        nginx = Nginx(nginx_binary, replica.server.address)
        stack.callback(nginx.stop)
        nginx.start()
        paths.append(BenchPath("nginx", "127.0.0.1", nginx.port, "/echo"))

    security = _hop_security(mesh)
    me = os.getpid()
    results = []
    for mode, value in (("closed", args.concurrency), ("open", args.rate)):
        for path in paths:
            pids = [me, nginx.pid if (nginx is not None and path.name == "nginx") else None]
            with _plaintext(mesh) if path.name == "mesh-plain" else nullcontext():
                r = _measure(gen, path, mode, value, args.duration, args.warmup, pids, mesh)
            results.append(r)
            _progress(r)
    if nginx is not None:
        nginx.stop()
    mesh.stop()  # the tracing variants run alone in this process

    for name, sampling in TRACE_VARIANTS.items():
        mesh, _ = _echo_mesh(stack, trace_sampling=sampling)
        assert mesh.client_sidecar is not None
        outbound = mesh.client_sidecar.outbound
        path = BenchPath(name, outbound.host, outbound.port, "http://echo/echo")
        for mode, value in (("closed", args.concurrency), ("open", args.rate)):
            r = _measure(gen, path, mode, value, args.duration, args.warmup, [me], mesh)
            results.append(r)
            _progress(r)
        mesh.stop()
    return results, security


def _echo_mesh(stack: ExitStack, **kw: Any) -> tuple[Any, Any]:
    """A started ``Mesh(seed=0, **kw)`` (stopped by ``stack``) with the echo app deployed and
    answering through the mesh; returns the mesh and the echo replica. Collects garbage first,
    so that no mesh pays for the collection of the one before."""
    from meshlab import Mesh

    gc.collect()
    mesh = Mesh(seed=0, **kw)
    stack.callback(mesh.stop)
    mesh.start()
    replica = mesh.deploy("echo", make_echo_app())[0]
    check = mesh.call("echo", "/echo")
    if check.status_code != 200:
        raise RuntimeError(f"the echo app does not answer through the mesh: {check.status_code} {check.text}")
    return mesh, replica


@contextmanager
def _plaintext(mesh: Any) -> Iterator[None]:
    """``PLAINTEXT_CONFIG`` applied to ``mesh`` meanwhile (deleted afterwards, whatever happens)."""
    applied = mesh.apply(PLAINTEXT_CONFIG)
    try:
        yield
    finally:
        for r in applied:
            mesh.delete(r.kind, r.name, r.namespace)


def _progress(r: RunResult) -> None:
    print(f"  {r.path:<17} {r.mode:<6} {r.load:>7}: {r.rps:8.0f} req/s  p50 {r.p50_ms:6.3f}  "
          f"p90 {r.p90_ms:6.3f}  p99 {r.p99_ms:6.3f} ms" + (f"  [{r.hop_security}]" if r.hop_security else ""),
          flush=True)


def _proxy_conns(mesh: Any) -> int:
    """Upstream connections opened so far by every sidecar of ``mesh`` (read on its loop)."""

    async def count() -> int:
        return sum(pool.opened for sc in mesh.all_sidecars() for pool in sc.pools.pools.values())

    return int(mesh.runtime.run(count()))


def _hop_counts(mesh: Any) -> dict[str, float]:
    """Requests from the client sidecar (workload ``curl``) that server sidecars have answered so
    far, per ``connection_security_policy`` (Istio's label, reported by the destination): the
    rows ``mesh.metrics()`` shows, summed here on the mesh's loop."""

    async def count() -> dict[str, float]:  # on the mesh loop, without pandas: read between runs
        out: dict[str, float] = {}
        for sc in mesh.all_sidecars():
            for row in sc.metrics.rows():
                if (row["name"] == "istio_requests_total" and row["reporter"] == "destination"
                        and row["source_workload"] == "curl"):
                    key = str(row["connection_security_policy"])
                    out[key] = out.get(key, 0.0) + float(row["value"])  # type: ignore[arg-type]
        return out

    return dict(mesh.runtime.run(count()))


def _hop_security(mesh: Any) -> str:
    """How the client sidecar's requests reached the server sidecar so far (Istio's
    ``connection_security_policy`` label, reported by the destination: mutual_tls or none)."""
    return ", ".join(sorted(k for k, v in _hop_counts(mesh).items() if v > 0)) or "unknown"


# -- report -------------------------------------------------------------------------------------
def summarize(results: list[RunResult], scale: list[dict[str, Any]]) -> dict[str, Any]:
    """Ratios, added latencies and the verdict on each target."""
    ratios = {f"{a.replace('-', '_')}_vs_{b}": _closed_ratio(results, a, b)
              for a, b in (("one-hop", "direct"), ("mesh", "direct"), ("one-hop", "nginx"), ("nginx", "direct"))}
    added: dict[str, dict[str, dict[str, float]]] = {"from_send": {}, "from_schedule": {}}
    for p in ("one-hop", "mesh", "nginx"):
        over_direct = _open_added(results, p, "direct")
        if over_direct is not None:
            for kind in added:
                added[kind][p] = over_direct[kind]
    head = scale[0] if scale else None
    figures: dict[str, float | None] = {
        "mesh_added_p90_ms": added["from_send"].get("mesh", {}).get("p90"),
        "mesh_added_p99_ms": added["from_send"].get("mesh", {}).get("p99"),
        "one_hop_vs_nginx": ratios["one_hop_vs_nginx"],
        "scale_seconds": head["seconds"] if head else None,
        "scale_kb_per_workload": head["kb_per_workload"] if head else None,
    }
    verdict: dict[str, str] = {}
    for key, limit in TARGETS.items():
        v = figures[key]
        if v is None:
            verdict[key] = "n/a"
        elif key == "one_hop_vs_nginx":
            verdict[key] = "PASS" if v >= limit else "FAIL"
        else:
            verdict[key] = "PASS" if v <= limit else "FAIL"
    return {"ratios": ratios, "added_over_direct_ms": added, "figures": figures, "verdict": verdict,
            "mtls": _summarize_mtls(results), "tracing": _summarize_tracing(results)}


def _closed_ratio(results: list[RunResult], a: str, b: str) -> float | None:
    """Closed-loop throughput of path ``a`` over path ``b`` (None if either is missing)."""
    rps = {r.path: r.rps for r in results if r.mode == "closed"}
    x, y = rps.get(a), rps.get(b)
    return x / y if x is not None and y else None


def _open_added(results: list[RunResult], a: str, b: str) -> dict[str, dict[str, float]] | None:
    """Open-loop latency percentiles of path ``a`` minus those of path ``b``, from the actual send
    and from the scheduled start (None if either is missing)."""
    by = {r.path: r for r in results if r.mode == "open"}
    x, y = by.get(a), by.get(b)
    if x is None or y is None:
        return None
    return {kind: {q: getattr(x, f"{prefix}{q}_ms") - getattr(y, f"{prefix}{q}_ms") for q in ("p50", "p90", "p99")}
            for kind, prefix in (("from_send", "send_"), ("from_schedule", ""))}


def _measured_security(results: list[RunResult], path: str) -> str | None:
    """The connection_security_policy values seen in every run of ``path`` (None: not measured)."""
    seen = {x.strip() for r in results if r.path == path and r.hop_security for x in r.hop_security.split(",")}
    return ", ".join(sorted(seen)) or None


def _spans_per_request(results: list[RunResult], path: str) -> float | None:
    """Spans collected per request over the runs of ``path`` (None: tracing off or not counted)."""
    runs = [r for r in results if r.path == path]
    if not runs or any(r.spans is None for r in runs):
        return None
    n = sum(r.requests for r in runs)
    return sum(r.spans or 0 for r in runs) / n if n else None


def _summarize_mtls(results: list[RunResult]) -> dict[str, Any]:
    """Issue 6: the mesh path with mTLS (``mesh``) against plaintext (``mesh-plain``)."""
    return {"security": {p: _measured_security(results, p) for p in ("mesh", "mesh-plain")},
            "mtls_vs_plain": _closed_ratio(results, "mesh", "mesh-plain"),
            "mtls_added_ms": _open_added(results, "mesh", "mesh-plain"),
            "plaintext_config": PLAINTEXT_CONFIG}


def _summarize_tracing(results: list[RunResult]) -> dict[str, Any]:
    """Issue 7: the mesh path by trace sampling, each variant in its own mesh, against the default."""
    d = TRACE_DEFAULT
    return {
        "default": d,
        "variants": {p: {"sampling_pct": s, "spans_per_request": _spans_per_request(results, p),
                         "security": _measured_security(results, p)} for p, s in TRACE_VARIANTS.items()},
        "ratios": {"trace_off_vs_default": _closed_ratio(results, "mesh-trace-off", d),
                   "trace_100pct_vs_default": _closed_ratio(results, "mesh-trace-100pct", d),
                   "main_mesh_vs_default": _closed_ratio(results, "mesh", d)},
        "added_over_default_ms": {p: _open_added(results, p, d) for p in TRACE_VARIANTS if p != d},
    }


def _num(v: float) -> str:
    """A latency figure with as many decimals as are meaningful."""
    return f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}" if abs(v) < 1000 else f"{v:.0f}"


def _fmt(v: float | None, spec: str = ".2f") -> str:
    return "n/a" if v is None or v != v else format(v, spec)


def _table(rows: list[dict[str, Any]], cols: dict[str, str]) -> str:
    import pandas as pd

    df = pd.DataFrame(rows)[list(cols)].rename(columns=cols)
    return df.to_string(index=False, na_rep="-", float_format=_num)


def render(report: dict[str, Any]) -> str:
    """The printed report (tables, ratios, scale, targets)."""
    m, s, sm = report["machine"], report["settings"], report["summary"]
    r, v = sm["ratios"], sm["verdict"]
    lines = [f"machine: {m['cores']} cores ({m['cpu']}), {m['os']}, Python {m['python']}, uvloop {m['uvloop']}, "
             f"nginx: {m['nginx'] or 'not used'}",
             f"before the run: CPU {m['busy_pct']:.0f} % busy, load average {m['loadavg']}, CPU pressure "
             f"{_fmt(m['cpu_pressure'], '.0f')} %; during the path runs: CPU pressure {_fmt(s.get('cpu_pressure_runs'), '.0f')} %"
             + ("  (WARNING: other processes are running; the figures will be noisy)" if m["busy_pct"] > 10 else ""),
             f"settings: {s['duration']:g} s per run after {s['warmup']:g} s warm-up; closed loop concurrency "
             f"{s['concurrency']}, open loop {s['rate']:g} req/s; load generator in a separate process (uvloop)",
             f"mesh path: client sidecar -> server sidecar over {s['mesh_hop_security']} (the mesh's default)"]
    rows = [asdict(x) for x in report["results"]]
    common = {"path": "path", "load": "load", "requests": "requests", "errors": "errors", "rps": "req/s"}
    lines += ["", "== closed loop (max throughput; latency in ms)",
              _table([x for x in rows if x["mode"] == "closed"],
                     {**common, "p50_ms": "p50", "p90_ms": "p90", "p99_ms": "p99",
                      "server_cpu_us_per_req": "server cpu us/req", "gen_cpu_pct": "gen cpu %",
                      "gen_conns": "new conns gen", "proxy_conns": "new conns proxy",
                      "gc_full": "full gc", "gc_max_ms": "gc max ms"})]
    lines += ["", f"== open loop at {s['rate']:g} req/s (latency in ms from the scheduled start; send p*: from the "
                  "actual send; lag: actual - scheduled send, < 0 = early: the generator's timers have 1 ms "
                  "resolution)",
              _table([x for x in rows if x["mode"] == "open"],
                     {**common, "p50_ms": "p50", "p90_ms": "p90", "p99_ms": "p99", "send_p50_ms": "send p50",
                      "send_p90_ms": "send p90", "send_p99_ms": "send p99", "lag_p50_ms": "lag p50",
                      "lag_p99_ms": "lag p99", "server_cpu_us_per_req": "server cpu us/req",
                      "gen_conns": "new conns gen", "proxy_conns": "new conns proxy",
                      "gc_full": "full gc", "gc_max_ms": "gc max ms"})]
    behind = [f"{x['path']} ({x['rps']:.0f}/s)" for x in rows if x["mode"] == "open" and x["rps"] < 0.95 * s["rate"]]
    if behind:
        lines.append(f"OVERLOADED: {', '.join(behind)} did not keep up with {s['rate']:g} req/s; their latencies are "
                     "queueing, not the cost of a hop")
    lines += ["", "== ratios (closed-loop throughput)",
              f"one-hop / direct   {_fmt(r['one_hop_vs_direct'])}",
              f"mesh / direct      {_fmt(r['mesh_vs_direct'])}",
              f"nginx / direct     {_fmt(r['nginx_vs_direct'])}",
              f"one-hop / nginx    {_fmt(r['one_hop_vs_nginx'])}   target >= {TARGETS['one_hop_vs_nginx']:.2f}: "
              f"{v['one_hop_vs_nginx']}"]
    added = sm["added_over_direct_ms"]
    lines += ["", f"== added latency over direct at {s['rate']:g} req/s (ms; from the actual send, and from the "
                  "scheduled start)",
              f"{'path':<10}{'p50':>10}{'p90':>10}{'p99':>10}   {'sched p50':>10}{'sched p90':>10}{'sched p99':>10}"]
    for p, a in added["from_send"].items():
        b = added["from_schedule"][p]
        cells = [a["p50"], a["p90"], a["p99"], b["p50"], b["p90"], b["p99"]]
        lines.append(f"{p:<10}" + "".join(f"{_num(c):>10}" for c in cells[:3]) + "   "
                     + "".join(f"{_num(c):>10}" for c in cells[3:]))
    lines.append(f"mesh target (from send): p90 <= {TARGETS['mesh_added_p90_ms']} ms: {v['mesh_added_p90_ms']}; "
                 f"p99 <= {TARGETS['mesh_added_p99_ms']} ms: {v['mesh_added_p99_ms']}")
    lines += _render_variants(report)
    lines += ["", "== scale (a fresh mesh in a fresh process; workload = app server + sidecar)"]
    for sc in report["scale"]:
        what = (f"{sc['workloads']} services x 1 replica" if sc["layout"] == "services"
                else f"1 service x {sc['workloads']} replicas")
        lines.append(f"{what:<28} up in {sc['seconds']:.3f} s, {sc['kb_per_workload']:.1f} KB RSS each "
                     f"(RSS {sc['rss_before_mb']:.1f} -> {sc['rss_after_mb']:.1f} MB, {sc['open_fds']} fds), "
                     f"first call {sc['first_call_ms']:.1f} ms, stop {sc['stop_seconds']:.3f} s")
    if report["scale"]:
        sc = report["scale"][0]
        lo, hi = ENVOY_SIDECAR_MB
        lines.append(f"call: {sc['call']}")
        if "warm_seconds" in sc:
            lines.append(f"then each of the {sc['workloads']} called once ({sc['warm_ok']} answered 200; mTLS certificates "
                         f"are issued on first use): {sc['warm_seconds']:.3f} s, {sc['warm_kb_per_workload']:.1f} KB RSS "
                         "per workload in all")
        lines.append(f"an Envoy sidecar alone takes {lo}-{hi} MB, {lo * 1024 / max(sc['kb_per_workload'], 1e-9):.0f}x "
                     f"or more what a whole workload (app and sidecar) adds here")
    lines += ["", "== targets"]
    names = {"mesh_added_p90_ms": f"mesh path adds <= 0.5 ms p90 at {s['rate']:g}/s",
             "mesh_added_p99_ms": f"mesh path adds <= 1.5 ms p99 at {s['rate']:g}/s",
             "one_hop_vs_nginx": "one hop >= 70 % of nginx throughput",
             "scale_seconds": f"{s['workloads']} workloads up in <= 2 s",
             "scale_kb_per_workload": "<= 200 KB per workload"}
    for key, label in names.items():
        lines.append(f"{label:<42} {_fmt(sm['figures'][key], '.3f'):>9}  {v[key]}")
    return "\n".join(lines)


def _render_variants(report: dict[str, Any]) -> list[str]:
    """The sections on the mTLS cost and the tracing cost of the mesh path."""
    s, sm = report["settings"], report["summary"]
    closed = {x.path: x for x in report["results"] if x.mode == "closed"}
    opened = {x.path: x for x in report["results"] if x.mode == "open"}

    def row(path: str, cells: str) -> str:
        """path, ``cells`` (already aligned), closed-loop req/s and full collections (longest
        pause), open-loop send p50/p90/p99."""
        c, o = closed.get(path), opened.get(path)
        lat = "".join(f"{_num(getattr(o, f'send_{q}_ms')) if o else 'n/a':>9}" for q in ("p50", "p90", "p99"))
        gcs = f"{c.gc_full} ({c.gc_max_ms:.0f} ms)" if c else "n/a"
        return f"{path:<19}{cells}{_fmt(c.rps if c else None, '.0f'):>9}{gcs:>14}{lat}"

    def added(a: dict[str, dict[str, float]] | None) -> str:
        if a is None:
            return "n/a"
        send, sched = ("  ".join(f"{q} {_num(a[k][q])}" for q in ("p50", "p90", "p99"))
                       for k in ("from_send", "from_schedule"))
        return f"{send}   (from the scheduled start: {sched})"

    tail = f"{'req/s':>9}{'full gc':>14}{'p50':>9}{'p90':>9}{'p99':>9}"
    mt = sm["mtls"]
    lines = ["", "== mTLS cost: the mesh path with its sidecar-to-sidecar hop in mutual TLS and in plaintext "
                 "(same mesh; PeerAuthentication mtls DISABLE + DestinationRule tls DISABLE applied for the "
                 "mesh-plain runs only)",
             "measured security: connection_security_policy of the measured requests at the server sidecar; "
             f"req/s, full gc (longest pause): closed loop; p50/p90/p99: open loop at {s['rate']:g} req/s, ms from "
             "the actual send",
             f"{'path':<19}{'measured security':>18}{tail}"]
    for p in ("mesh", "mesh-plain"):
        lines.append(row(p, f"{mt['security'][p] or 'unknown':>18}"))
    lines += [f"mesh (mTLS) / mesh-plain    {_fmt(mt['mtls_vs_plain'])}   (closed-loop throughput)",
              f"mTLS adds at {s['rate']:g} req/s (ms, mesh - mesh-plain, from the actual send): "
              f"{added(mt['mtls_added_ms'])}"]

    tr = sm["tracing"]
    d, ratios = tr["default"], tr["ratios"]
    vs_default = {"mesh-trace-off": ratios["trace_off_vs_default"], d: 1.0,
                  "mesh-trace-100pct": ratios["trace_100pct_vs_default"]}
    lines += ["", f"== tracing cost: the mesh path in fresh meshes by trace sampling, one after another "
                  f"(ratios against {d}, the default)",
              "spans/req: spans collected per request; req/s, full gc (longest pause): closed loop; p50/p90/p99: "
              f"open loop at {s['rate']:g} req/s, ms from the actual send",
              f"{'path':<19}{'sampling':>9}{'spans/req':>11}{'security':>12}{'/ default':>11}{tail}"]
    for p, v in tr["variants"].items():
        sampling = "off" if v["sampling_pct"] is None else f"{v['sampling_pct']:g} %"
        lines.append(row(p, f"{sampling:>9}{_fmt(v['spans_per_request'], '.3f'):>11}"
                            f"{v['security'] or 'unknown':>12}{_fmt(vs_default.get(p)):>11}"))
    lines += [f"trace off / default         {_fmt(ratios['trace_off_vs_default'])}   (closed-loop throughput)",
              f"trace 100 % / default       {_fmt(ratios['trace_100pct_vs_default'])}",
              f"mesh (main mesh) / default  {_fmt(ratios['main_mesh_vs_default'])}   (the same configuration, "
              "measured earlier in the main mesh: how far apart two measurements land in this run)"]
    for p, a in tr["added_over_default_ms"].items():
        lines.append(f"{p} - {d} at {s['rate']:g} req/s (ms, from the actual send): {added(a)}")
    return lines


# -- command line -------------------------------------------------------------------------------
@contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """Treat SIGTERM like Ctrl-C so every ``finally`` runs (mesh, generator, nginx stopped)."""

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, old)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options (see ``--help``)."""
    ap = argparse.ArgumentParser(prog="python -m meshlab.bench", description=__doc__.split("\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="short runs and 50 workloads (a smoke test)")
    ap.add_argument("--json", metavar="PATH", help="also write the figures to PATH as JSON")
    ap.add_argument("--skip-nginx", action="store_true", help="do not run the nginx baseline")
    ap.add_argument("--workloads", type=int, help="workloads for the scale test (default 500; --quick 50)")
    ap.add_argument("--duration", type=float, help="seconds per measured run (default 3; --quick 0.5)")
    ap.add_argument("--warmup", type=float, help="seconds of warm-up before each run (default 1; --quick 0.2)")
    ap.add_argument("--concurrency", type=int, default=32, help="closed-loop clients (default 32)")
    ap.add_argument("--rate", type=float, default=1000.0, help="open-loop requests/s (default 1000)")
    args = ap.parse_args(argv)
    args.duration = args.duration or (0.5 if args.quick else 3.0)
    args.warmup = args.warmup if args.warmup is not None else (0.2 if args.quick else 1.0)
    args.workloads = args.workloads or (50 if args.quick else 500)
    if args.workloads < 1 or args.concurrency < 1 or args.rate <= 0 or args.duration <= 0:
        ap.error("--workloads, --concurrency, --rate and --duration must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the report; 0 on success (targets missed still count as success)."""
    args = parse_args(argv)
    cmd = " ".join(["python -m meshlab.bench", *(sys.argv[1:] if argv is None else argv)])
    print(f"$ {cmd}", flush=True)
    nginx_binary = None if args.skip_nginx else shutil.which("nginx")
    machine = machine_info(Nginx.version(nginx_binary) if nginx_binary else None)
    with _sigterm_as_interrupt():
        try:
            with ExitStack() as stack:
                print("measuring paths ...", flush=True)
                results, security = measure_paths(args, stack, nginx_binary)
                pressure = cpu_pressure()
            print("measuring scale ...", flush=True)
            scale = [measure_scale(args.workloads, "services"), measure_scale(args.workloads, "replicas")]
        except KeyboardInterrupt:
            print("interrupted: everything stopped", file=sys.stderr)
            return 130
    report: dict[str, Any] = {
        "command": cmd, "machine": machine,
        "settings": {"duration": args.duration, "warmup": args.warmup, "concurrency": args.concurrency,
                     "rate": args.rate, "workloads": args.workloads,
                     "mesh_hop_security": security,
                     "cpu_pressure_runs": pressure},
        "results": results, "scale": scale, "summary": summarize(results, scale),
    }
    print()
    print(render(report), flush=True)
    if args.json:
        out = {**report, "results": [asdict(r) for r in results]}
        Path(args.json).write_text(json.dumps(out, indent=1, default=float) + "\n")
        print(f"\nfigures written to {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
