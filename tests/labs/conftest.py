"""Fixtures for the lab tests: the learner-copy script as a module, and a notebook runner."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from nbclient import NotebookClient

from meshlab.labs import reset_progress

REPO_ROOT = Path(__file__).resolve().parents[2]

# A line that calls a question's check, e.g. "q1.check()" (not commented out).
CHECK_CALL = re.compile(r"^[ \t]*q\d+\.check\(\s*\)", re.MULTILINE)


@pytest.fixture(autouse=True)
def _fresh_progress() -> Iterator[None]:
    """Each test starts with an empty session progress table."""
    reset_progress()
    yield
    reset_progress()


@pytest.fixture(scope="session")
def learner_copies(script: Callable[[str], ModuleType]) -> ModuleType:
    """``scripts/make_learner_copies.py`` imported as a module."""
    return script("make_learner_copies")


def execute_notebook(path: Path, cwd: Path) -> nbformat.NotebookNode:
    """Run a notebook top to bottom in a fresh python3 kernel (raises on any cell error)."""
    nb = nbformat.read(path, as_version=4)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    client = NotebookClient(
        nb,
        kernel_name="python3",
        timeout=300,
        record_timing=False,
        resources={"metadata": {"path": str(cwd)}},
    )
    client.execute(env=env)
    return nb


def output_text(cell: nbformat.NotebookNode) -> str:
    """Everything a code cell showed as text: streams, and text/plain of results and displays."""
    parts = []
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            parts.append(output.text)
        elif output.output_type in ("display_data", "execute_result"):
            parts.append(output.data.get("text/plain", ""))
        elif output.output_type == "error":
            parts.append(f"{output.ename}: {output.evalue}")
    return "\n".join(parts)


def check_cells(nb: nbformat.NotebookNode) -> list[tuple[int, int, str]]:
    """(cell index, number of check calls, shown text) for every code cell that calls ``qN.check()``."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and CHECK_CALL.search(cell.source):
            found.append((index, len(CHECK_CALL.findall(cell.source)), output_text(cell)))
    return found


@pytest.fixture
def run_notebook() -> Callable[[Path, Path], nbformat.NotebookNode]:
    """The :func:`execute_notebook` helper."""
    return execute_notebook


@pytest.fixture
def find_check_cells() -> Callable[[nbformat.NotebookNode], list[tuple[int, int, str]]]:
    """The :func:`check_cells` helper."""
    return check_cells
