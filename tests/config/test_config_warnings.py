"""Valid Istio that meshlab does not simulate is accepted with a warning naming the field."""

from __future__ import annotations

import pytest

from meshlab.config import KINDS, NOT_SIMULATED, MeshlabConfigWarning, load

VS = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews}
    corsPolicy:
      allowOrigins: [{exact: "https://example.com"}]
  tcp:
  - route:
    - destination: {host: reviews, port: {number: 3306}}
"""


def test_not_simulated_fields_warn_with_their_path() -> None:
    with pytest.warns(MeshlabConfigWarning) as record:
        [vs] = load(VS)
    assert vs.warnings == [
        "spec.http[0].corsPolicy: accepted but not simulated by meshlab (CORS)",
        "spec.tcp: accepted but not simulated by meshlab (TCP routes)",
    ]
    assert [str(w.message) for w in record] == [f"VirtualService default/reviews: {w}" for w in vs.warnings]


def test_nested_not_simulated_fields_in_every_traffic_policy() -> None:
    text = """\
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
      localityLbSetting: {enabled: true}
    outlierDetection: {consecutive5xxErrors: 3, splitExternalLocalOriginErrors: true}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy:
      tunnel: {targetHost: proxy.example.com, targetPort: 8080}
"""
    with pytest.warns(MeshlabConfigWarning):
        [dr] = load(text)
    paths = [w.split(":")[0] for w in dr.warnings]
    assert paths == ["spec.trafficPolicy.loadBalancer.localityLbSetting",
                     "spec.trafficPolicy.outlierDetection.splitExternalLocalOriginErrors",
                     "spec.subsets[0].trafficPolicy.tunnel"]


def test_enum_value_entries() -> None:
    text = """\
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ext-authz}
spec:
  action: CUSTOM
  provider: {name: my-authz}
  rules: [{to: [{operation: {paths: ["/admin/*"]}}]}]
"""
    with pytest.warns(MeshlabConfigWarning):
        [policy] = load(text)
    assert [w.split(":")[0] for w in policy.warnings] == ["spec.action", "spec.provider"]


def test_istio_deprecation_warnings_are_kept() -> None:
    text = VS.split("    corsPolicy")[0] + "    mirror: {host: reviews, subset: v2}\n    mirrorPercent: 5\n"
    with pytest.warns(MeshlabConfigWarning):
        [vs] = load(text)
    assert vs.warnings == ['spec.http[0].mirrorPercent: using deprecated setting "mirrorPercent", use '
                           '"mirrorPercentage" instead (Istio warning)']


def test_plain_configuration_has_no_warnings(recwarn: pytest.WarningsRecorder) -> None:
    [vs] = load(VS.split("    corsPolicy")[0])
    assert vs.warnings == []
    assert not [w for w in recwarn if issubclass(w.category, MeshlabConfigWarning)]


def _model_classes() -> dict[str, type]:
    found: dict[str, type] = {}

    def visit(model: type) -> None:
        if model.__name__ in found:
            return
        found[model.__name__] = model
        for info in model.model_fields.values():
            for tp in _types_in(info.annotation):
                if hasattr(tp, "model_fields"):
                    visit(tp)

    for model in KINDS.values():
        visit(model)
    return found


def _types_in(annotation: object) -> list:
    import typing

    out = [annotation]
    for arg in typing.get_args(annotation):
        out += _types_in(arg)
    return out


@pytest.mark.parametrize("entry", sorted(NOT_SIMULATED))
def test_every_table_entry_names_a_real_field(entry: str) -> None:
    models = _model_classes()
    message, _, field = entry.partition(".")
    field, _, value = field.partition("=")
    assert message in models, f"{message} is not a model of any kind"
    fields = {info.alias or name: info for name, info in models[message].model_fields.items()}
    assert field in fields, f"{message} has no field {field}"
    if value:
        assert value in str(fields[field].annotation)
