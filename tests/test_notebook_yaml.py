"""Every Istio YAML document written in a notebook or a lab passes Istio's own CRD schemas.

CONTRIBUTING.md: "Every Istio YAML document in notebooks, labs and exports must pass
``../shared/tools/istio-schema-check``". This test collects the documents from
``notebooks/*.ipynb``, ``labs/*.ipynb`` and ``labs/solutions/*.ipynb``, writes one file per
document to a temporary folder and runs the checker once on it.

Where documents come from:

- **Code cells**, parsed with ``ast`` (if a cell is not plain Python, lines starting with an
  IPython magic ``%`` or a shell escape ``!`` are replaced by ``pass`` first). Every string expression that can be worked out
  without running the notebook is taken: string literals, and what is built from them with
  ``+``, ``.replace(...)``, ``.strip()``, ``str.format(...)`` with literal arguments, f-strings
  whose substitutions are literals, names bound to any of these at the top level of an earlier
  or the same cell, and calls of a notebook function ``def f(a, b): return f"...{a}..."`` with
  literal arguments (notebook 05's ``reviews_split(90, 10)``). A string counts when it has an
  ``apiVersion:`` of an ``istio.io/`` group.
- **Templates** whose substitutions are only known when the notebook runs (an f-string or a
  ``.format`` on a loop variable, e.g. notebook 08's ``RETRIES.format(attempts=attempts)``) are
  **skipped**: rendering them would mean running the notebook, and the raw template is not YAML
  that anyone applies (``{attempts}`` would parse as a mapping). A string literal that the
  notebook passes to ``.format`` is a template and is not checked raw.
- **Markdown cells**: fenced ```` ```yaml ```` (or ``yml``) blocks.
- Learner copies (``labs/*.ipynb``) have blanks ``____`` for the learner to fill in: documents
  containing ``____`` are skipped (their solutions are checked in ``labs/solutions``).
  ``# learner:`` lines of the solution notebooks are comments, not strings, so never read.

Multi-document strings are split on ``---`` lines. Documents that a notebook writes on purpose to
show a refusal are listed in ``INVALID_ON_PURPOSE``; any other document the schema refuses fails
the test, which names the notebook, the cell and the error.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SCHEMA_CHECK = REPO_ROOT.parent / "shared" / "tools" / "istio-schema-check"
NOTEBOOKS = sorted(
    [*REPO_ROOT.glob("notebooks/*.ipynb"), *REPO_ROOT.glob("labs/*.ipynb"), *REPO_ROOT.glob("labs/solutions/*.ipynb")]
)

# Documents a notebook shows being refused, on purpose: (notebook path relative to the repository,
# a substring only that document has). Keep this list short: every entry is a document that would
# be refused by `kubectl apply` on a cluster, and the notebook says so.
INVALID_ON_PURPOSE: dict[tuple[str, str], str] = {
    ("notebooks/03-istio-architecture.ipynb", "subsett: v2"):
        "MISSPELT: the misspelt field `subsett` shows the schema check of `mesh.apply` (and of the "
        "Kubernetes API server) refusing it; also applied after a valid document to show that "
        "`mesh.apply` is all or nothing",
}

ISTIO_API = re.compile(r"^\s*apiVersion:\s*['\"]?[\w.-]*istio\.io/", re.MULTILINE)
DOCUMENT_SEPARATOR = re.compile(r"^---[ \t]*(?:#.*)?$", re.MULTILINE)
FENCED_YAML = re.compile(r"^[ \t]*```[ \t]*ya?ml[^\n]*\n(.*?)^[ \t]*```", re.MULTILINE | re.DOTALL | re.IGNORECASE)
MAGIC_LINE = re.compile(r"^(\s*)(?:[%!]|\w+\s*=\s*[%!])")
BLANK = "____"


@dataclass(frozen=True)
class Document:
    notebook: str  # relative to the repository
    cell: int  # index in the notebook
    cell_id: str
    text: str

    def where(self) -> str:
        return f"{self.notebook} cell {self.cell} (id {self.cell_id})"


# -- string expressions a notebook builds, worked out without running it ------------------------


class Unknown(Exception):
    """The value of an expression is only known when the notebook runs."""


def fold(node: ast.AST, names: dict[str, Any], functions: dict[str, ast.FunctionDef]) -> Any:
    """The value of ``node`` if it is made of literals only (see the module docstring)."""
    match node:
        case ast.Constant(value=value):
            return value
        case ast.Name(id=name) if name in names:
            return names[name]
        case ast.Tuple(elts=elts) | ast.List(elts=elts):
            return [fold(e, names, functions) for e in elts]
        case ast.BinOp(left=left, op=ast.Add(), right=right):
            a, b = fold(left, names, functions), fold(right, names, functions)
            if isinstance(a, str) and isinstance(b, str):
                return a + b
        case ast.JoinedStr(values=values):
            return "".join(fold(v, names, functions) for v in values)
        case ast.FormattedValue(value=value, conversion=conversion, format_spec=spec):
            v = fold(value, names, functions)
            v = {ord("r"): repr, ord("s"): str, ord("a"): ascii}.get(conversion, lambda x: x)(v)
            return format(v, fold(spec, names, functions) if spec is not None else "")
        case ast.Call(func=ast.Attribute(value=receiver, attr="replace" | "strip" | "format" | "join" as method),
                      args=args, keywords=keywords):
            text = fold(receiver, names, functions)
            if isinstance(text, str) and all(k.arg is not None for k in keywords):
                values = [fold(a, names, functions) for a in args]
                kwargs = {k.arg: fold(k.value, names, functions) for k in keywords}
                return getattr(text, method)(*values, **kwargs)
        case ast.Call(func=ast.Name(id=name), args=args, keywords=keywords) if name in functions:
            fn = functions[name]
            params = [a.arg for a in fn.args.args]
            defaults = fn.args.defaults
            bound = {p: fold(d, {}, {}) for p, d in zip(params[len(params) - len(defaults):], defaults, strict=True)}
            bound.update(zip(params, (fold(a, names, functions) for a in args), strict=False))
            bound.update({k.arg: fold(k.value, names, functions) for k in keywords if k.arg})
            if set(bound) == set(params):
                body = [s for s in fn.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
                if len(body) == 1 and isinstance(body[0], ast.Return) and body[0].value is not None:
                    return fold(body[0].value, bound, {})
    raise Unknown(ast.dump(node)[:80])


def single_return_function(stmt: ast.stmt) -> bool:
    """``def f(a, b): ["docstring"] return <expression>`` with plain positional parameters."""
    if not isinstance(stmt, ast.FunctionDef) or stmt.args.vararg or stmt.args.kwarg or stmt.args.kwonlyargs:
        return False
    body = [s for s in stmt.body if not (isinstance(s, ast.Expr) and isinstance(s.value, ast.Constant))]
    return len(body) == 1 and isinstance(body[0], ast.Return)


def python_source(source: str) -> str:
    """A code cell's source with IPython magics and shell escapes replaced by ``pass``."""
    return "\n".join(MAGIC_LINE.sub(r"\1pass  # ", line) if MAGIC_LINE.match(line) else line
                     for line in source.splitlines())


