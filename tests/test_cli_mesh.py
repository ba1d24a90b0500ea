"""The ``meshlab`` command against a running mesh: ``apply``, ``delete``, ``get``, ``proxy-config``,
``analyze`` and ``export`` through the control plane's admin API, and ``up``.

A Bookinfo mesh is started in this process with ``mesh.serve_admin()``; ``MESHLAB_HOME`` points
at a temporary folder, so the context file the command reads is the test's own. Each command
runs in-process (``main([...])``) and, once, as a real ``python -m meshlab.cli`` process;
``meshlab up`` runs in a child process that is stopped with SIGINT, as Ctrl-C would."""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from meshlab import Mesh
from meshlab.apps import bookinfo
from meshlab.cli import BOOKINFO_GATEWAY, NO_MESH, SHOP_GATEWAY, SUBCOMMANDS, main
from meshlab.config import load
from meshlab.control.admin import context_file
from meshlab.export import manifests

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"

REVIEWS = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - match: [{headers: {end-user: {exact: jason}}}]
    route: [{destination: {host: reviews, subset: v2}}]
  - route: [{destination: {host: reviews, subset: v1}}]
"""

MISSING_SUBSET = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ratings}
spec:
  hosts: [ratings]
  http:
  - route: [{destination: {host: ratings, subset: v9}}]
"""

TYPO = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: details}
spec:
  hosts: [details]
  http:
  - route: [{destination: {host: details}, wieght: 100}]
"""


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty MESHLAB_HOME: no context file, so no running mesh yet."""
    folder = tmp_path / "home"
    monkeypatch.setenv("MESHLAB_HOME", str(folder))
    return folder


@pytest.fixture
def mesh(home: Path) -> Iterator[Mesh]:
    """Bookinfo with its gateway, serving the admin API (context file in ``home``)."""
    m = Mesh(seed=0).start()
    try:
        bookinfo.deploy(m)
        m.apply(BOOKINFO_GATEWAY)
        m.serve_admin()
        yield m
    finally:
        m.stop()


@pytest.fixture
def reviews_file(tmp_path: Path) -> Path:
    path = tmp_path / "reviews.yaml"
    path.write_text(REVIEWS)
    return path


def run(capsys: pytest.CaptureFixture[str], *argv: str | Path) -> tuple[int, str, str]:
    status = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return status, out, err


def run_cli(*args: str | Path, home: Path, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "MESHLAB_HOME": str(home)}
    return subprocess.run([sys.executable, "-m", "meshlab.cli", *map(str, args)], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=120, input=stdin)


# -- no running mesh ------------------------------------------------------------------------------

@pytest.mark.parametrize("argv", [["get", "vs"], ["apply", "-f", "x.yaml"], ["delete", "-f", "x.yaml"],
                                  ["proxy-config", "routes", "productpage-v1-0"], ["analyze"], ["export", "out"]])
