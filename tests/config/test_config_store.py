"""ConfigStore: all-or-nothing apply, replace, delete/get/list with kubectl-style kind names, subscribers."""

from __future__ import annotations

import pytest

from meshlab.config import ConfigError, ConfigStore, Resource, load
from meshlab.config.errors import ResourceNotFound


def vs(name: str, subset: str = "v1", namespace: str | None = None) -> dict:
    metadata = {"name": name, **({"namespace": namespace} if namespace else {})}
    return {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": metadata,
            "spec": {"hosts": [name], "http": [{"route": [{"destination": {"host": name, "subset": subset}}]}]}}


def dr(name: str) -> dict:
    return {"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule", "metadata": {"name": name},
            "spec": {"host": name, "subsets": [{"name": "v1", "labels": {"version": "v1"}}]}}


BAD = {"apiVersion": "networking.istio.io/v1", "kind": "VirtualService", "metadata": {"name": "bad"},
       "spec": {"hosts": ["bad"], "http": [{"route": [{"destination": {"host": "bad"}, "weight": 120},
                                                      {"destination": {"host": "bad"}, "weight": 0}]}]}}


def test_apply_stores_and_bumps_version() -> None:
    store = ConfigStore()
    applied = store.apply([vs("reviews"), dr("reviews")])
    assert [r.kind for r in applied] == ["VirtualService", "DestinationRule"]
    assert store.version == 1 and len(store) == 2
    assert store.get("vs", "reviews").spec.http[0].route[0].destination.subset == "v1"


def test_one_bad_document_changes_nothing() -> None:
    store = ConfigStore()
    store.apply(vs("reviews"))
    before = (store.version, [r.to_dict() for r in store.list()])
    calls = []
    store.subscribe(calls.append)
    with pytest.raises(ConfigError) as caught:
        store.apply([vs("ratings"), vs("reviews", subset="v2"), BAD])
    assert {p.path for p in caught.value.problems} == {"spec.http[0].route", "spec.http[0].route[0].weight"}
    assert (store.version, [r.to_dict() for r in store.list()]) == before
    assert calls == []
    assert "ratings" not in [r.name for r in store.list()]


def test_same_key_replaces() -> None:
    store = ConfigStore()
    store.apply(vs("reviews"))
    store.apply(vs("reviews", subset="v3"))
    [only] = store.list()
    assert only.spec.http[0].route[0].destination.subset == "v3"
    assert store.version == 2


def test_apply_accepts_yaml_and_resources() -> None:
    store = ConfigStore()
    resources = load(vs("a"))
    assert isinstance(resources[0], Resource)
    store.apply(resources)
    store.apply("apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: a}\nspec: {host: a}\n")
    assert [r.kind for r in store.list()] == ["DestinationRule", "VirtualService"]


@pytest.mark.parametrize("alias", ["VirtualService", "virtualservice", "virtualservices", "vs", "VS"])
def test_virtual_service_aliases(alias: str) -> None:
    store = ConfigStore()
    store.apply(vs("reviews"))
    assert store.get(alias, "reviews").kind == "VirtualService"


@pytest.mark.parametrize(("alias", "kind"), [
    ("dr", "DestinationRule"), ("destinationrules", "DestinationRule"), ("gw", "Gateway"),
    ("gateways", "Gateway"), ("se", "ServiceEntry"), ("serviceentries", "ServiceEntry"),
    ("serviceentry", "ServiceEntry"), ("pa", "PeerAuthentication"), ("peerauthentications", "PeerAuthentication"),
    ("ap", "AuthorizationPolicy"), ("authorizationpolicies", "AuthorizationPolicy"),
    ("authorizationpolicy", "AuthorizationPolicy"), ("ra", "RequestAuthentication"),
    ("requestauthentications", "RequestAuthentication"),
])
def test_kind_aliases(alias: str, kind: str) -> None:
    from meshlab.config import canonical_kind

    assert canonical_kind(alias) == kind


def test_unknown_kind_is_a_clear_error() -> None:
    with pytest.raises(ConfigError, match="did you mean 'VirtualService'"):
        ConfigStore().list("virtualservce")


def test_delete_and_missing_resources() -> None:
    store = ConfigStore()
    store.apply([vs("reviews"), vs("ratings")])
    removed = store.delete("vs", "reviews")
    assert removed.name == "reviews" and store.version == 2
    assert [r.name for r in store.list("virtualservices")] == ["ratings"]
    with pytest.raises(ResourceNotFound) as caught:
        store.delete("vs", "reviews")
    assert isinstance(caught.value, KeyError) and isinstance(caught.value, ConfigError)
    assert str(caught.value) == "<config>: VirtualService default/reviews not found; stored VirtualServices: default/ratings"
    with pytest.raises(ResourceNotFound):
        store.get("dr", "reviews")
    assert store.version == 2


def test_list_sorts_and_filters() -> None:
    store = ConfigStore()
    store.apply([vs("b", namespace="prod"), dr("z"), vs("a", namespace="prod"), vs("c")])
    assert [r.key for r in store.list()] == [
        ("DestinationRule", "default", "z"),
        ("VirtualService", "default", "c"),
        ("VirtualService", "prod", "a"),
        ("VirtualService", "prod", "b"),
    ]
    assert [r.name for r in store.list(namespace="prod")] == ["a", "b"]
    assert [r.name for r in store.list("vs", "default")] == ["c"]
    assert store.get("vs", "a", namespace="prod").namespace == "prod"


def test_subscribers_see_each_change() -> None:
    store = ConfigStore()
    seen: list[int] = []
    unsubscribe = store.subscribe(lambda s: seen.append(s.version))
    store.apply(vs("a"))
    store.delete("vs", "a")
    unsubscribe()
    store.apply(vs("b"))
    assert seen == [1, 2]


def test_a_failing_subscriber_does_not_starve_the_others() -> None:
    store = ConfigStore()
    seen = []

    def broken(_: ConfigStore) -> None:
        raise RuntimeError("boom")

    store.subscribe(broken)
    store.subscribe(lambda s: seen.append(s.version))
    with pytest.raises(RuntimeError, match="boom"):
        store.apply(vs("a"))
    assert seen == [1] and len(store) == 1
