"""Make the learner copy of every lab notebook from its solution copy (after nbgrader).

    python scripts/make_learner_copies.py            # write labs/<name>.ipynb for labs/solutions/*.ipynb
    python scripts/make_learner_copies.py --check    # exit 1 and list copies that are out of date

What a learner copy is:

- in code cells, each region from a line ``### BEGIN SOLUTION`` to a line
  ``### END SOLUTION`` (both included) becomes a stub: the region's leading
  ``# learner: <code>`` lines with the ``# learner: `` prefix removed, or else one line
  ``____  # your answer here`` at the indentation of the BEGIN line;
- in markdown cells, text from ``<!-- BEGIN SOLUTION -->`` to ``<!-- END SOLUTION -->``
  (both included, within one cell) is removed, and a cell left empty is dropped;
- cells tagged ``solution-only`` are dropped;
- outputs, execution counts and execution timings are cleared.

The output is deterministic (nbformat's sorted-key JSON; cells without an id get one
derived from their position), so running the script twice changes nothing.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
import sys
import warnings
from pathlib import Path

import nbformat

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_LABS_DIR = REPO_ROOT / "labs"

CODE_BEGIN = "### BEGIN SOLUTION"
CODE_END = "### END SOLUTION"
MARKDOWN_BEGIN = "<!-- BEGIN SOLUTION -->"
MARKDOWN_END = "<!-- END SOLUTION -->"
LEARNER_PREFIX = "# learner:"
STUB = "____  # your answer here"
SOLUTION_ONLY_TAG = "solution-only"

_MARKDOWN_REGION = re.compile(
    re.escape(MARKDOWN_BEGIN) + r".*?" + re.escape(MARKDOWN_END) + r"[ \t]*\n?", re.DOTALL
)


class MarkerError(ValueError):
    """A solution notebook's BEGIN/END SOLUTION markers do not pair up."""


def _learner_line(line: str) -> str | None:
    """``    # learner: x = ____`` -> ``    x = ____`` (keeping the line end); None if not such a line."""
    body = line.lstrip(" \t")
    if not body.startswith(LEARNER_PREFIX):
        return None
    indent = line[: len(line) - len(body)]
    code = body[len(LEARNER_PREFIX) :]
    return indent + (code[1:] if code.startswith(" ") else code)


def stub_code(source: str) -> str:
    """Replace every BEGIN/END SOLUTION region of a code cell's source by its learner stub."""
    out: list[str] = []
    region: list[str] | None = None
    for number, line in enumerate(source.splitlines(keepends=True), start=1):
        marker = line.strip()
        if region is None:
            if marker == CODE_END:
                raise MarkerError(f"line {number}: {CODE_END} without {CODE_BEGIN}")
            if marker == CODE_BEGIN:
                region = [line]
            else:
                out.append(line)
        elif marker == CODE_BEGIN:
            raise MarkerError(f"line {number}: {CODE_BEGIN} inside another solution region")
        elif marker == CODE_END:
            out.extend(_stub(region, line.endswith("\n")))
            region = None
        else:
            region.append(line)
    if region is not None:
        raise MarkerError(f"{CODE_BEGIN} without {CODE_END}")
    return "".join(out)


def _stub(region: list[str], newline: bool) -> list[str]:
    """The learner stub for one region (its BEGIN line first, END line excluded)."""
    begin, body = region[0], region[1:]
    stub: list[str] = []
    for line in body:
        learner = _learner_line(line)
        if learner is None:
            break
        stub.append(learner)
    if not stub:
        indent = begin[: len(begin) - len(begin.lstrip(" \t"))]
        stub = [indent + STUB + "\n"]
    stub = [line if line.endswith("\n") else line + "\n" for line in stub]
    if not newline:
        stub[-1] = stub[-1].rstrip("\n")
    return stub


def strip_markdown(source: str) -> str:
    """Remove every ``<!-- BEGIN SOLUTION -->`` ... ``<!-- END SOLUTION -->`` region of a markdown cell."""
    stripped = _MARKDOWN_REGION.sub("", source)
    for marker in (MARKDOWN_BEGIN, MARKDOWN_END):
        if marker in stripped:
            raise MarkerError(
                f"unpaired {marker}: open and close a markdown solution region in the same cell "
                f"(tag a whole cell '{SOLUTION_ONLY_TAG}' to drop it)"
            )
    return stripped.rstrip() if stripped != source else source


