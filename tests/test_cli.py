"""The ``meshlab`` command (``meshlab.cli``): ``validate`` and ``analyze`` on Istio's Bookinfo
samples (valid), Istio's validation corpus (invalid), a YAML syntax error and a missing file.
Each behaviour is checked in-process (``main([...])``) and a few through a real subprocess
(``python -m meshlab.cli``), which is what the ``meshlab`` console script runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from meshlab import __version__
from meshlab.cli import SUBCOMMANDS, build_parser, latest_by_key, main
from meshlab.config import load

ROOT = Path(__file__).resolve().parents[1]
ISTIO = ROOT.parent / "shared" / "istio"
BOOKINFO = ISTIO / "bookinfo-networking"
INVALID_DR = ISTIO / "validation-testdata" / "destinationrule-invalid.yaml"

needs_bookinfo = pytest.mark.skipif(not BOOKINFO.is_dir(), reason="../shared/istio/bookinfo-networking is missing")
needs_corpus = pytest.mark.skipif(not INVALID_DR.is_file(),
                                  reason="../shared/istio/validation-testdata/destinationrule-invalid.yaml is missing")

VALID = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route: [{destination: {host: reviews, subset: v1}}]
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets: [{name: v1, labels: {version: v1}}]
"""

SYNTAX_ERROR = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews
  http: []
"""

WRONG_FIELD = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      wieght: 100
"""

NOT_SIMULATED = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - corsPolicy: {allowOrigins: [{exact: "https://example.com"}]}
    route: [{destination: {host: reviews}}]
"""


def run_cli(*args: str | Path, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    return subprocess.run([sys.executable, "-m", "meshlab.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, env=env, timeout=120)


@pytest.fixture
def files(tmp_path: Path) -> dict[str, Path]:
    out = {}
    for name, text in (("valid", VALID), ("syntax", SYNTAX_ERROR), ("field", WRONG_FIELD), ("cors", NOT_SIMULATED)):
        out[name] = tmp_path / f"{name}.yaml"
        out[name].write_text(text)
    return out


# -- validate -----------------------------------------------------------------------------------

def test_validate_valid_file(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(files["valid"])]) == 0
    out, err = capsys.readouterr()
    assert out == f"✔ {files['valid']}: 2 documents valid\n"
    assert err == ""


@needs_bookinfo
def test_validate_bookinfo_folder(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(BOOKINFO)]) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert len(lines) == len(list(BOOKINFO.glob("*.yaml")))
    assert f"✔ {BOOKINFO / 'virtual-service-all-v1.yaml'}: 4 documents valid" in lines
    assert f"✔ {BOOKINFO / 'virtual-service-reviews-v3.yaml'}: 1 document valid" in lines
    assert err == ""


@needs_corpus
def test_validate_istio_invalid_corpus(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(INVALID_DR)]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith(f"✘ {INVALID_DR}: ")
    assert f"{INVALID_DR}:12: spec.trafficPolicy.loadBalancer.warmup.minimumPercent: must be between 0 and 100 " \
           "(got 150.0)" in lines
    assert all(line.startswith(f"{INVALID_DR}:") for line in lines[1:])
    assert err.startswith("meshlab validate: 1 of 1 file invalid (") and err.count("\n") == 1


def test_validate_yaml_syntax_error_shows_the_line(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(files["syntax"])]) == 1
    out, _ = capsys.readouterr()
    [head, problem] = out.splitlines()
    assert head == f"✘ {files['syntax']}: 1 problem"
    assert problem.startswith(f"{files['syntax']}:7: YAML syntax error")


def test_validate_reports_file_line_path_message(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(files["field"])]) == 1
    out, _ = capsys.readouterr()
    assert f"{files['field']}:9: spec.http[0].route[0].wieght: unknown field; did you mean 'weight'?" in out


def test_validate_mixed_files_checks_every_file(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(files["valid"]), str(files["field"]), str(files["cors"])]) == 1
    out, err = capsys.readouterr()
    assert f"✔ {files['valid']}: 2 documents valid" in out
    assert f"✔ {files['cors']}: 1 document valid" in out
    assert "meshlab validate: 1 of 3 files invalid (1 problem)" in err


def test_validate_warnings_do_not_fail(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(files["cors"])]) == 0
    out, err = capsys.readouterr()
    first, warning = out.splitlines()
    assert first == f"✔ {files['cors']}: 1 document valid"
    assert warning.startswith(f"Warning: {files['cors']}:1: VirtualService default/reviews: spec.http[0].corsPolicy")
    assert "not simulated" in warning
    assert err == ""


def test_validate_missing_file_is_a_usage_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.yaml"
    assert main(["validate", str(missing)]) == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == f"meshlab validate: error: {missing}: no such file or directory\n"


def test_validate_folder_without_yaml(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["validate", str(tmp_path)]) == 2
    assert "no *.yaml or *.yml files" in capsys.readouterr().err


def test_validate_binary_file_is_a_problem_not_a_crash(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    blob = tmp_path / "blob.yaml"
    blob.write_bytes(b"\xff\xfe\x00binary")
    assert main(["validate", str(blob)]) == 1
    out, _ = capsys.readouterr()
    assert "cannot read file" in out


def test_namespace_option(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", "-n", "shop", str(files["cors"])]) == 0
    assert "VirtualService shop/reviews" in capsys.readouterr().out


# -- analyze ------------------------------------------------------------------------------------

def test_analyze_clean(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(files["valid"])]) == 0
    out, err = capsys.readouterr()
    assert out == "✔ No validation issues found when analyzing 2 resources from 1 file.\n"
    assert err == ""


@needs_bookinfo
def test_analyze_bookinfo_consistent_set(capsys: pytest.CaptureFixture[str]) -> None:
    args = [str(BOOKINFO / f) for f in ("destination-rule-all.yaml", "virtual-service-all-v1.yaml",
                                         "bookinfo-gateway.yaml")]
    assert main(["analyze", *args]) == 0
    assert capsys.readouterr().out.startswith("✔ No validation issues found when analyzing 10 resources from 3 files")


@needs_bookinfo
def test_analyze_finds_a_missing_subset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    vs = BOOKINFO / "virtual-service-reviews-v3.yaml"
    dr = tmp_path / "dr.yaml"
    dr.write_text(VALID.split("---\n")[1])  # a DestinationRule with subset v1 only
    assert main(["analyze", str(dr), str(vs)]) == 1
    out, err = capsys.readouterr()
    [line] = out.splitlines()
    assert line.startswith(f"Error [IST0101] (VirtualService/default/reviews {vs}:1) ")
    assert '"reviews+v3"' in line
    assert err == "meshlab analyze: 1 error found\n"


def test_analyze_warnings_only_exit_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gw = tmp_path / "gw.yaml"
    gw.write_text("""\
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: edge}
spec:
  selector: {istio: ingressgateway}
  servers: [{port: {number: 80, name: http, protocol: HTTP}, hosts: ["*"]}]