def format_templates(tree: ast.AST) -> set[str]:
    """Names ``N`` that the code calls ``N.format(...)`` on."""
    return {n.func.value.id for n in ast.walk(tree)
            if isinstance(n, ast.Call) and isinstance(n.func, ast.Attribute) and n.func.attr == "format"
            and isinstance(n.func.value, ast.Name)}


def stored_names(stmt: ast.stmt) -> set[str]:
    """Every name ``stmt`` binds anywhere inside it (loop and ``with`` targets, parameters, ...)."""
    out = set()
    for node in ast.walk(stmt):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            out.add(node.id)
        elif isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.alias):
            out.add((node.asname or node.name).split(".")[0])
    return out


def code_strings(cells: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """(cell index, string) for every string a notebook's code cells build that can be worked out."""
    trees = []
    for index, source in cells:
        try:
            trees.append((index, ast.parse(source)))
        except SyntaxError:
            try:  # IPython syntax? (only then: a string may hold a line starting with % or !)
                trees.append((index, ast.parse(python_source(source))))
            except SyntaxError as exc:  # a cell that is not Python would hide its YAML: say so
                raise AssertionError(f"cell {index} is not Python: {exc}") from exc
    templates = set().union(*(format_templates(tree) for _, tree in trees))
    names: dict[str, Any] = {}  # top-level names bound to a value worked out so far
    functions: dict[str, ast.FunctionDef] = {}
    found = []
    for index, tree in trees:
        parents = {id(child): parent for parent in ast.walk(tree) for child in ast.iter_child_nodes(parent)}
        for stmt in tree.body:
            assigned = [t.id for t in stmt.targets if isinstance(t, ast.Name)] if isinstance(stmt, ast.Assign) else []
            # names bound inside the statement (loop variables, parameters, ...) do not have their
            # top-level value there
            rebound = stored_names(stmt) - set(assigned)
            visible = {k: v for k, v in names.items() if k not in rebound}
            callable_ = {k: f for k, f in functions.items() if k not in rebound}
            for node in ast.walk(stmt):
                if not isinstance(node, ast.expr) or isinstance(node, ast.Name):
                    continue  # a name's value was taken where it was built
                parent = parents.get(id(node))
                if isinstance(parent, ast.JoinedStr | ast.FormattedValue):
                    continue  # a piece of an f-string, checked whole when its substitutions are known
                if isinstance(parent, ast.Attribute) and parent.attr == "format":
                    continue  # a template: its rendered forms are checked where they can be worked out
                if isinstance(parent, ast.Assign) and any(isinstance(t, ast.Name) and t.id in templates
                                                           for t in parent.targets):
                    continue
                try:
                    value = fold(node, visible, callable_)
                except (Unknown, TypeError, ValueError, KeyError, IndexError, AttributeError):
                    continue
                if isinstance(value, str):
                    found.append((index, value))
            # what the next statements can use
            for name in rebound:
                names.pop(name, None)
                functions.pop(name, None)
            if assigned:
                try:
                    value = fold(stmt.value, visible, callable_)
                except (Unknown, TypeError, ValueError, KeyError, IndexError, AttributeError):
                    value = Unknown
                for name in assigned:
                    if value is Unknown:
                        names.pop(name, None)
                    else:
                        names[name] = value
                    functions.pop(name, None)
            if single_return_function(stmt):
                functions[stmt.name] = stmt
    return found


def istio_documents(text: str) -> list[str]:
    """The Istio documents of a (multi-document) YAML string."""
    if not ISTIO_API.search(text):
        return []
    return [doc for doc in DOCUMENT_SEPARATOR.split(text) if ISTIO_API.search(doc)]


def notebook_documents(path: Path, root: Path = REPO_ROOT) -> list[Document]:
    rel = path.relative_to(root).as_posix()
    nb = nbformat.read(path, as_version=4)
    strings: list[tuple[int, str]] = []
    code = [(i, cell.source) for i, cell in enumerate(nb.cells) if cell.cell_type == "code"]
    strings += code_strings(code)
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            strings += [(i, m.group(1)) for m in FENCED_YAML.finditer(cell.source)]
    docs: dict[tuple[int, str], Document] = {}
    for index, text in strings:
        for doc in istio_documents(text):
            if BLANK in doc:
                continue  # a learner copy's blank
            text = doc.strip("\n").rstrip() + "\n"  # only blank lines: keep the first line's indentation
            docs.setdefault((index, text), Document(rel, index, nb.cells[index].get("id", "?"), text))
    return list(docs.values())


def invalid_on_purpose(doc: Document) -> tuple[str, str] | None:
    return next((key for key in INVALID_ON_PURPOSE if key[0] == doc.notebook and key[1] in doc.text), None)


@pytest.fixture(scope="module")
def documents() -> list[Document]:
    return [doc for path in NOTEBOOKS for doc in notebook_documents(path)]


def run_check(docs: list[Document], folder: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, Document]]:
    """Write one file per document into ``folder`` and run the checker once on the folder."""
    files = {}
    for n, doc in enumerate(docs):
        path = folder / f"{n:04d}.yaml"
        path.write_text(doc.text, encoding="utf-8")
        files[str(path)] = doc
    result = subprocess.run([sys.executable, str(SCHEMA_CHECK), str(folder)], capture_output=True, text=True,
                            check=False, timeout=300)
    return result, files