def test_no_running_mesh_is_one_line_and_exit_1(argv: list[str], home: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.yaml").write_text(REVIEWS)
    status, out, err = run(capsys, *argv)
    assert (status, out) == (1, "")
    assert err == f"meshlab {argv[0]}: error: {NO_MESH}\n"
    assert NO_MESH == ("no running mesh found (start one with `meshlab up bookinfo` or `mesh.serve_admin()` "
                       "in a notebook)")


def test_stale_context_file(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    home.mkdir()
    context_file().write_text(json.dumps({"admin": "127.0.0.1:1", "pid": 1}))
    status, _, err = run(capsys, "get", "vs")
    assert status == 1
    assert err.count("\n") == 1 and "no running mesh found" in err and "127.0.0.1:1, which does not answer" in err


def test_admin_flag_checks(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "get", "vs", "--admin", "10.1.2.3:8080")[2] == \
        "meshlab get: error: --admin 10.1.2.3:8080: the admin API is served on loopback only (127.0.0.1)\n"
    assert run(capsys, "get", "vs", "--admin", "nonsense")[0] == 2
    status, _, err = run(capsys, "get", "vs", "--admin", "127.0.0.1:1")
    assert (status, err) == (1, "meshlab get: error: no mesh answers at 127.0.0.1:1 (--admin)\n")


# -- get ------------------------------------------------------------------------------------------

def test_get_table_yaml_json_name(mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "get", "virtualservices")
    assert (status, err) == (0, "")
    assert out.splitlines() == [
        "NAME       NAMESPACE   KIND             API VERSION",
        "bookinfo   default     VirtualService   networking.istio.io/v1",
    ]
    assert run(capsys, "get", "all")[1].splitlines()[1:] == [
        "bookinfo-gateway   default     Gateway          networking.istio.io/v1",
        "bookinfo           default     VirtualService   networking.istio.io/v1",
    ]
    status, out, _ = run(capsys, "get", "vs", "bookinfo", "-o", "yaml")
    assert status == 0 and yaml.safe_load(out) == mesh.get("VirtualService", "bookinfo").to_dict()
    status, out, _ = run(capsys, "get", "gw", "-o", "json")
    assert [d["metadata"]["name"] for d in json.loads(out)] == ["bookinfo-gateway"]
    assert run(capsys, "get", "all", "-o", "name")[1].splitlines() == [
        "gateway.networking.istio.io/bookinfo-gateway", "virtualservice.networking.istio.io/bookinfo"]


def test_get_empty_unknown_and_missing(mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "get", "dr") == (0, "", "No resources found.\n")
    assert run(capsys, "get", "vs", "-n", "shop") == (0, "", "No resources found in namespace shop.\n")
    status, _, err = run(capsys, "get", "virtualservise")
    assert status == 1 and err.startswith("meshlab get: error: unknown kind 'virtualservise'; did you mean")
    status, _, err = run(capsys, "get", "vs", "reviews")
    assert status == 1 and err.count("\n") == 1
    assert err.startswith("meshlab get: error: VirtualService default/reviews not found")


def test_get_pods_and_services(mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "get", "pods")
    lines = out.splitlines()
    assert status == 0 and lines[0].split() == ["NAME", "NAMESPACE", "SERVICE", "VERSION", "READY", "ADDRESS"]
    assert [line.split()[0] for line in lines[1:]] == ["productpage-v1-0", "details-v1-0", "reviews-v1-0",
                                                       "reviews-v2-0", "reviews-v3-0", "ratings-v1-0"]
    status, out, _ = run(capsys, "get", "svc", "reviews")
    assert out.splitlines()[1].split() == ["reviews", "default", "9080", "v1,v2,v3", "3"]
    assert run(capsys, "get", "pods", "nope")[0] == 1


# -- apply, delete --------------------------------------------------------------------------------

def test_apply_and_delete(mesh: Mesh, reviews_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, "apply", "-f", reviews_file)
    assert (status, err) == (0, "")
    assert out.splitlines() == ["destinationrule.networking.istio.io/reviews created",
                                "virtualservice.networking.istio.io/reviews created"]
    assert mesh.call("reviews", "/reviews/0", headers={"end-user": "jason"}).json()["version"] == "v2"
    assert run(capsys, "apply", "-f", reviews_file)[1].splitlines() == [
        "destinationrule.networking.istio.io/reviews unchanged", "virtualservice.networking.istio.io/reviews unchanged"]
    status, out, _ = run(capsys, "delete", "-f", reviews_file)
    assert status == 0 and out.splitlines() == ["destinationrule.networking.istio.io/reviews deleted",
                                                "virtualservice.networking.istio.io/reviews deleted"]
    assert [r.name for r in mesh.config_store.list()] == ["bookinfo-gateway", "bookinfo"]
    status, out, err = run(capsys, "delete", "-f", reviews_file)
    assert (status, out) == (1, "")
    assert err == ("meshlab delete: error: DestinationRule default/reviews not found; "
                   "no DestinationRule is stored\n")


def test_apply_invalid_changes_nothing(mesh: Mesh, tmp_path: Path, reviews_file: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text(TYPO)
    status, out, err = run(capsys, "apply", "-f", reviews_file, "-f", typo)
    assert status == 1
    assert out == f"{typo}:7: spec.http[0].route[0].wieght: unknown field; did you mean 'weight'?\n"
    assert err == "meshlab apply: error: not valid Istio configuration (1 problem); nothing was applied\n"
    assert len(mesh.config_store.list()) == 2
    assert run(capsys, "apply")[0] == 2
    assert run(capsys, "apply", "-f", tmp_path / "missing.yaml")[0] == 2


def test_apply_stdin_folder_and_namespace(mesh: Mesh, tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "stdin", io.StringIO(REVIEWS))
    assert run(capsys, "apply", "-f", "-")[0] == 0
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "a.yaml").write_text(MISSING_SUBSET)
    assert run(capsys, "apply", folder, "-n", "shop") == (
        0, "virtualservice.networking.istio.io/ratings created\n", "")
    assert mesh.get("VirtualService", "ratings", namespace="shop").namespace == "shop"


@pytest.mark.filterwarnings("ignore::meshlab.config.MeshlabConfigWarning")  # the mesh's own copy of the warning
def test_apply_prints_warnings_on_stderr(mesh: Mesh, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cors = tmp_path / "cors.yaml"
    cors.write_text(REVIEWS.replace("  - route: [{destination: {host: reviews, subset: v1}}]",
                                    "  - corsPolicy: {allowOrigins: [{exact: 'https://example.com'}]}\n"
                                    "    route: [{destination: {host: reviews, subset: v1}}]"))
    status, out, err = run(capsys, "apply", "-f", cors)
    assert status == 0 and "virtualservice.networking.istio.io/reviews created" in out
    assert err.startswith(f"Warning: {cors}:")


# -- proxy-config ---------------------------------------------------------------------------------

def test_proxy_config(mesh: Mesh, reviews_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run(capsys, "apply", "-f", reviews_file)
    status, out, err = run(capsys, "proxy-config", "routes", "productpage-v1-0")
    assert (status, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].split()[:4] == ["HOST", "ROUTE", "MATCH", "DESTINATIONS"] and lines[0].split()[-1] == "FROM"
    reviews = [line for line in lines if line.startswith("reviews.")]
    assert len(reviews) == 2
    assert "header end-user exact jason" in reviews[0] and "outbound|9080|v2|reviews" in reviews[0]
    assert reviews[0].rstrip().endswith("virtualservice/default/reviews")
    status, out, _ = run(capsys, "proxy-config", "clusters", "reviews", "-o", "json")
    rows = json.loads(out)
    assert status == 0 and {r["subset"] for r in rows if r["service"].startswith("reviews.")} == {"-", "v1", "v2"}
    status, out, _ = run(capsys, "proxy-config", "endpoints", "istio-ingressgateway")
    assert status == 0 and len({line.split()[1] for line in out.splitlines()[1:] if "HEALTHY" in line}) == 6
    assert "uri exact /productpage" in run(capsys, "proxy-config", "routes", "istio-ingressgateway")[1]


def test_proxy_config_errors(mesh: Mesh, capsys: pytest.CaptureFixture[str]) -> None:
    status, _, err = run(capsys, "proxy-config", "routes", "nope-v1-0")
    assert status == 1 and err == ("meshlab proxy-config: error: no workload 'nope-v1-0'; name a pod "
                                   "(see `meshlab get pods`), a service, curl or istio-ingressgateway\n")
    assert run(capsys, "proxy-config", "listeners", "productpage-v1-0")[0] == 2
    assert run(capsys, "proxy-config", "routes")[0] == 2


# -- analyze --------------------------------------------------------------------------------------

def test_analyze_running_mesh(mesh: Mesh, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "analyze") == (0, "✔ No validation issues found when analyzing the running mesh.\n", "")
    mesh.apply(MISSING_SUBSET)
    status, out, err = run(capsys, "analyze")
    assert status == 1 and err == "meshlab analyze: 1 error found\n"
    assert out.startswith("Error [") and "(VirtualService/default/ratings)" in out and "v9" in out
    bad = tmp_path / "bad.yaml"
    bad.write_text(MISSING_SUBSET)
    status, out, _ = run(capsys, "analyze", bad)  # with files: the files, not the mesh
    assert status == 1 and f"(VirtualService/default/ratings {bad}:1)" in out


# -- export ---------------------------------------------------------------------------------------

def test_export_running_mesh(mesh: Mesh, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out_dir = tmp_path / "k8s"
    status, out, err = run(capsys, "export", out_dir, "--image", "reviews=registry.example/reviews:1")
    assert (status, err) == (0, "")
    expected = manifests(mesh, image={"reviews": "registry.example/reviews:1"})
    assert {p.name: p.read_text() for p in out_dir.iterdir()} == expected
    assert out.splitlines()[-1] == (f"✔ 7 files written to {out_dir}: 15 Kubernetes documents, 2 Istio documents "
                                    f"(next: see {out_dir / 'README.md'})")
    assert run(capsys, "export", out_dir, "--image", "a=b", "--image", "tmpl/{service}")[0] == 2
    assert run(capsys, "export", out_dir, "--image", "img/{app}")[0] == 2


def test_export_from_files(home: Path, tmp_path: Path, reviews_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "export", tmp_path / "out", "--from", reviews_file)
    assert status == 0 and sorted(p.name for p in (tmp_path / "out").iterdir()) == ["20-istio.yaml", "README.md"]
    assert "0 Kubernetes documents, 2 Istio documents" in out
    typo = tmp_path / "typo.yaml"
    typo.write_text(TYPO)
    assert run(capsys, "export", tmp_path / "out2", "--from", typo)[0] == 1
    assert not (tmp_path / "out2").exists()


# -- the same through real processes --------------------------------------------------------------

def test_subprocess_against_a_notebook_style_mesh(mesh: Mesh, home: Path, tmp_path: Path, reviews_file: Path) -> None:
    """What a learner does in a JupyterLab terminal while the kernel's mesh serves the admin API."""
    applied = run_cli("apply", "-f", reviews_file, home=home)
    assert (applied.returncode, applied.stderr) == (0, "")
    assert "virtualservice.networking.istio.io/reviews created" in applied.stdout
    got = run_cli("get", "virtualservices", home=home)
    assert got.returncode == 0 and [line.split()[0] for line in got.stdout.splitlines()] == ["NAME", "bookinfo",
                                                                                            "reviews"]
    routes = run_cli("proxy-config", "routes", "productpage-v1-0", home=home)
    assert routes.returncode == 0 and "header end-user exact jason" in routes.stdout
    analyzed = run_cli("analyze", home=home)
    assert analyzed.returncode == 0 and "No validation issues" in analyzed.stdout
    exported = run_cli("export", tmp_path / "out", home=home)
    assert exported.returncode == 0 and (tmp_path / "out" / "10-reviews.yaml").is_file()
    deleted = run_cli("delete", "-f", "-", home=home, stdin=REVIEWS)
    assert deleted.returncode == 0 and "virtualservice.networking.istio.io/reviews deleted" in deleted.stdout
    again = run_cli("delete", "-f", reviews_file, home=home)
    assert again.returncode == 1 and again.stderr.count("\n") == 1 and again.stdout == ""


def test_subprocess_no_mesh(home: Path) -> None:
    result = run_cli("get", "vs", home=home)
    assert (result.returncode, result.stdout, result.stderr) == (1, "", f"meshlab get: error: {NO_MESH}\n")


def test_up_serves_until_ctrl_c(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    env = {**os.environ, "PYTHONIOENCODING": "utf-8", "MESHLAB_HOME": str(home)}
    proc = subprocess.Popen([sys.executable, "-m", "meshlab.cli", "up", "bookinfo"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=ROOT)
    try:
        deadline = time.monotonic() + 90
        while not context_file().exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "meshlab up did not write its context file"
            time.sleep(0.1)
        ctx = json.loads(context_file().read_text())
        assert ctx["pid"] == proc.pid
        status, out, _ = run(capsys, "get", "virtualservices")
        assert status == 0 and "bookinfo   default     VirtualService" in out
        status, out, _ = run(capsys, "proxy-config", "routes", "istio-ingressgateway")
        assert status == 0 and "uri exact /productpage" in out
        routes = run_cli("proxy-config", "clusters", "productpage-v1-0", home=home)
        assert routes.returncode == 0 and "reviews.default.svc.cluster.local" in routes.stdout
        status, _, err = run(capsys, "up", "shop")
        assert status == 1 and "a mesh is already running" in err
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    lines = out.splitlines()
    assert lines[0] == "meshlab: bookinfo is up: 4 services, 6 pods (seed 0)"
    assert lines[1].startswith("ingress: http://127.0.0.1:") and lines[1].endswith("/productpage")
    assert lines[2].startswith(f"admin:   {ctx['admin']}")
    assert lines[-1] == "meshlab: stopped"
    assert not context_file().exists()


def test_up_usage(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(capsys, "up", "nope") == (2, "", "meshlab up: error: unknown sample 'nope'; choose bookinfo or shop\n")
    assert run(capsys, "up", "shop", "--replicas", "0")[0] == 2
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        status, out, err = run(capsys, "up", "bookinfo", "--admin-port", str(taken.getsockname()[1]))
    assert (status, out) == (1, "") and err.startswith("meshlab up: error: cannot start the mesh: ")
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler, "the handlers are restored"


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = run(capsys, "--help")
    assert status == 0
    for name in SUBCOMMANDS:
        assert name in out
    assert list(SUBCOMMANDS) == ["validate", "analyze", "up", "apply", "delete", "get", "proxy-config", "export"]


def test_up_samples_are_real_istio_yaml(tmp_path: Path) -> None:
    """`up bookinfo` applies Istio's bookinfo-gateway.yaml (the same resources); both samples'
    YAML passes Istio's CRD schemas."""
    sample = SHARED / "istio" / "bookinfo-networking" / "bookinfo-gateway.yaml"
    if sample.is_file():
        assert [r.to_dict() for r in load(BOOKINFO_GATEWAY)] == [r.to_dict() for r in load(sample)]
    check = SHARED / "tools" / "istio-schema-check"
    if not check.is_file():
        pytest.skip("../shared/tools/istio-schema-check is missing")
    (tmp_path / "up.yaml").write_text(BOOKINFO_GATEWAY + "---\n" + SHOP_GATEWAY)
    result = subprocess.run([sys.executable, str(check), str(tmp_path)], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0 and "4 Istio documents checked, 0 invalid" in result.stdout, result.stdout
