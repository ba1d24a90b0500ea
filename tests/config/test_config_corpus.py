"""Conformance with Istio's own validation corpus (../shared/istio/validation-testdata).

Every document of a ``*-valid.yaml`` file is valid Istio and must load; every document of an
``*-invalid.yaml`` file is rejected by Istio and must be rejected here, with a message that says the
same thing as Istio's (``_err``), compared loosely. Kinds meshlab does not model must be rejected with
the "not supported by meshlab" error, whatever the file.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

from meshlab.config import ConfigError, load
from meshlab.config.kinds import KINDS
from meshlab.config.yaml_source import parse_yaml

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CORPUS = SHARED / "istio" / "validation-testdata"

# Istio texts that are artefacts of Kubernetes internals rather than statements about the field.
ISTIO_WORDING_NOT_REUSED = {
    "type conversion error from": "CEL int() on a map key; meshlab says the port key is not a number",
}


def _corpus() -> list:
    params = []
    for file in sorted(CORPUS.glob("*.yaml")) if CORPUS.is_dir() else []:
        # Parse like Kubernetes does (go-yaml rules), which is what meshlab's loader implements.
        docs = [d.data for d in parse_yaml(file.read_text(), str(file)) if isinstance(d.data, dict)]
        for index, doc in enumerate(docs):
            params.append(pytest.param(file.name, doc, id=f"{file.name}#{index}"))
    return params


CASES = _corpus()
pytestmark = pytest.mark.skipif(not CASES, reason="../shared/istio/validation-testdata is missing")


def _words(text: str) -> set[str]:
    return set(re.findall(r"[a-z0-9_]+", text.lower()))


def _istio_path(err: str) -> str | None:
    """The field path Istio's message starts with, if any ("spec.hosts: Required value" -> "spec.hosts")."""
    match = re.match(r"^([\w.\[\]]+)(:| in body)", err)
    if match and (match.group(1) == "spec" or "." in match.group(1) or "[" in match.group(1)
                  or match.group(2) == " in body"):
        return match.group(1)
    return None


def _says_the_same(err: str, problems: list) -> bool:
    path = _istio_path(err)
    if path:
        return any(p.path == path or p.path.endswith("." + path) for p in problems)
    wanted = _words(err)
    return any(len(wanted & _words(p.message)) >= 0.5 * len(wanted) for p in problems)


@pytest.mark.parametrize(("file", "doc"), CASES)
def test_corpus_document(file: str, doc: dict) -> None:
    doc = dict(doc)
    istio_error = doc.pop("_err", None)
    supported = doc.get("kind") in KINDS
    if not supported:
        with pytest.raises(ConfigError) as caught:
            load(doc)
        assert [p.message for p in caught.value.problems] == [
            f"kind {doc['kind']} is valid Istio but not supported by meshlab"
        ]
        assert caught.value.problems[0].path == "kind"
    elif file.endswith("-valid.yaml"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            [resource] = load(doc)
        assert resource.kind == doc["kind"]
        assert resource.name == doc["metadata"]["name"]
    else:
        assert istio_error, "every invalid corpus document carries Istio's error text"
        with pytest.raises(ConfigError) as caught:
            load(doc)
        problems = caught.value.problems
        if istio_error not in ISTIO_WORDING_NOT_REUSED:
            assert _says_the_same(istio_error, problems), (istio_error, [str(p) for p in problems])


def test_corpus_covers_every_supported_kind() -> None:
    kinds = {doc["kind"] for _, doc in (case.values for case in CASES)}
    assert {"AuthorizationPolicy", "DestinationRule", "PeerAuthentication", "RequestAuthentication",
            "ServiceEntry"} <= kinds
    assert {"EnvoyFilter", "ProxyConfig", "Telemetry", "WasmPlugin", "WorkloadEntry", "WorkloadGroup"} <= kinds


def test_loose_comparison_can_fail() -> None:
    """Guard the helper: a message about something else must not count as the same."""
    from meshlab.config import Problem

    unrelated = [Problem(None, None, "spec.hosts", "must not be empty")]
    assert not _says_the_same("port number cannot be duplicated", unrelated)
    assert not _says_the_same("spec.ports[0].number: Required value", unrelated)
    assert _says_the_same("spec.hosts: Required value", unrelated)
