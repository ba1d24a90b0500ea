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
                    "== scale", "== targets"):
        assert heading in text, heading
    assert "nginx: not used" in text


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n== ", start + 1)
    return text[start:end if end >= 0 else None]


@pytest.mark.parametrize("heading", ["== closed loop", "== open loop"])
def test_tables_have_a_row_of_numbers_per_path(bench_run: tuple[str, dict], heading: str) -> None:
    table = _section(bench_run[0], heading)
    for path in ("direct", "one-hop", "mesh"):
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
    assert {(r["path"], r["mode"]) for r in fig["results"]} == {
        (p, m) for p in ("direct", "one-hop", "mesh") for m in ("closed", "open")}
    assert fig["machine"]["cores"] >= 1 and fig["machine"]["nginx"] is None
    assert [s["layout"] for s in fig["scale"]] == ["services", "replicas"]
    assert all(s["workloads"] == 20 and s["call_ok"] for s in fig["scale"])
    assert set(fig["summary"]["verdict"]) == {"mesh_added_p90_ms", "mesh_added_p99_ms", "one_hop_vs_nginx",
                                              "scale_seconds", "scale_kb_per_workload"}
    assert fig["summary"]["verdict"]["one_hop_vs_nginx"] == "n/a"
