"""Semantic rules per kind: each case is a small spec, the path that must be blamed and a message fragment.

A matching valid variant of each rule is checked too, so a rule that rejects everything would fail.
"""

from __future__ import annotations

import warnings

import pytest

from meshlab.config import ConfigError, load

API = {
    "VirtualService": "networking.istio.io/v1",
    "DestinationRule": "networking.istio.io/v1",
    "Gateway": "networking.istio.io/v1",
    "ServiceEntry": "networking.istio.io/v1",
    "PeerAuthentication": "security.istio.io/v1",
    "AuthorizationPolicy": "security.istio.io/v1",
    "RequestAuthentication": "security.istio.io/v1",
}


def doc(kind: str, spec: dict, name: str = "example") -> dict:
    return {"apiVersion": API[kind], "kind": kind, "metadata": {"name": name}, "spec": spec}


def vs(*http: dict, **extra) -> dict:
    return doc("VirtualService", {"hosts": ["reviews"], "http": list(http), **extra})


def route(*dests: tuple[str, int | None], **extra) -> dict:
    items = [{"destination": {"host": "reviews", "subset": s}, **({"weight": w} if w is not None else {})}
             for s, w in dests]
    return {"route": items, **extra}


ONE = route(("v1", None))
TLS_SERVER = {"mode": "SIMPLE", "credentialName": "cert"}

