"""Access logs in Istio's two encodings: the default TEXT line (Envoy's format string, field by
field) and JSON (meshConfig.accessLogEncoding: JSON, Istio's keys), from a running mesh."""

from __future__ import annotations

import json
import re

import pytest
from fastapi import FastAPI

from meshlab import Mesh, MeshError
from meshlab.telemetry.accesslog import AccessLogEntry

#: the keys of Istio's default JSON access-log format
ISTIO_JSON_KEYS = {
    "start_time", "route_name", "method", "path", "protocol", "response_code", "response_flags",
    "response_code_details", "connection_termination_details", "upstream_transport_failure_reason",
    "bytes_received", "bytes_sent", "duration", "upstream_service_time", "x_forwarded_for", "user_agent",
    "request_id", "authority", "upstream_host", "upstream_cluster", "upstream_local_address",
    "downstream_local_address", "downstream_remote_address", "requested_server_name",
}

#: Istio's default TEXT format, as a regular expression (one group per field)
TEXT_LINE = re.compile(
    r'^\[(?P<start>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)\] "(?P<method>\S+) (?P<path>\S+) (?P<protocol>\S+)" '
    r'(?P<code>\d+) (?P<flags>\S+) (?P<details>\S+) (?P<termination>\S+) "(?P<tfr>[^"]*)" '
    r'(?P<rx>\d+) (?P<tx>\d+) (?P<duration>\d+) (?P<ust>\S+) "(?P<xff>[^"]*)" "(?P<ua>[^"]*)" '
    r'"(?P<rid>[^"]*)" "(?P<authority>[^"]*)" "(?P<upstream_host>[^"]*)" (?P<cluster>\S+) (?P<ula>\S+) '
    r'(?P<dla>\S+) (?P<dra>\S+) (?P<sni>\S+) (?P<route>\S+)$')


def entry(**kw: object) -> AccessLogEntry:
    base: dict[str, object] = dict(
        start_time=0.25, reporter="source", workload="curl", pod="curl", method="GET", path="/get",
        protocol="HTTP/1.1", response_code=503, response_flags="UO", response_code_details="upstream_reset",
        bytes_received=0, bytes_sent=81, duration_ms=1.6, upstream_service_time_ms=None, x_forwarded_for="",
        user_agent="curl/8", request_id="r-1", authority="httpbin:8000", upstream_host="",
        upstream_cluster="outbound|8000||httpbin.default.svc.cluster.local", downstream_local_address="127.0.0.1:1",
        downstream_remote_address="127.0.0.1:2", route_name="default", source_workload="curl",
        destination_workload="httpbin-v1", destination_service="httpbin.default.svc.cluster.local",
        destination_version="v1", upstream_pod="")
    base.update(kw)
    return AccessLogEntry(**base)  # type: ignore[arg-type]


def test_text_line_has_every_field_of_istios_default_format() -> None:
    m = TEXT_LINE.match(entry().text())
    assert m, entry().text()
    assert m["start"] == "1970-01-01T00:00:00.250Z"
    assert (m["method"], m["path"], m["code"], m["flags"]) == ("GET", "/get", "503", "UO")
    assert (m["ust"], m["xff"], m["upstream_host"]) == ("-", "-", "-")  # empty fields are "-"
    assert m["cluster"] == "outbound|8000||httpbin.default.svc.cluster.local"


def test_json_has_istios_keys_and_nulls_for_empty_fields() -> None:
    doc = json.loads(entry(upstream_service_time_ms=4.4, response_flags="").json())
    assert set(doc) == ISTIO_JSON_KEYS
    assert doc["start_time"] == "1970-01-01T00:00:00.250Z"
    assert (doc["response_code"], doc["duration"], doc["upstream_service_time"]) == (503, 2, "4")
    assert doc["response_flags"] is None and doc["upstream_host"] is None


def hello() -> FastAPI:
    app = FastAPI()

    @app.get("/hello")
    async def serve() -> dict[str, str]:
        return {"hello": "world"}

    return app


def test_a_running_proxy_logs_in_both_encodings() -> None:
    with Mesh(seed=0) as mesh:
        mesh.deploy("hello", hello())
        for _ in range(3):
            assert mesh.call("hello", "/hello").status_code == 200
        text = mesh.access_log_text("curl", last=None).splitlines()
        docs = [json.loads(line) for line in mesh.access_log_text("curl", last=None, encoding="JSON").splitlines()]
        table = mesh.access_log()
        with pytest.raises(MeshError, match="TEXT or JSON"):
            mesh.access_log_text("curl", encoding="YAML")
    assert len(text) == len(docs) == 3
    for line, doc in zip(text, docs, strict=True):
        m = TEXT_LINE.match(line)
        assert m, line
        assert (m["method"], m["path"], int(m["code"]), m["rid"]) == (doc["method"], doc["path"],
                                                                     doc["response_code"], doc["request_id"])
        assert doc["upstream_cluster"] == "outbound|80||hello.default.svc.cluster.local"
    source = table[table["reporter"] == "source"]
    assert sorted(source["request_id"]) == sorted(d["request_id"] for d in docs)
