"""What a learner sees when the YAML is wrong: precise paths, line numbers and plain messages."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from meshlab.config import ConfigError, Problem, load

VS_HEAD = """\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts: [reviews]
"""


def problems_of(source, **kwargs) -> list[Problem]:
    with pytest.raises(ConfigError) as caught:
        load(source, **kwargs)
    return caught.value.problems


def test_unknown_field_suggests_the_nearest_name() -> None:
    [problem] = problems_of(VS_HEAD + "  http:\n  - rout:\n    - destination: {host: reviews}\n")
    assert (problem.path, problem.line) == ("spec.http[0].rout", 8)
    assert problem.message == "unknown field; did you mean 'route'?"
    assert str(problem) == "<string>:8: spec.http[0].rout: unknown field; did you mean 'route'?"


@pytest.mark.parametrize(("written", "suggested"), [
    ("perTryTimeOut", "perTryTimeout"), ("retry_on", "retryOn"), ("atempts", "attempts")])
def test_suggestions_cover_case_and_snake_case(written: str, suggested: str) -> None:
    text = VS_HEAD + f"  http:\n  - route: [{{destination: {{host: r}}}}]\n    retries: {{{written}: 1}}\n"
    [problem] = problems_of(text)
    assert problem.path == f"spec.http[0].retries.{written}"
    assert f"did you mean '{suggested}'?" in problem.message


def test_unknown_field_without_close_match_lists_valid_fields() -> None:
    [problem] = problems_of(VS_HEAD + "  http:\n  - route: [{destination: {host: r, zzz: 1}}]\n")
    assert problem.path == "spec.http[0].route[0].destination.zzz"
    assert problem.message == "unknown field; valid fields are: host, port, subset"


def test_yaml_syntax_error_has_its_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(VS_HEAD + "  http:\n  - route:\n    - destination: {host: reviews\n")
    [problem] = problems_of(bad)
    assert problem.source == str(bad)
    assert problem.line == 10
    assert problem.message.startswith("YAML syntax error: ")
    assert str(problem).startswith(f"{bad}:10: YAML syntax error: ")


def test_tabs_get_a_hint() -> None:
    [problem] = problems_of("apiVersion: v1\nkind: X\nmetadata:\n\tname: a\n")
    assert problem.line == 4 and "tabs" in problem.message


def test_semantic_error_points_at_the_offending_line() -> None:
    text = textwrap.dedent("""\
        apiVersion: networking.istio.io/v1
        kind: VirtualService
        metadata:
          name: reviews
        spec:
          hosts:
          - reviews
          http:
          - route:
            - destination:
                host: reviews
                subset: v1
              weight: 120
            - destination:
                host: reviews
                subset: v2
              weight: 20
        """)
    first, second = problems_of(text)
    assert str(first) == "<string>:9: spec.http[0].route: total destination weight 140 != 100"
    assert str(second) == "<string>:13: spec.http[0].route[0].weight: must be between 0 and 100 (got 120)"


def test_type_errors_say_what_was_expected() -> None:
    text = VS_HEAD + "  http:\n  - timeout: 5\n    route: [{destination: {host: r}, weight: '80'}]\n"
    problems = {p.path: p for p in problems_of(text)}
    assert problems["spec.http[0].timeout"].message == "expected a duration like '1s' or '250ms' (got 5)"
    assert problems["spec.http[0].timeout"].line == 8
    assert problems["spec.http[0].route[0].weight"].message == "expected an integer (got '80')"


def test_common_yaml_slips_get_hints() -> None:
    text = VS_HEAD.replace("hosts: [reviews]", "hosts: reviews") + "  http:\n  - route: [{destination: {host: r}}]\n"
    [problem] = problems_of(text)
    assert problem.message == "expected a list (got 'reviews'); write a YAML list, e.g. [reviews]"
    dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r}\nspec:\n  host: r\n" \
         "  subsets:\n  - name: v1\n    labels: {version: 1}\n"
    [problem] = problems_of(dr)
    assert problem.path == "spec.subsets[0].labels[version]"
    assert problem.message == 'expected a string (got 1); put the value in quotes, e.g. "1"'


def test_enum_errors_list_the_allowed_values() -> None:
    text = "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: p}\n" \
           "spec:\n  mtls:\n    mode: strict\n"
    [problem] = problems_of(text)
    assert (problem.path, problem.line) == ("spec.mtls.mode", 6)
    assert problem.message == "unsupported value 'strict'; must be one of UNSET, DISABLE, PERMISSIVE or STRICT"


def test_every_problem_of_every_document_is_reported() -> None:
    text = VS_HEAD + "  http:\n  - route: [{destination: {host: r}, weight: -1}, {destination: {host: s}}]\n" \
        "---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec: {servers: []}\n"
    with pytest.raises(ConfigError) as caught:
        load(text)
    problems = caught.value.problems
    assert [p.line for p in problems] == [8, 8, 13]
    lines = str(caught.value).splitlines()
    assert lines[0] == "3 problems in the configuration:"
    assert lines[1:] == [f"  {p}" for p in problems]


def test_duplicate_keys_are_errors() -> None:
    [problem] = problems_of(VS_HEAD + "  http:\n  - route: [{destination: {host: r}}]\n"
                            "    route: [{destination: {host: s}}]\n")
    assert (problem.path, problem.line) == ("spec.http[0].route", 9)
    assert "written twice" in problem.message and "line 8" in problem.message


@pytest.mark.parametrize(("document", "path", "fragment"), [
    ({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {}},
     "metadata.name", "required field is missing"),
    ({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "Reviews"}},
     "metadata.name", "invalid name 'Reviews'"),
    ({"apiVersion": "networking.istio.io/v1alpha1", "kind": "VirtualService", "metadata": {"name": "r"}},
     "apiVersion", "does not serve VirtualService"),
    ({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "r"}},
     "apiVersion", "apps/v1 Deployment is not Istio configuration"),
    ({"apiVersion": "networking.istio.io/v1", "kind": "VirtualServce", "metadata": {"name": "r"}},
     "kind", "did you mean 'VirtualService'?"),
    ({"apiVersion": "networking.istio.io/v1alpha3", "kind": "Sidecar", "metadata": {"name": "r"}},
     "kind", "kind Sidecar is valid Istio but not supported by meshlab"),
    ({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry", "metadata": {"name": "r"}},
     "spec", "required field is missing"),
    ({"kind": "ServiceEntry", "metadata": {"name": "r"}}, "apiVersion", "required field is missing"),
    ({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication", "metadata": {"name": "p"}, "specs": {}},
     "specs", "did you mean 'spec'?"),
])
def test_document_level_problems(document: dict, path: str, fragment: str) -> None:
    problems = problems_of(document)
    assert any(p.path == path and fragment in p.message and p.source == "<dict>" for p in problems), problems


def test_sources_are_named(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(VS_HEAD + "  http:\n  - route: [{destination: {host: r}}]\n")
    (tmp_path / "b.yml").write_text(VS_HEAD.replace("reviews]", "ratings]") + "  http: []\n")
    [problem] = problems_of(tmp_path)
    assert problem.source == str(tmp_path / "b.yml") and problem.line == 5
    assert problems_of(tmp_path / "missing.yaml")[0].message.startswith("cannot read file")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert problems_of(empty)[0].message == "no *.yaml or *.yml files in this folder"


def test_config_error_is_a_value_error_with_problems() -> None:
    error = ConfigError([Problem("x.yaml", 3, "spec.hosts", "must not be empty")])
    assert isinstance(error, ValueError)
    assert str(error) == "x.yaml:3: spec.hosts: must not be empty"
    assert str(ConfigError("plain text")) == "<config>: plain text"