def make_learner_notebook(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Return the learner copy of a solution notebook (the argument is left unchanged)."""
    learner = copy.deepcopy(nb)
    cells = []
    for index, cell in enumerate(learner.cells):
        if SOLUTION_ONLY_TAG in cell.get("metadata", {}).get("tags", []):
            continue
        try:
            if cell.cell_type == "code":
                cell.source = stub_code(cell.source)
                cell.outputs = []
                cell.execution_count = None
                cell.metadata.pop("execution", None)
            elif cell.cell_type == "markdown":
                cell.source = strip_markdown(cell.source)
                if not cell.source.strip():
                    continue
        except MarkerError as exc:
            raise MarkerError(f"cell {index}: {exc}") from None
        cells.append(cell)
    learner.cells = cells
    return learner


def read_solution(path: Path) -> nbformat.NotebookNode:
    """Read a solution notebook; cells without an id get a stable one (nbformat would pick a random one)."""
    text = path.read_text(encoding="utf-8")
    raw_cells = json.loads(text).get("cells", [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MissingIDFieldWarning: handled below
        nb = nbformat.reads(text, as_version=4)
    for index, (raw, cell) in enumerate(zip(raw_cells, nb.cells, strict=True)):
        if "id" not in raw and "id" in cell:
            cell.id = f"cell-{index}"
    return nb


def render_learner_copy(solution_path: Path) -> str:
    """The exact text of the learner copy of ``solution_path``."""
    try:
        learner = make_learner_notebook(read_solution(solution_path))
    except MarkerError as exc:
        raise MarkerError(f"{solution_path}: {exc}") from None
    text = nbformat.writes(learner)
    return text if text.endswith("\n") else text + "\n"


def learner_path(solution_path: Path) -> Path:
    """``labs/solutions/NN-slug.ipynb`` -> ``labs/NN-slug.ipynb``."""
    return solution_path.parent.parent / solution_path.name


def solution_notebooks(labs_dir: Path) -> list[Path]:
    """The solution notebooks under ``labs_dir/solutions``, sorted by name."""
    return sorted((labs_dir / "solutions").glob("*.ipynb"))


def is_up_to_date(solution_path: Path) -> bool:
    """True if the learner copy of ``solution_path`` exists and matches a fresh rendering."""
    target = learner_path(solution_path)
    return target.is_file() and target.read_text(encoding="utf-8") == render_learner_copy(solution_path)


def sync(labs_dir: Path, *, check: bool = False) -> list[Path]:
    """Bring every learner copy under ``labs_dir`` up to date, or only report (``check=True``).

    Returns the learner copies that were out of date (and, unless checking, were rewritten).
    """
    stale = []
    for solution in solution_notebooks(labs_dir):
        text = render_learner_copy(solution)
        target = learner_path(solution)
        if target.is_file() and target.read_text(encoding="utf-8") == text:
            continue
        stale.append(target)
        if not check:
            target.write_text(text, encoding="utf-8", newline="\n")
    return stale


def _shown(path: Path) -> str:
    """``path`` relative to the current directory when it is below it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path.resolve())


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status (0 ok, 1 out of date, 2 bad markers)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only report out-of-date learner copies")
    parser.add_argument("--labs-dir", type=Path, default=DEFAULT_LABS_DIR, help="default: %(default)s")
    args = parser.parse_args(argv)
    solutions = solution_notebooks(args.labs_dir)
    try:
        stale = sync(args.labs_dir, check=args.check)
    except MarkerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.check:
        for path in stale:
            print(f"out of date: {_shown(path)}")
        if stale:
            print(f"regenerate them with: python {_shown(Path(__file__))}", file=sys.stderr)
            return 1
        print(f"{len(solutions)} learner copies up to date")
        return 0
    for path in stale:
        print(f"wrote {_shown(path)}")
    print(f"{len(solutions)} learner copies, {len(stale)} rewritten")
    return 0


if __name__ == "__main__":
    sys.exit(main())
