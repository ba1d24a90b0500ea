"""Read YAML the way Kubernetes does, remembering the line of every field.

Theory of operation: PyYAML first *composes* each document into a node tree whose nodes carry
start marks (line, column). We then build plain dicts and lists from that tree ourselves, so that we can
record, for every field path like ``("spec", "http", 0, "route", 1, "weight")``, the 1-based line it
was written on. Error messages look a path up in that table (or its nearest written parent).

Differences from ``yaml.safe_load`` that follow Kubernetes (sigs.k8s.io/yaml):
- timestamps stay strings (``version: 2024-01-01`` is text, not a date);
- mapping keys become strings (``80:`` is the key ``"80"``);
- a key written twice in one mapping is an error, not a silent overwrite;
- in flow collections a ':' must be followed by a space to separate key and value (go-yaml's rule),
  so ``[2001:db8::]`` is a list with one IPv6 address.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

from .errors import Problem

__all__ = ["Loc", "YamlDocument", "parse_yaml", "line_of"]

Loc = tuple[str | int, ...]
_TIMESTAMP = "tag:yaml.org,2002:timestamp"


class _KubeLoader(yaml.SafeLoader):
    """SafeLoader without the timestamp resolver, scanning plain scalars like go-yaml (Kubernetes)."""

    def scan_plain(self) -> yaml.ScalarToken:
        """PyYAML's ``Scanner.scan_plain`` (MIT licence) with one change, to match go-yaml: inside
        ``[...]``/``{...}`` a ':' ends a plain scalar only when a space follows it, so
        ``addresses: [2001:db8::]`` is the address "2001:db8::" and not a one-entry mapping."""
        chunks: list[str] = []
        start_mark = end_mark = self.get_mark()
        indent = self.indent + 1
        spaces: list[str] = []
        while True:
            length = 0
            if self.peek() == "#":
                break
            while True:
                ch = self.peek(length)
                if (ch in _BREAKS or (ch == ":" and self.peek(length + 1) in _BREAKS)
                        or (self.flow_level and ch in ",?[]{}")):
                    break
                length += 1
            if length == 0:
                break
            self.allow_simple_key = False
            chunks.extend(spaces)
            chunks.append(self.prefix(length))
            self.forward(length)
            end_mark = self.get_mark()
            spaces = self.scan_plain_spaces(indent, start_mark)
            if not spaces or self.peek() == "#" or (not self.flow_level and self.column < indent):
                break
        return yaml.ScalarToken("".join(chunks), True, start_mark, end_mark)


_BREAKS = "\0 \t\r\n\x85\u2028\u2029"


_KubeLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != _TIMESTAMP]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


@dataclass
class YamlDocument:
    """One document of a YAML stream: its data, its first line and the line of each field."""

    data: Any
    line: int | None
    lines: dict[Loc, int] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)


def line_of(lines: dict[Loc, int], loc: Loc, default: int | None) -> int | None:
    """The line of ``loc``, or of its nearest ancestor that was written in the YAML."""
    for end in range(len(loc), 0, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return default


class _Builder:
    """Turns a composed node tree into Python data plus a path -> line table."""

    def __init__(self, loader: _KubeLoader, source: str) -> None:
        self.loader = loader
        self.source = source
        self.lines: dict[Loc, int] = {}
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        """Python data for ``node``; records the line of every mapping key and list item below ``loc``."""
        if isinstance(node, yaml.MappingNode):
            self.loader.flatten_mapping(node)  # resolves "<<" merge keys
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self._key(key_node)
                child = (*loc, key)
                line = key_node.start_mark.line + 1
                if key in out:
                    first = self.lines.get(child)
                    self.problems.append(Problem(self.source, line, _dotted(child),
                                                 f"key {key!r} is written twice in this mapping (first on line {first})"))
                self.lines[child] = line
                out[key] = self.build(value_node, child)
            return out
        if isinstance(node, yaml.SequenceNode):
            items = []
            for index, item in enumerate(node.value):
                self.lines[(*loc, index)] = item.start_mark.line + 1
                items.append(self.build(item, (*loc, index)))
            return items
        return self.loader.construct_object(node, deep=True)

    def _key(self, node: yaml.Node) -> str:
        if isinstance(node, yaml.ScalarNode):
            value = self.loader.construct_object(node)
            return value if isinstance(value, str) else node.value
        return str(self.loader.construct_object(node, deep=True))


def _dotted(loc: Loc) -> str:
    return "".join(f"[{p}]" if isinstance(p, int) else (f".{p}" if i else str(p)) for i, p in enumerate(loc))


def _syntax_problem(exc: yaml.YAMLError, source: str) -> Problem:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    context = getattr(exc, "context", None)
    message = f"YAML syntax error: {problem}"
    context_mark = getattr(exc, "context_mark", None)
    if context and context_mark is not None and mark is not None and context_mark.line != mark.line:
        message += f" ({context} on line {context_mark.line + 1})"
    if "'\\t'" in problem or "\t" in problem:
        message += "; YAML does not allow tabs for indentation, use spaces"
    return Problem(source, mark.line + 1 if mark is not None else None, "", message)


def parse_yaml(text: str, source: str) -> list[YamlDocument]:
    """Split a (multi-document) YAML text into documents. A syntax error becomes a document's problem.

    Documents before the syntax error are returned as parsed; the error itself is returned as a final
    document with ``data=None`` and one problem.
    """
    documents: list[YamlDocument] = []
    loader = _KubeLoader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            builder = _Builder(loader, source)
            data = builder.build(node, ())
            documents.append(YamlDocument(data, node.start_mark.line + 1, builder.lines, builder.problems))
    except yaml.YAMLError as exc:
        documents.append(YamlDocument(None, None, {}, [_syntax_problem(exc, source)]))
    finally:
        loader.dispose()
    return documents