""")
    assert main(["analyze", str(gw)]) == 0
    out, _ = capsys.readouterr()
    assert out.startswith(f"Warning [ML0003] (Gateway/default/edge {gw}:1) ")


@needs_bookinfo
def test_analyze_whole_bookinfo_folder_keeps_the_last_definition(capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["analyze", str(BOOKINFO)])
    out, _ = capsys.readouterr()
    assert "Note: " in out and "redefined a resource" in out
    # the last DestinationRule "details" (fault-injection-details-v1.yaml) has only subset v1,
    # the last VirtualService "details" (virtual-service-details-v2.yaml) routes to v2
    assert '"details+v2"' in out and "virtual-service-details-v2.yaml" in out
    assert status == 1


@needs_corpus
def test_analyze_invalid_files_are_not_analysed(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(INVALID_DR)]) == 1
    out, err = capsys.readouterr()
    assert "minimumPercent: must be between 0 and 100" in out
    assert "[IST" not in out
    assert err.startswith("meshlab analyze: the files are not valid Istio configuration")


def test_analyze_is_all_or_nothing(files: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["analyze", str(files["valid"]), str(files["syntax"])]) == 1
    out, _ = capsys.readouterr()
    assert "✔" not in out and f"{files['syntax']}:7: YAML syntax error" in out


def test_latest_by_key() -> None:
    docs = load([VALID, VALID.replace("subset: v1}}]", "subset: v2}}]")])
    unique, replaced = latest_by_key(docs)
    assert replaced == 2 and len(unique) == 2
    vs = next(r for r in unique if r.kind == "VirtualService")
    assert vs.spec.http[0].route[0].destination.subset == "v2"


# -- the command itself --------------------------------------------------------------------------

def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "choose a command: validate, analyze" in capsys.readouterr().err
    assert main(["frobnicate"]) == 2
    assert "invalid choice" in capsys.readouterr().err
    assert main(["validate"]) == 2
    assert "FILE_OR_DIR" in capsys.readouterr().err


def test_help_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert "validate" in out and "analyze" in out
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"meshlab {__version__}"


def test_one_subparser_per_subcommand() -> None:
    parser = build_parser()
    for name in SUBCOMMANDS:
        args = parser.parse_args([name, "x.yaml"])
        assert args.command == name and args.run is SUBCOMMANDS[name][1]


@needs_bookinfo
@needs_corpus
def test_subprocess(tmp_path: Path) -> None:
    """Three real runs (each pays Python's start-up and meshlab's import): valid, invalid, missing."""
    ok = run_cli("validate", BOOKINFO / "virtual-service-all-v1.yaml")
    assert (ok.returncode, ok.stdout, ok.stderr) == (
        0, f"✔ {BOOKINFO / 'virtual-service-all-v1.yaml'}: 4 documents valid\n", "")
    (tmp_path / "s.yaml").write_text(SYNTAX_ERROR)
    bad = run_cli("validate", "s.yaml", INVALID_DR, cwd=tmp_path)
    assert bad.returncode == 1
    assert "s.yaml:7: YAML syntax error" in bad.stdout and f"{INVALID_DR}:12: " in bad.stdout
    assert bad.stderr.startswith("meshlab validate: 2 of 2 files invalid (")
    missing = run_cli("analyze", "missing.yaml", cwd=tmp_path)
    assert (missing.returncode, missing.stdout) == (2, "")
    assert missing.stderr == "meshlab analyze: error: missing.yaml: no such file or directory\n"