def failures(result: subprocess.CompletedProcess[str], files: dict[str, Document]) -> dict[str, list[str]]:
    """{file: [checker messages]} from the checker's ``INVALID <file>[#n]: <message>`` lines."""
    out: dict[str, list[str]] = {}
    for line in result.stdout.splitlines():
        m = re.match(r"INVALID (.+?\.yaml)(?:#\d+)?: (.*)", line)
        if m:
            assert m.group(1) in files, line
            out.setdefault(m.group(1), []).append(m.group(2))
    return out


# -- the extraction itself -----------------------------------------------------------------------


def strings_of(source: str) -> list[str]:
    return [s for _, s in code_strings([(0, source)])]


def test_extraction_follows_literal_string_building() -> None:
    source = '''
BASE = """
apiVersion: networking.istio.io/v1
kind: VirtualService
"""
MORE = BASE + "spec: {}\\n"
SHORTER = MORE.replace("spec", "status")
def routed(host, weight=7):
    """doc"""
    return f"kind: {host}:{weight}"
routed("a", 5)
routed("z")
TEMPLATE = "hosts: [{host}]"
rendered = TEMPLATE.format(host="b")
for h in ("c", "d"):
    TEMPLATE.format(host=h)
%time x = 1
!ls
'''
    found = strings_of(source)
    assert "\napiVersion: networking.istio.io/v1\nkind: VirtualService\nspec: {}\n" in found
    assert "\napiVersion: networking.istio.io/v1\nkind: VirtualService\nstatus: {}\n" in found
    assert "kind: a:5" in found and "kind: z:7" in found
    assert "hosts: [b]" in found
    assert "hosts: [{host}]" not in found, "a .format template is not checked raw"
    assert not any("hosts: [c]" in s or "hosts: [h]" in s for s in found), "loop values are not rendered"


