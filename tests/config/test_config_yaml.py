"""YAML is read the way Kubernetes reads it, and the loader accepts every kind of source."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

from meshlab.config import ConfigStore, MeshlabConfigWarning, Resource, load
from meshlab.config.yaml_source import parse_yaml


def test_ipv6_in_a_flow_list_is_one_address() -> None:
    [se] = load("""
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: v6}
spec:
  hosts: [v6.example.com]
  addresses: [2001:db8::1, 001:db8::]
""")
    assert se.spec.addresses == ["2001:db8::1", "001:db8::"]


def test_timestamps_stay_text_and_numeric_keys_become_text() -> None:
    [pa] = load("""
apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: p, labels: {since: 2024-01-01}}
spec:
  selector: {matchLabels: {app: reviews, since: 2024-01-01}}
  portLevelMtls:
    8080: {mode: DISABLE}
""")
    assert pa.spec.selector.matchLabels["since"] == "2024-01-01"
    assert pa.spec.portLevelMtls["8080"].mode == "DISABLE"
    assert pa.to_dict()["metadata"]["labels"] == {"since": "2024-01-01"}


def test_line_table_records_every_field() -> None:
    [doc] = parse_yaml("a:\n  b:\n  - x: 1\n  - y: 2\n", "t.yaml")
    assert doc.lines == {("a",): 1, ("a", "b"): 2, ("a", "b", 0): 3, ("a", "b", 0, "x"): 3,
                         ("a", "b", 1): 4, ("a", "b", 1, "y"): 4}
    assert doc.line == 1


def test_empty_documents_are_skipped(tmp_path: Path) -> None:
    text = "---\n# only a comment\n---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\n" \
           "metadata: {name: r}\nspec: {host: r}\n---\n"
    assert [r.name for r in load(text)] == ["r"]
    (tmp_path / "empty.yaml").write_text("")
    assert load(tmp_path / "empty.yaml") == []


def test_mixed_sources_in_one_list(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "dr.yml").write_text("apiVersion: networking.istio.io/v1\nkind: DestinationRule\n"
                                              "metadata: {name: from-folder}\nspec: {host: a}\n")
    (tmp_path / "notes.txt").write_text("not yaml")
    path_text = str(tmp_path / "sub" / "dr.yml")
    as_dict = {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": "from-dict"},
               "spec": {"host": "b"}}
    resources = load([tmp_path, path_text, as_dict])
    assert [(r.name, r.source) for r in resources] == [
        ("from-folder", path_text), ("from-folder", path_text), ("from-dict", "<dict>")]
    assert load(resources) == resources


def test_warnings_are_emitted_once() -> None:
    text = ("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\n"
            "spec: {host: r, trafficPolicy: {proxyProtocol: {version: V1}}}\n")
    with pytest.warns(MeshlabConfigWarning) as record:
        resources = load(text)
    assert len(record) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        applied = ConfigStore().apply(resources)
    assert all(isinstance(r, Resource) for r in applied) and applied[0].warnings == resources[0].warnings


def test_unloadable_source_type() -> None:
    from meshlab.config import ConfigError

    with pytest.raises(ConfigError, match="cannot load configuration from int"):
        load(42)  # type: ignore[arg-type]