INVALID = [
    (vs(route(("v1", 80), ("v2", 10))), "spec.http[0].route", "total destination weight 90 != 100"),
    (vs(route(("v1", 120), ("v2", -20))), "spec.http[0].route[0].weight", "must be between 0 and 100 (got 120)"),
    (doc("VirtualService", {"http": [ONE]}), "spec.hosts", "at least one host is required"),
    (doc("VirtualService", {"hosts": ["reviews"]}), "spec", "http, tcp or tls must be provided"),
    (vs({"route": [{"destination": {"host": "reviews"}}], "redirect": {"uri": "/x"}}), "spec.http[0].redirect",
     "HTTP route cannot contain both route and redirect"),
    (vs({"timeout": "1s"}), "spec.http[0]", "HTTP route, redirect, direct_response or delegate is required"),
    (vs({**ONE, "fault": {"abort": {"httpStatus": 700, "percentage": {"value": 50}}}}),
     "spec.http[0].fault.abort.httpStatus", "HTTP status 700 is not in range 200-599"),
    (vs({**ONE, "fault": {"delay": {"fixedDelay": "1s", "percentage": {"value": 101}}}}),
     "spec.http[0].fault.delay.percentage.value", "must be between 0 and 100 (got 101.0)"),
    (vs({**ONE, "fault": {"delay": {"fixedDelay": "1s", "percent": 150}}}),
     "spec.http[0].fault.delay.percent", "must be between 0 and 100 (got 150)"),
    (vs({**ONE, "fault": {}}), "spec.http[0].fault", "must have an abort and/or a delay"),
    (vs({**ONE, "retries": {"attempts": -1}}), "spec.http[0].retries.attempts", "attempts cannot be negative"),
    (vs({**ONE, "retries": {"attempts": 0, "perTryTimeout": "1s"}}), "spec.http[0].retries.attempts",
     "configured when attempts are set to 0"),
    (vs({**ONE, "timeout": "500us"}), "spec.http[0].timeout", "must be a valid duration greater than 1ms"),
    (vs({**ONE, "retries": {"attempts": 2, "perTryTimeout": "-1s"}}), "spec.http[0].retries.perTryTimeout",
     "must be a valid duration"),
    (vs({**ONE, "match": [{"headers": {"End-User": {"exact": "jason"}}}]}),
     "spec.http[0].match[0].headers[End-User]", "must be lowercase"),
    (vs({**ONE, "match": [{"uri": {"regex": "(unclosed"}}]}), "spec.http[0].match[0].uri.regex", "invalid regex"),
    (vs({**ONE, "match": [{"uri": {"exact": "/a", "prefix": "/b"}}]}), "spec.http[0].match[0].uri",
     "only one of exact, prefix or regex can be set"),
    (vs({"route": [{"destination": {"subset": "v1"}}]}), "spec.http[0].route[0].destination.host",
     "required field is missing"),
    (vs({"route": [{"destination": {"host": "reviews", "port": {"number": 70000}}}]}),
     "spec.http[0].route[0].destination.port.number", "port must be between 1-65535"),
    (vs({"redirect": {"uri": "/x", "redirectCode": 200}}), "spec.http[0].redirect.redirectCode", "must be 3xx"),
    (vs({**ONE, "mirrorPercentage": {"value": 150}}), "spec.http[0].mirrorPercentage.value",
     "must be between 0 and 100"),
    (vs({**ONE, "fault": {"abort": {"http2Error": "x"}}}), "spec.http[0].fault.abort.http2Error",
     "HTTP/2 abort fault injection not supported yet"),
    (doc("VirtualService", {"hosts": ["*"], "http": [ONE]}), "spec.hosts[0]", "wildcard host * is not allowed"),
    (doc("DestinationRule", {"host": "reviews", "subsets": [{"name": "v1"}, {"name": "v1"}]}),
     "spec.subsets[1].name", "duplicate subset names: v1"),
    (doc("DestinationRule", {"host": "reviews", "subsets": [{"name": "V_1"}]}), "spec.subsets[0].name",
     "subset name 'V_1' is invalid"),
    (doc("DestinationRule", {"trafficPolicy": {}}), "spec.host", "required field is missing"),
    (doc("DestinationRule", {"host": "r", "trafficPolicy": {"outlierDetection": {"maxEjectionPercent": 120}}}),
     "spec.trafficPolicy.outlierDetection.maxEjectionPercent", "must be between 0 and 100 (got 120)"),
    (doc("DestinationRule", {"host": "r", "trafficPolicy": {"outlierDetection": {"minHealthPercent": -1}}}),
     "spec.trafficPolicy.outlierDetection.minHealthPercent", "must be between 0 and 100 (got -1)"),
    (doc("DestinationRule", {"host": "r", "trafficPolicy": {"outlierDetection": {"consecutiveErrors": -1}}}),
     "spec.trafficPolicy.outlierDetection.consecutiveErrors", "must be >= 0"),
    (doc("DestinationRule", {"host": "r", "trafficPolicy": {"outlierDetection": {"consecutive5xxErrors": -1}}}),
     "spec.trafficPolicy.outlierDetection.consecutive5xxErrors", "must be >= 0"),
    (doc("DestinationRule", {"host": "r", "trafficPolicy": {
        "connectionPool": {"http": {"http1MaxPendingRequests": -1}}}}),
     "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests", "must be non-negative"),
    (doc("DestinationRule", {"host": "r", "trafficPolicy": {
        "loadBalancer": {"simple": "RANDOM", "consistentHash": {"useSourceIp": True}}}}),
     "spec.trafficPolicy.loadBalancer", "only one of simple, consistentHash or backendUtilization"),
    (doc("DestinationRule", {"host": "r", "trafficPolicy": {"loadBalancer": {"consistentHash": {}}}}),
     "spec.trafficPolicy.loadBalancer.consistentHash", "exactly one of httpHeaderName"),
    (doc("DestinationRule", {"host": "r", "trafficPolicy": {"loadBalancer": {"consistentHash": {
        "httpHeaderName": "x", "httpCookie": {"name": "c"}}}}}),
     "spec.trafficPolicy.loadBalancer.consistentHash", "(got httpHeaderName and httpCookie)"),
    (doc("DestinationRule", {"host": "r", "trafficPolicy": {"loadBalancer": {"simple": "FASTEST"}}}),
     "spec.trafficPolicy.loadBalancer.simple", "unsupported value 'FASTEST'"),
    (doc("DestinationRule", {"host": "r", "trafficPolicy": {}}), "spec.trafficPolicy",
     "traffic policy must have at least one field"),
    (doc("Gateway", {"selector": {"istio": "ingressgateway"}}), "spec.servers", "at least one server"),
    (doc("Gateway", {"servers": [{"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": []}]}),
     "spec.servers[0].hosts", "at least one host"),
    (doc("Gateway", {"servers": [{"port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                                  "hosts": ["*"]}]}), "spec.servers[0].tls", "must have TLS settings"),
    (doc("Gateway", {"servers": [{"hosts": ["*"]}]}), "spec.servers[0].port", "required field is missing"),
    (doc("ServiceEntry", {"hosts": ["a.com"], "ports": [{"name": "http", "number": 80, "protocol": "HTTPX"}]}),
     "spec.ports[0].protocol", "unsupported protocol: HTTPX"),
    (doc("AuthorizationPolicy", {"action": "DENY"}), "spec.action", "DENY action without `rules`"),
    (doc("AuthorizationPolicy", {"rules": [{"from": [{"source": {}}]}]}), "spec.rules[0].from[0].source",
     "`from.source` must not be empty"),
    (doc("AuthorizationPolicy", {"rules": [{"when": [{"key": "source.ip", "values": ["10.0.0.300"]}]}]}),
     "spec.rules[0].when[0].values[0]", "not an IP address"),
    (doc("AuthorizationPolicy", {"rules": [{}], "provider": {"name": "ext"}}), "spec.provider",
     "`provider` must not be with non CUSTOM action"),
    (doc("RequestAuthentication", {"jwtRules": [{"jwksUri": "https://x/jwks"}]}), "spec.jwtRules[0].issuer",
     "issuer must be set"),
    (doc("RequestAuthentication", {"jwtRules": [{"issuer": "i", "jwks": "{not json"}]}),
     "spec.jwtRules[0].jwks", "jwks parse error"),
]


@pytest.mark.parametrize(("document", "path", "fragment"), INVALID,
                         ids=[f"{d['kind']}:{p}" for d, p, _ in INVALID])
def test_rule_rejects(document: dict, path: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as caught:
        load(document)
    assert any(p.path == path and fragment in p.message for p in caught.value.problems), [
        str(p) for p in caught.value.problems]


VALID = [
    vs(ONE),
    vs(route(("v1", 80), ("v2", 20))),
    vs(route(("v1", 100), ("v2", 0))),
    vs({**ONE, "fault": {"abort": {"httpStatus": 503, "percentage": {"value": 0.1}},
                         "delay": {"fixedDelay": "0.5s", "percent": 100}}}),
    vs({**ONE, "retries": {"attempts": 0}, "timeout": "1ms"}),
    vs({**ONE, "retries": {"attempts": 3, "perTryTimeout": "250ms", "retryOn": "5xx,connect-failure,503"}}),
    vs({**ONE, "match": [{"headers": {"end-user": {"exact": "jason"}}, "uri": {"regex": "^/api/v[0-9]+"}},
                         {"uri": {"prefix": ""}}]}),
    vs({"redirect": {"uri": "/v2", "redirectCode": 308}}),
    vs({"directResponse": {"status": 404, "body": {"string": "not here"}}}),
    vs({**ONE, "mirror": {"host": "reviews", "subset": "v2"}, "mirrorPercentage": {"value": 100}}),
    doc("VirtualService", {"hosts": ["*"], "gateways": ["istio-system/ingress"], "http": [ONE]}),
    doc("DestinationRule", {"host": "reviews", "subsets": [{"name": "v1"}, {"name": "v2", "labels": {}}]}),
    doc("DestinationRule", {"host": "r", "trafficPolicy": {
        "loadBalancer": {"consistentHash": {"httpCookie": {"name": "user", "ttl": "0s"}}},
        "outlierDetection": {"consecutive5xxErrors": 0, "maxEjectionPercent": 100, "interval": "1m",
                             "baseEjectionTime": "30s"},
        "connectionPool": {"tcp": {"maxConnections": 1}, "http": {"http1MaxPendingRequests": 0}}}}),
    doc("Gateway", {"servers": [{"port": {"number": 443, "name": "https", "protocol": "HTTPS"}, "hosts": ["*"],
                                 "tls": TLS_SERVER},
                                {"port": {"number": 80, "name": "http", "protocol": "HTTP"}, "hosts": ["a.com"],
                                 "tls": {"httpsRedirect": True}}]}),
    doc("AuthorizationPolicy", {}),
    doc("AuthorizationPolicy", {"action": "DENY", "rules": [{}]}),
    doc("PeerAuthentication", {"mtls": {"mode": "STRICT"}}),
]


@pytest.mark.parametrize("document", VALID, ids=[f"{d['kind']}#{i}" for i, d in enumerate(VALID)])
def test_rule_accepts(document: dict) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [resource] = load(document)
    assert resource.to_dict()["spec"] == document["spec"]
