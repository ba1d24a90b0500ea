"""What the tests of the labs (``test_labNN.py``) share: checking answers silently, editing a
solution into a wrong answer, reading a solution notebook's answers, and the checks of learner
copies and of Istio YAML.

Imported as ``from labtools import ...``: pytest puts this folder on ``sys.path`` (there is no
``__init__.py`` in ``tests/``).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
#: ``../shared/tools/istio-schema-check``: validates YAML against Istio's CRD schemas, when it is there.
SCHEMA_CHECK = REPO_ROOT.parent / "shared" / "tools" / "istio-schema-check"
#: Marks a test that runs :data:`SCHEMA_CHECK`: skipped when the shared folder is not beside the repository.
needs_schema_check = pytest.mark.skipif(not SCHEMA_CHECK.is_file(),
                                        reason="../shared/tools/istio-schema-check is not there")

BEGIN, END = "### BEGIN SOLUTION", "### END SOLUTION"
LEARNER_LINE = "# learner:"


def notebooks(name: str) -> tuple[Path, Path]:
    """The solution notebook and the learner copy of the lab ``name`` (e.g. ``"04-routing-and-canary"``)."""
    return REPO_ROOT / "labs" / "solutions" / f"{name}.ipynb", REPO_ROOT / "labs" / f"{name}.ipynb"


def outcome(question: Any, **answers: Any) -> tuple[str, str]:
    """Check ``answers`` silently; (outcome, message)."""
    question._evaluate(answers, None)
    result = question.last_result
    assert result is not None
    return result.outcome, result.message


def swap(text: str, old: str, new: str, count: int = 1) -> str:
    """``text`` with ``old`` replaced by ``new``; fails if ``old`` is not there (keeps the cases honest)."""
    assert old in text, old
    return text.replace(old, new, count)


# -- the solution notebook ------------------------------------------------------------------------

def solution_regions(nb_path: Path, *, learner_lines: bool = False) -> list[str]:
    """The code between BEGIN and END SOLUTION of each code cell of the notebook, in order: the
    solution as written, without the ``# learner:`` lines (the learner copy's version of the cell),
    or with them when ``learner_lines`` (the region exactly as the solution notebook runs it)."""
    nb = nbformat.read(nb_path, as_version=4)
    regions = []
    for cell in nb.cells:
        if cell.cell_type == "code" and BEGIN in cell.source:
            region = cell.source.split(BEGIN + "\n", 1)[1].split(END, 1)[0]
            if not learner_lines:
                region = "".join(line for line in region.splitlines(keepends=True)
                                 if not line.lstrip().startswith(LEARNER_LINE))
            regions.append(region)
    return regions


def solution_answers(nb_path: Path, *, strings_only: bool = False) -> dict[str, Any]:
    """Variable -> constant assigned in the solution regions of the notebook, as it runs them;
    strings without their leading newlines. Only string constants when ``strings_only``."""
    found = {}
    for region in solution_regions(nb_path, learner_lines=True):
        for node in ast.parse(region).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                value = node.value.value
                if isinstance(value, str):
                    found[node.targets[0].id] = value.lstrip("\n")  # type: ignore[attr-defined]
                elif not strings_only:
                    found[node.targets[0].id] = value  # type: ignore[attr-defined]
    return found


def check_learner_copy(nb_path: Path, *, blanks: int, hidden: Iterable[str]) -> None:
    """The learner copy has at least ``blanks`` ``____`` and none of the ``hidden`` answer texts."""
    text = nb_path.read_text(encoding="utf-8")
    assert text.count("____") >= blanks
    for answer in hidden:
        assert answer not in text, answer


# -- Istio YAML ------------------------------------------------------------------------------------

def yaml_documents(text: str) -> list[Any]:
    """The non-empty documents of a YAML text, parsed."""
    return [d for d in yaml.safe_load_all(text) if d]


def istio_sample(name: str) -> str:
    """Istio's ``samples/bookinfo/networking/<name>`` from ``../shared/istio``; skips the test when
    that folder is not beside the repository."""
    sample = REPO_ROOT.parent / "shared" / "istio" / "bookinfo-networking" / name
    if not sample.is_file():
        pytest.skip("../shared/istio is not beside the repository")
    return sample.read_text(encoding="utf-8")


def schema_check(tmp_path: Path, texts: Mapping[str, str]) -> str:
    """Run :data:`SCHEMA_CHECK` on the YAML ``texts`` (each written to ``tmp_path/<name>.yaml``) and
    assert that it passes; its output."""
    files = []
    for name, text in texts.items():
        path = tmp_path / f"{name}.yaml"
        path.write_text(text, encoding="utf-8")
        files.append(str(path))
    result = subprocess.run([sys.executable, str(SCHEMA_CHECK), *files], capture_output=True, text=True,
                            check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout
