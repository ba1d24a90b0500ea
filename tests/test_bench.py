"""``python -m meshlab.bench`` runs to the end and prints its tables (no assertion on speed)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NUMBER = r"-?\d+(?:\.\d+)?"
TRACE_VARIANTS = ("mesh-trace-off", "mesh-trace-1pct", "mesh-trace-100pct")
PATHS = ("direct", "one-hop", "mesh", "mesh-plain", *TRACE_VARIANTS)


@pytest.fixture(scope="module")
def bench_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, dict]:
    out = tmp_path_factory.mktemp("bench") / "figures.json"
    proc = subprocess.run(
        [sys.executable, "-m", "meshlab.bench", "--quick", "--skip-nginx", "--workloads", "20", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert proc.returncode == 0, f"benchmark failed:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout, json.loads(out.read_text())


def test_prints_every_section(bench_run: tuple[str, dict]) -> None:
    text, _ = bench_run
    for heading in ("machine:", "== closed loop", "== open loop", "== ratios", "== added latency over direct",
                    "== mTLS cost", "== tracing cost", "== scale", "== targets"):
        assert heading in text, heading
    assert "nginx: not used" in text


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n== ", start + 1)
    return text[start:end if end >= 0 else None]


@pytest.mark.parametrize("heading", ["== closed loop", "== open loop"])
def test_tables_have_a_row_of_numbers_per_path(bench_run: tuple[str, dict], heading: str) -> None:
    table = _section(bench_run[0], heading)
    for path in PATHS:
        row = re.search(rf"^\s*{path}\s+(c=\d+|\d+/s)\s+(.*)$", table, re.M)
        assert row is not None, f"no {path} row in:\n{table}"
        cells = row.group(2).split()
        requests, errors, rps, p50, p90, p99 = (float(c) for c in cells[:6])
        assert requests > 0 and errors == 0 and rps > 0
        assert 0 < p50 <= p90 <= p99
    assert "nginx" not in table


def test_ratios_scale_and_targets_are_numbers(bench_run: tuple[str, dict]) -> None:
    text, _ = bench_run
    assert re.search(rf"one-hop / direct\s+{NUMBER}", text)
    assert re.search(rf"mesh / direct\s+{NUMBER}", text)
    assert re.search(r"one-hop / nginx\s+n/a", text)
    assert re.search(rf"^mesh\s+{NUMBER}\s+{NUMBER}\s+{NUMBER}", text, re.M)
    assert re.search(rf"20 services x 1 replica\s+up in {NUMBER} s, {NUMBER} KB RSS each", text)
    assert re.search(r"call: GET http://echo-19/echo -> 200", text)
    targets = _section(text, "== targets")
    assert len(re.findall(r"\s(PASS|FAIL|n/a)$", targets, re.M)) == 5


def test_json_figures(bench_run: tuple[str, dict]) -> None:
    _, fig = bench_run
    assert {(r["path"], r["mode"]) for r in fig["results"]} == {(p, m) for p in PATHS for m in ("closed", "open")}
    assert fig["machine"]["cores"] >= 1 and fig["machine"]["nginx"] is None
    assert [s["layout"] for s in fig["scale"]] == ["services", "replicas"]
    assert all(s["workloads"] == 20 and s["call_ok"] for s in fig["scale"])
    assert set(fig["summary"]["verdict"]) == {"mesh_added_p90_ms", "mesh_added_p99_ms", "one_hop_vs_nginx",
                                              "scale_seconds", "scale_kb_per_workload"}
    assert fig["summary"]["verdict"]["one_hop_vs_nginx"] == "n/a"


def test_mtls_variant_security_is_measured(bench_run: tuple[str, dict]) -> None:
    text, fig = bench_run
    mtls = fig["summary"]["mtls"]
    assert mtls["security"] == {"mesh": "mutual_tls", "mesh-plain": "none"}
    for r in fig["results"]:  # every run of a two-sidecar path, measured from the metrics
        expected = {"mesh-plain": "none", "direct": None, "one-hop": None}.get(r["path"], "mutual_tls")
        assert r["hop_security"] == expected, r
    assert isinstance(mtls["mtls_vs_plain"], float)
    assert set(mtls["mtls_added_ms"]["from_send"]) == {"p50", "p90", "p99"}
    section = _section(text, "== mTLS cost")
    assert re.search(rf"^mesh\s+mutual_tls\s+{NUMBER}", section, re.M), section
    assert re.search(rf"^mesh-plain\s+none\s+{NUMBER}", section, re.M), section
    assert re.search(rf"mesh \(mTLS\) / mesh-plain\s+{NUMBER}", section)
    assert re.search(rf"mTLS adds at 1000 req/s .*: p50 {NUMBER}  p90 {NUMBER}  p99 {NUMBER}", section)


def test_tracing_variants(bench_run: tuple[str, dict]) -> None:
    text, fig = bench_run
    tracing = fig["summary"]["tracing"]
    variants = tracing["variants"]
    assert list(variants) == list(TRACE_VARIANTS) and tracing["default"] == "mesh-trace-1pct"
    assert [v["sampling_pct"] for v in variants.values()] == [None, 1.0, 100.0]
    assert variants["mesh-trace-off"]["spans_per_request"] is None  # tracing off: no collector
    assert 0 <= variants["mesh-trace-1pct"]["spans_per_request"] < 1
    assert variants["mesh-trace-100pct"]["spans_per_request"] == 2.0  # a client and a server span each
    assert all(v["security"] == "mutual_tls" for v in variants.values())
    assert all(isinstance(v, float) for v in tracing["ratios"].values()), tracing["ratios"]
    assert set(tracing["added_over_default_ms"]) == {"mesh-trace-off", "mesh-trace-100pct"}
    section = _section(text, "== tracing cost")
    for path, sampling in zip(TRACE_VARIANTS, ("off", "1 %", "100 %"), strict=True):
        assert re.search(rf"^{path}\s+{sampling}\s+(n/a|{NUMBER})\s+mutual_tls\s+{NUMBER}", section, re.M), section
    for label in (r"trace off / default", r"trace 100 % / default", r"mesh \(main mesh\) / default"):
        assert re.search(rf"{label}\s+{NUMBER}", section), label