def test_documents_are_split_and_blanks_skipped(tmp_path: Path) -> None:
    text = """
apiVersion: networking.istio.io/v1
kind: DestinationRule
---
apiVersion: apps/v1
kind: Deployment
---
apiVersion: security.istio.io/v1
kind: PeerAuthentication
"""
    docs = istio_documents(text)
    assert [d.split("kind: ")[1].strip() for d in docs] == ["DestinationRule", "PeerAuthentication"]
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell(f"A = '''{text}'''\nB = '''\napiVersion: networking.istio.io/v1\nspec: ____\n'''"),
        nbformat.v4.new_markdown_cell("```yaml\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\n```"),
    ])
    path = tmp_path / "labs" / "99-example.ipynb"
    path.parent.mkdir()
    nbformat.write(nb, path)
    found = notebook_documents(path, root=tmp_path)
    assert {d.notebook for d in found} == {"labs/99-example.ipynb"}
    assert [(d.cell, d.text.splitlines()[1]) for d in found] == [
        (0, "kind: DestinationRule"), (0, "kind: PeerAuthentication"), (1, "kind: Telemetry")]


def test_notebooks_have_istio_documents(documents: list[Document]) -> None:
    """The extraction finds the YAML the notebooks teach with (it would pass vacuously otherwise)."""
    by_notebook = {doc.notebook for doc in documents}
    for rel in ["notebooks/03-istio-architecture.ipynb", "notebooks/05-destination-rules-and-traffic-shifting.ipynb",
                "notebooks/13-request-authentication-jwt.ipynb", "labs/solutions/04-routing-and-canary.ipynb"]:
        assert rel in by_notebook, rel
    # rendered from literals: notebook 05's reviews_split(90, 10), notebook 07's HTTPBIN_ROUTE + ...
    assert any("weight: 90" in d.text and d.notebook.startswith("notebooks/05") for d in documents)
    assert any("perTryTimeout: 0.05s" in d.text and d.notebook.startswith("notebooks/07") for d in documents)
    # the markdown block of notebook 13
    assert any('"@request.auth.claims.groups"' in d.text for d in documents)
    assert not any(BLANK in d.text for d in documents)
    assert len(documents) > 100


def test_invalid_on_purpose_entries_are_used(documents: list[Document]) -> None:
    """Each allow-list entry still matches a document, so a stale entry cannot hide a new one."""
    for key in INVALID_ON_PURPOSE:
        assert any(invalid_on_purpose(doc) == key for doc in documents), key


# -- the schema check ----------------------------------------------------------------------------


@pytest.mark.skipif(not SCHEMA_CHECK.is_file(), reason="../shared/tools/istio-schema-check is not there")
def test_every_notebook_istio_document_passes_the_schema(documents: list[Document], tmp_path: Path) -> None:
    result, files = run_check(documents, tmp_path)
    assert result.returncode in (0, 1), result.stdout + result.stderr
    refused = failures(result, files)
    unexpected = {path: messages for path, messages in refused.items() if invalid_on_purpose(files[path]) is None}
    report = "\n\n".join(f"{files[path].where()}:\n  " + "\n  ".join(messages) + "\n"
                         + "".join(f"    | {line}\n" for line in files[path].text.splitlines())
                         for path, messages in unexpected.items())
    assert not unexpected, f"Istio documents refused by {SCHEMA_CHECK.name}:\n\n{report}"
    summary = re.search(r"(\d+) Istio documents checked, (\d+) invalid", result.stdout)
    assert summary, result.stdout + result.stderr
    assert int(summary.group(1)) == len(documents), "every document written is an Istio document"
    # the documents shown being refused are refused: the allow-list is not hiding valid YAML
    on_purpose = [path for path, doc in files.items() if invalid_on_purpose(doc)]
    assert on_purpose
    assert all(path in refused for path in on_purpose), [files[p].where() for p in on_purpose if p not in refused]
