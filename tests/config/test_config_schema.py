"""The models match Istio's CRD schemas field for field, and the package exports what it promises."""

from __future__ import annotations

import types
import typing
from pathlib import Path

import pytest
import yaml
from pydantic import BaseModel

import meshlab.config
from meshlab.config import KINDS

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
CRDS = SHARED / "istio" / "crds" / "crd-all.gen.yaml"


@pytest.fixture(scope="module")
def crd_specs() -> dict[str, dict]:
    if not CRDS.exists():
        pytest.skip("../shared/istio/crds/crd-all.gen.yaml is missing")
    specs = {}
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the CRD file is 1 MB
    for crd in yaml.load_all(CRDS.read_text(), Loader=loader):
        if crd and crd.get("kind") == "CustomResourceDefinition" and crd["spec"]["names"]["kind"] in KINDS:
            version = crd["spec"]["versions"][0]
            specs[crd["spec"]["names"]["kind"]] = version["schema"]["openAPIV3Schema"]["properties"]["spec"]
    return specs


def _unwrap(tp: typing.Any) -> typing.Any:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        return _unwrap(typing.get_args(tp)[0])
    if origin in (typing.Union, types.UnionType):
        return _unwrap(next(a for a in typing.get_args(tp) if a is not type(None)))
    return tp


_JSON_TYPES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def _differences(model: type[BaseModel], schema: dict, path: str) -> list[str]:
    """Field names, required fields, types and enums that differ between a model and its schema."""
    out = []
    props = schema.get("properties", {})
    fields = {info.alias or name: info for name, info in model.model_fields.items()}
    out += [f"{path}.{name}: in the CRD, not in the model" for name in sorted(set(props) - set(fields))]
    out += [f"{path}.{name}: in the model, not in the CRD" for name in sorted(set(fields) - set(props))]
    required = set(schema.get("required", []))
    for name in sorted(set(fields) & set(props)):
        where, info, node = f"{path}.{name}", fields[name], props[name]
        if (name in required) != info.is_required():
            out.append(f"{where}: required is {name in required} in the CRD")
        tp = _unwrap(info.annotation)
        while typing.get_origin(tp) in (list, dict):
            if node.get("type") != ("array" if typing.get_origin(tp) is list else "object"):
                out.append(f"{where}: CRD type {node.get('type')} but model has {tp}")
            node = node.get("items" if typing.get_origin(tp) is list else "additionalProperties", {})
            tp = _unwrap(typing.get_args(tp)[-1])
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            out += _differences(tp, node, where)
        elif typing.get_origin(tp) is typing.Literal:
            if list(typing.get_args(tp)) != node.get("enum"):
                out.append(f"{where}: enum {typing.get_args(tp)} != {node.get('enum')}")
        elif _JSON_TYPES.get(tp) != node.get("type"):
            out.append(f"{where}: CRD type {node.get('type')} but model has {tp}")
    return out


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_model_matches_crd_schema(kind: str, crd_specs: dict[str, dict]) -> None:
    assert _differences(KINDS[kind], crd_specs[kind], "spec") == []


def test_the_comparison_notices_a_difference(crd_specs: dict[str, dict]) -> None:
    class Broken(BaseModel):
        hosts: list[int] | None = None
        gatways: list[str] | None = None

    found = _differences(Broken, crd_specs["VirtualService"], "spec")
    assert "spec.gatways: in the model, not in the CRD" in found
    assert "spec.gateways: in the CRD, not in the model" in found
    assert any(line.startswith("spec.hosts: CRD type string") for line in found)


def test_public_api() -> None:
    expected = {"load", "ConfigError", "Problem", "Resource", "ConfigStore", "KINDS", "parse_duration",
                "MeshlabConfigWarning", "ResourceNotFound", "canonical_kind", "NOT_SIMULATED"}
    assert set(meshlab.config.__all__) == expected
    for name in expected:
        assert getattr(meshlab.config, name) is not None
    assert sorted(KINDS) == sorted(["VirtualService", "DestinationRule", "Gateway", "ServiceEntry",
                                    "PeerAuthentication", "AuthorizationPolicy", "RequestAuthentication"])
    assert all(issubclass(model, BaseModel) for model in KINDS.values())


def test_istio_field_names_are_attributes() -> None:
    """Learners read ``vs.spec.http[0].match[0].uri.prefix`` next to their YAML; only ``from`` differs."""
    [policy] = meshlab.config.load({"apiVersion": "security.istio.io/v1", "kind": "AuthorizationPolicy",
                                    "metadata": {"name": "p"},
                                    "spec": {"rules": [{"from": [{"source": {"namespaces": ["shop"]}}]}]}})
    assert policy.spec.rules[0].from_[0].source.namespaces == ["shop"]
    assert policy.to_dict()["spec"]["rules"][0]["from"][0]["source"]["namespaces"] == ["shop"]
