"""Every lab's learner copy is in sync with its solution, runs cleanly and starts "not attempted".

This runs for each ``labs/solutions/*.ipynb`` of the repository and for the demo pair in
``tests/labs/data/`` (which proves the pipeline while ``labs/solutions/`` is empty). The
solution notebooks themselves are executed by nbval, except the demo's, executed here.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO_LABS = REPO_ROOT / "labs"
DEMO_LABS = Path(__file__).resolve().parent / "data"

RunNotebook = Callable[[Path, Path], nbformat.NotebookNode]
FindCheckCells = Callable[[nbformat.NotebookNode], list[tuple[int, int, str]]]


def lab_solutions() -> list[object]:
    """One parameter per solution notebook: the repository's labs, then the demo."""
    repo = [
        pytest.param(path, id=f"labs/{path.name}")
        for path in sorted((REPO_LABS / "solutions").glob("*.ipynb"))
    ]
    if not repo:
        repo = [
            pytest.param(
                None, id="labs", marks=pytest.mark.skip(reason="labs/solutions/ has no lab notebooks yet")
            )
        ]
    demo = [
        pytest.param(path, id=f"demo/{path.name}")
        for path in sorted((DEMO_LABS / "solutions").glob("*.ipynb"))
    ]
    return repo + demo


def test_demo_pair_exists() -> None:
    assert (DEMO_LABS / "solutions" / "00-example.ipynb").is_file()
    assert (DEMO_LABS / "00-example.ipynb").is_file()


@pytest.mark.parametrize("solution", lab_solutions())
def test_learner_copy_is_in_sync(solution: Path, learner_copies: ModuleType) -> None:
    learner = learner_copies.learner_path(solution)
    assert learner_copies.is_up_to_date(solution), (
        f"{learner} is missing or out of date: run python scripts/make_learner_copies.py"
    )


@pytest.mark.parametrize("solution", lab_solutions())
def test_learner_copy_runs_and_every_check_is_not_attempted(
    solution: Path, learner_copies: ModuleType, run_notebook: RunNotebook, find_check_cells: FindCheckCells
) -> None:
    learner = learner_copies.learner_path(solution)
    assert learner.is_file(), f"{learner} is missing: run python scripts/make_learner_copies.py"
    nb = run_notebook(learner, learner.parent)  # fails on any cell error
    checks = find_check_cells(nb)
    assert checks, f"{learner.name} has no cell calling qN.check()"
    for index, calls, text in checks:
        assert text.count("Not attempted") == calls, f"cell {index} of {learner.name} showed: {text!r}"
        assert "Correct" not in text and "Not yet" not in text, f"cell {index}: {text!r}"


def test_demo_solution_runs_and_every_check_is_correct(
    run_notebook: RunNotebook, find_check_cells: FindCheckCells
) -> None:
    solution = DEMO_LABS / "solutions" / "00-example.ipynb"
    nb = run_notebook(solution, solution.parent)
    checks = find_check_cells(nb)
    assert len(checks) == 2
    for index, calls, text in checks:
        assert text.count("✅ Correct") == calls, f"cell {index} showed: {text!r}"
    stored = nbformat.read(solution, as_version=4)  # the committed outputs (nbval compares them)
    assert find_check_cells(stored) == checks


def test_repository_learner_copies_check_passes() -> None:
    script = REPO_ROOT / "scripts" / "make_learner_copies.py"
    result = subprocess.run(
        [sys.executable, str(script), "--check"], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
