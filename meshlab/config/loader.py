"""load(): Istio YAML (text, files, folders, dicts) -> validated Resources, or every problem at once.

Validation runs in the order Istio's admission does: document shape, apiVersion/kind, metadata, the
CRD schema (pydantic models: field names, types, enums, required fields), then the semantic rules of
the kind (``check_*`` modules). A document that fails one stage is not checked further.
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from .check_networking import check_destination_rule, check_gateway, check_service_entry
from .check_security import (
    check_authorization_policy,
    check_peer_authentication,
    check_request_authentication,
)
from .check_virtual_service import check_virtual_service
from .checks import Checker, Findings
from .errors import ConfigError, MeshlabConfigWarning, Problem
from .kinds import KINDS, lookup_kind
from .not_simulated import not_simulated
from .paths import format_loc, root_type, suggest
from .resource import Resource
from .validation_errors import problems_from_validation_error
from .yaml_source import Loc, YamlDocument, line_of, parse_yaml

__all__ = ["load", "Source", "CHECKS"]

Source = str | Path | dict | Resource | Iterable["Source"]

CHECKS: dict[str, Callable[[Any, Checker], None]] = {
    "VirtualService": check_virtual_service,
    "DestinationRule": check_destination_rule,
    "Gateway": check_gateway,
    "ServiceEntry": check_service_entry,
    "PeerAuthentication": check_peer_authentication,
    "AuthorizationPolicy": check_authorization_policy,
    "RequestAuthentication": check_request_authentication,
}
"""Kind -> function applying its semantic rules."""

_TOP_LEVEL = ["apiVersion", "kind", "metadata", "spec", "status"]
_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")


def load(source: Source, *, default_namespace: str = "default") -> list[Resource]:
    """Load and validate Istio resources.

    ``source`` is YAML text, a path to a file or folder (every ``*.yaml``/``*.yml`` below it, sorted),
    a dict (one document), a Resource, or a list of any of these. Raises ConfigError listing every
    problem if any document is invalid; otherwise returns the resources in document order, with
    warnings for fields meshlab does not simulate (also emitted as MeshlabConfigWarning).
    """
    resources: list[Resource] = []
    created: list[Resource] = []
    problems: list[Problem] = []
    for name, document in _documents(source, problems):
        if isinstance(document, Resource):  # validated already; its warnings were emitted then
            resources.append(document)
            continue
        resource = _load_document(document, name, default_namespace, problems)
        if resource is not None:
            resources.append(resource)
            created.append(resource)
    if problems:
        raise ConfigError(problems)
    for resource in created:
        for warning in resource.warnings:
            warnings.warn(f"{resource.kind} {resource.namespace}/{resource.name}: {warning}",
                          MeshlabConfigWarning, stacklevel=2)
    return resources


def _looks_like_yaml(text: str) -> bool:
    stripped = text.lstrip()
    return "\n" in text or stripped.startswith(("apiVersion", "kind", "---", "{", "#"))


def _plausible_path(text: str) -> bool:
    """Whether a one-line string is meant as a file or folder name (not inline YAML)."""
    return Path(text).exists() or not any(c in text for c in ":{}[]")


def _documents(source: Any, problems: list[Problem]) -> Iterable[tuple[str, YamlDocument | Resource]]:
    if isinstance(source, Resource):
        yield "<resource>", source
    elif isinstance(source, dict):
        yield "<dict>", YamlDocument(source, None)
    elif isinstance(source, str) and not source.strip():
        problems.append(Problem("<string>", None, "", "empty configuration: no YAML documents given"))
    elif isinstance(source, str) and (_looks_like_yaml(source) or not _plausible_path(source)):
        for document in parse_yaml(source, "<string>"):
            yield "<string>", document
    elif isinstance(source, str | Path):
        yield from _file_documents(Path(source), problems)
    elif isinstance(source, Iterable) and not isinstance(source, bytes | str):
        for item in source:
            yield from _documents(item, problems)
    else:
        problems.append(Problem(None, None, "", f"cannot load configuration from {type(source).__name__}; "
                                                "pass YAML text, a path, a dict or a list of these"))


def _file_documents(path: Path, problems: list[Problem]) -> Iterable[tuple[str, YamlDocument]]:
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.suffix in (".yaml", ".yml") and p.is_file())
        if not files:
            problems.append(Problem(str(path), None, "", "no *.yaml or *.yml files in this folder"))
        for file in files:
            yield from _file_documents(file, problems)
        return
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.append(Problem(str(path), None, "", f"cannot read file: {exc.strerror or exc}"))
        return
    for document in parse_yaml(text, str(path)):
        yield str(path), document


def _key_text(key: Any) -> str:
    if isinstance(key, bool):
        return "true" if key else "false"
    return key if isinstance(key, str) else str(key)


def _stringify_keys(value: Any) -> Any:
    """Kubernetes turns every mapping key into a string (``80:`` -> ``"80"``); do the same for dicts."""
    if isinstance(value, dict):
        return {_key_text(k): _stringify_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_keys(v) for v in value]
    return value


def _load_document(doc: YamlDocument, source: str, default_namespace: str,
                   problems: list[Problem]) -> Resource | None:
    """Validate one document; append its problems (in line order); return the Resource if it is valid."""
    found: list[Problem] = []
    resource = _validate_document(doc, source, default_namespace, found)
    problems.extend(sorted(found, key=lambda p: p.line or 0))
    return resource


def _validate_document(doc: YamlDocument, source: str, default_namespace: str,
                       problems: list[Problem]) -> Resource | None:
    problems.extend(doc.problems)
    data = doc.data
    if data is None:
        return None
    lines, first = doc.lines, doc.line

    def problem(loc: Loc, message: str, root: Any = None) -> None:
        problems.append(Problem(source, line_of(lines, loc, first), format_loc(loc, root), message))

    if not isinstance(data, dict):
        problem((), f"a document must be a mapping with apiVersion, kind, metadata and spec (got {type(data).__name__})")
        return None
    data = _stringify_keys(data)
    if doc.problems:
        return None
    for key in data:
        if key not in _TOP_LEVEL:
            problem((key,), "unknown field; " + suggest(key, _TOP_LEVEL))
    api_version, kind = data.get("apiVersion"), data.get("kind")
    for field, value in (("apiVersion", api_version), ("kind", kind)):
        if not isinstance(value, str) or not value:
            problem((field,), "required field is missing" if value is None else f"expected a string (got {value!r})")
    if not (isinstance(api_version, str) and api_version and isinstance(kind, str) and kind):
        return None
    wrong = lookup_kind(api_version, kind)
    if wrong:
        problem((wrong[0],), wrong[1])
        return None
    spec_model = KINDS[kind]
    root = root_type(spec_model)
    name, namespace = _check_metadata(data.get("metadata"), default_namespace, problem)
    spec = _validate_spec(data, kind, spec_model, root, doc, source, problems, problem)
    if name is None or spec is None:
        return None
    findings = Findings()
    CHECKS[kind](spec, Checker(findings, ("spec",), name, namespace))
    for loc, message in findings.errors:
        problem(loc, message, root)
    if findings.errors:
        return None
    found = findings.warnings + list(not_simulated(spec))
    notes = [f"{format_loc(loc, root)}: {message}" for loc, message in found]
    return Resource(kind, api_version, name, namespace, spec, doc.data, source, first, notes)


def _check_metadata(metadata: Any, default_namespace: str,
                    problem: Callable[..., None]) -> tuple[str | None, str]:
    if metadata is None:
        problem(("metadata", "name"), "required field is missing")
        return None, default_namespace
    if not isinstance(metadata, dict):
        problem(("metadata",), f"expected an object (key: value fields) (got {metadata!r})")
        return None, default_namespace
    name, namespace = metadata.get("name"), metadata.get("namespace", default_namespace)
    if name is None or name == "":
        problem(("metadata", "name"), "required field is missing")
        name = None
    elif not isinstance(name, str) or len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        problem(("metadata", "name"), f"invalid name {name!r}: use lowercase letters, digits, '-' and '.' "
                                      "(like 'reviews-route')")
        name = None
    if namespace is None or namespace == "":
        namespace = default_namespace
    if not isinstance(namespace, str) or len(namespace) > 63 or not _DNS_LABEL.match(namespace):
        problem(("metadata", "namespace"), f"invalid namespace {namespace!r}: use lowercase letters, digits "
                                           "and '-' (like 'default' or 'istio-system')")
        return None, default_namespace
    return name, namespace


def _validate_spec(data: dict, kind: str, spec_model: type[BaseModel], root: Any, doc: YamlDocument,
                   source: str, problems: list[Problem], problem: Callable[..., None]) -> BaseModel | None:
    spec = data.get("spec")
    if spec is None:
        if kind == "ServiceEntry":
            problem(("spec",), "required field is missing")
            return None
        spec = {}
    if not isinstance(spec, dict):
        problem(("spec",), f"expected an object (key: value fields) (got {spec!r})")
        return None
    try:
        return spec_model.model_validate(spec)
    except ValidationError as exc:
        problems.extend(problems_from_validation_error(exc, prefix=("spec",), root=root, lines=doc.lines,
                                                       source=source, default_line=doc.line))
        return None
