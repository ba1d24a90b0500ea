"""scripts/make_learner_copies.py on temporary solution notebooks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "make_learner_copies.py"


def solution_notebook() -> nbformat.NotebookNode:
    """A solution notebook exercising every rule of the learner-copy script."""
    cells = [
        new_markdown_cell("# Lab\n\nIntro."),
        new_code_cell("from meshlab.labs.example import q1, q2, ____"),
        new_code_cell(
            "### BEGIN SOLUTION\n# learner: default_retries = ____\ndefault_retries = 2\n### END SOLUTION\nq1.check()",
            execution_count=3,
            outputs=[new_output("stream", name="stdout", text="✅ Correct: yes\n")],
            metadata={"execution": {"iopub.status.busy": "2024-01-01T00:00:00Z"}, "tags": ["keep-me"]},
        ),
        new_code_cell(
            "def route():\n"
            "    ### BEGIN SOLUTION\n"
            "    return 'reviews-v2'\n"
            "    ### END SOLUTION\n"
            "\n"
            "x = 1\n"
            "### BEGIN SOLUTION\n"
            "# learner: vs = f'''\n"
            "# learner: weight: {____}\n"
            "# learner: '''\n"
            "vs = '''\n"
            "weight: 90\n"
            "'''\n"
            "### END SOLUTION\n"
            "print(x)"
        ),
        new_markdown_cell(
            "<!-- BEGIN SOLUTION -->\nThe secret explanation: reviews-v2.\n<!-- END SOLUTION -->"
        ),
        new_markdown_cell(
            "Before.\n<!-- BEGIN SOLUTION -->\nsecret one\n<!-- END SOLUTION -->\nMiddle.\n"
            "<!-- BEGIN SOLUTION --> secret two <!-- END SOLUTION -->\nAfter."
        ),
        new_code_cell("q1.assert_correct()  # secret check", metadata={"tags": ["solution-only"]}),
        new_markdown_cell("Solution-only prose.", metadata={"tags": ["solution-only"]}),
        new_code_cell(
            "print('no markers')",
            execution_count=9,
            outputs=[new_output("execute_result", {"text/plain": "1"}, execution_count=9)],
        ),
    ]
    for index, cell in enumerate(cells):
        cell.id = f"c{index}"
    return new_notebook(
        cells=cells,
        metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}},
    )


@pytest.fixture
def labs_dir(tmp_path: Path) -> Path:
    (tmp_path / "solutions").mkdir()
    nbformat.write(solution_notebook(), tmp_path / "solutions" / "01-demo.ipynb")
    return tmp_path


def test_learner_copy_replaces_solutions(labs_dir: Path, learner_copies: ModuleType) -> None:
    assert learner_copies.sync(labs_dir) == [labs_dir / "01-demo.ipynb"]
    nb = nbformat.read(labs_dir / "01-demo.ipynb", as_version=4)
    sources = [cell.source for cell in nb.cells]
    assert sources == [
        "# Lab\n\nIntro.",
        "from meshlab.labs.example import q1, q2, ____",
        "default_retries = ____\nq1.check()",
        "def route():\n    ____  # your answer here\n\nx = 1\nvs = f'''\nweight: {____}\n'''\nprint(x)",
        "Before.\nMiddle.\nAfter.",
        "print('no markers')",
    ]
    text = (labs_dir / "01-demo.ipynb").read_text()
    for secret in ("SOLUTION", "secret", "reviews-v2", "weight: 90", "= 2", "solution-only", "Solution-only"):
        assert secret not in text


def test_learner_copy_clears_outputs_and_keeps_other_metadata(
    labs_dir: Path, learner_copies: ModuleType
) -> None:
    learner_copies.sync(labs_dir)
    nb = nbformat.read(labs_dir / "01-demo.ipynb", as_version=4)
    code = [cell for cell in nb.cells if cell.cell_type == "code"]
    assert all(cell.outputs == [] and cell.execution_count is None for cell in code)
    assert all("execution" not in cell.metadata for cell in code)
    assert code[1].metadata.tags == ["keep-me"]
    assert nb.metadata.kernelspec.name == "python3"
    nbformat.validate(nb)


def test_solution_notebook_is_not_modified(labs_dir: Path, learner_copies: ModuleType) -> None:
    before = (labs_dir / "solutions" / "01-demo.ipynb").read_bytes()
    learner_copies.sync(labs_dir)
    assert (labs_dir / "solutions" / "01-demo.ipynb").read_bytes() == before


def test_output_is_sorted_json_and_idempotent(labs_dir: Path, learner_copies: ModuleType) -> None:
    learner_copies.sync(labs_dir)
    path = labs_dir / "01-demo.ipynb"
    first = path.read_text()
    assert first == nbformat.writes(nbformat.reads(first, as_version=4)) + "\n"
    assert list(json.loads(first)) == sorted(json.loads(first))
    assert learner_copies.sync(labs_dir) == []
    assert path.read_text() == first


def test_cells_without_ids_get_stable_ids(tmp_path: Path, learner_copies: ModuleType) -> None:
    (tmp_path / "solutions").mkdir()
    raw = json.loads(nbformat.writes(solution_notebook()))
    for cell in raw["cells"]:
        del cell["id"]
    (tmp_path / "solutions" / "no-ids.ipynb").write_text(json.dumps(raw))
    first = learner_copies.render_learner_copy(tmp_path / "solutions" / "no-ids.ipynb")
    assert first == learner_copies.render_learner_copy(tmp_path / "solutions" / "no-ids.ipynb")
    assert '"id": "cell-0"' in first


def run_script(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=False)


def test_check_detects_missing_and_drifted_copies(labs_dir: Path) -> None:
    result = run_script("--check", "--labs-dir", str(labs_dir))
    assert result.returncode == 1
    assert "out of date" in result.stdout and "01-demo.ipynb" in result.stdout
    assert not (labs_dir / "01-demo.ipynb").exists()  # --check writes nothing

    assert run_script("--labs-dir", str(labs_dir)).returncode == 0
    assert run_script("--check", "--labs-dir", str(labs_dir)).returncode == 0

    solution = nbformat.read(labs_dir / "solutions" / "01-demo.ipynb", as_version=4)
    solution.cells[0].source += "\n\nA new paragraph."
    nbformat.write(solution, labs_dir / "solutions" / "01-demo.ipynb")
    result = run_script("--check", "--labs-dir", str(labs_dir))
    assert result.returncode == 1 and "01-demo.ipynb" in result.stdout


def test_check_detects_a_hand_edited_learner_copy(labs_dir: Path, learner_copies: ModuleType) -> None:
    learner_copies.sync(labs_dir)
    copy_path = labs_dir / "01-demo.ipynb"
    copy_path.write_text(copy_path.read_text().replace("Intro.", "Intro, edited by hand."))
    assert learner_copies.sync(labs_dir, check=True) == [copy_path]
    assert not learner_copies.is_up_to_date(labs_dir / "solutions" / "01-demo.ipynb")


def test_no_solutions_is_fine(tmp_path: Path) -> None:
    result = run_script("--check", "--labs-dir", str(tmp_path))
    assert result.returncode == 0
    assert "0 learner copies" in result.stdout


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("### BEGIN SOLUTION\nx = 1", "without ### END"),
        ("x = 1\n### END SOLUTION", "without ### BEGIN"),
        ("### BEGIN SOLUTION\n### BEGIN SOLUTION\n### END SOLUTION", "inside another"),
    ],
)
def test_unpaired_code_markers_are_errors(source: str, problem: str, learner_copies: ModuleType) -> None:
    with pytest.raises(learner_copies.MarkerError, match=problem):
        learner_copies.stub_code(source)


def test_unpaired_markdown_marker_is_an_error_naming_the_notebook(tmp_path: Path) -> None:
    (tmp_path / "solutions").mkdir()
    nb = new_notebook(cells=[new_markdown_cell("ok"), new_markdown_cell("<!-- BEGIN SOLUTION -->\nsecret")])
    nbformat.write(nb, tmp_path / "solutions" / "bad.ipynb")
    result = run_script("--labs-dir", str(tmp_path))
    assert result.returncode == 2
    assert "bad.ipynb" in result.stderr and "cell 1" in result.stderr
    assert not (tmp_path / "bad.ipynb").exists()


def test_stub_keeps_the_line_end_and_indentation(learner_copies: ModuleType) -> None:
    assert learner_copies.stub_code("if x:\n  ### BEGIN SOLUTION\n  y()\n  ### END SOLUTION") == (
        "if x:\n  ____  # your answer here"
    )
    assert (
        learner_copies.stub_code("### BEGIN SOLUTION\n# learner:a = 1\na = 2\n### END SOLUTION\n")
        == "a = 1\n"
    )
    assert learner_copies.stub_code("no markers\n") == "no markers\n"
