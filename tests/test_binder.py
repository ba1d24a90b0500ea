"""Binder builds this repository with repo2docker. Its dry run (``--no-build``) prints the
Dockerfile it would build, without Docker, so a change that would break the Binder badge (a
removed ``runtime.txt``, an ``environment.yml`` that would shadow ``requirements.txt``, a
requirement that needs the source before it is copied) fails here instead of on mybinder.org.

Skipped when repo2docker (``jupyter-repo2docker`` on PyPI) is not installed."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.skipif(importlib.util.find_spec("repo2docker") is None,
                                reason="repo2docker is not installed (pip install jupyter-repo2docker)")


def dry_run(path: Path) -> subprocess.CompletedProcess[str]:
    """``repo2docker --no-build --debug PATH``: the Dockerfile on stdout, the build log on stderr."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DOCKER_")}  # no Docker engine is needed
    return subprocess.run([sys.executable, "-m", "repo2docker", "--no-build", "--debug", str(path)],
                          capture_output=True, text=True, timeout=300, env=env)


def test_runtime_txt_pins_python_3_11() -> None:
    assert (ROOT / "runtime.txt").read_text().strip() == "python-3.11"


def test_dry_run_builds_python_3_11_from_requirements_txt() -> None:
    result = dry_run(ROOT)
    assert result.returncode == 0, result.stderr[-2000:]
    log, dockerfile = result.stderr + result.stdout, result.stdout
    assert "Building conda environment for python=3.11" in log
    assert "FROM docker.io/library/buildpack-deps:" in dockerfile
    install = 'pip install --no-cache-dir -r "requirements.txt"'
    assert install in dockerfile
    # requirements.txt ends with `-e .`: the repository must be copied in before it is installed
    assert dockerfile.index("COPY --chown=0:0 src/ ${REPO_DIR}/") < dockerfile.index(install)


@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # repo2docker's logging imports an old module path
def test_buildpack_picked_is_python_3_11(monkeypatch: pytest.MonkeyPatch) -> None:
    """The same decision in-process: the first build pack that detects the repository, as
    ``Repo2Docker.find_image`` picks it, is the Python one, with Python 3.11 from runtime.txt."""
    from repo2docker.app import Repo2Docker
    from repo2docker.buildpacks import PythonBuildPack

    app = Repo2Docker()
    monkeypatch.chdir(ROOT)
    picked = next((bp for bp in (BP(base_image=app.base_image) for BP in app.buildpacks) if bp.detect()), None)
    assert type(picked) is PythonBuildPack, f"repo2docker would build with {type(picked).__name__}"
    assert picked.python_version == "3.11"
    picked.platform = "linux/amd64"  # what mybinder.org builds for (the app sets it when it runs)
    assert 'pip install --no-cache-dir -r "requirements.txt"' in picked.render()


def test_the_check_catches_a_missing_runtime_txt(tmp_path: Path) -> None:
    """Control: without runtime.txt repo2docker would pick another Python, and the check above says so."""
    for name in ("requirements.txt", "pyproject.toml"):
        shutil.copy(ROOT / name, tmp_path / name)
    result = dry_run(tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Building conda environment for python=3.11" not in result.stderr + result.stdout
