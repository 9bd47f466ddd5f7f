"""Full decision logs never carry a credential: the forwarded JWT and every credential header are erased wherever
the input holds headers (the ``headers`` map, and ``headerMap`` entries with ``value`` or base64 ``rawValue`` when
Envoy sends ``encode_raw_headers``), in any letter case, whatever ``decision_log_mask`` says.

Requests are real CheckRequests through the real policy stage, input builder and embedded engine; the policy reads
all of ``attributes.request.http``, so the logged input holds every header the request had.
"""

from __future__ import annotations

import base64
import logging
from pathlib import Path
from typing import Any

import pytest
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.config import DEFAULT_MASK, PolicyConfig
from authz.models import Identity
from authz.policy.decision_log import CREDENTIAL_HEADERS, DecisionLogger, erase_credentials
from authz.policy.embedded import EmbeddedEngine
from authz.policy.stage import PolicyStage
from authz.transport.grpc_request import request_info
from tests.log_lines import json_lines, stream_text

JWT = "eyJhbGciOiJSUzI1NiIsImtpZCI6ImsxIn0.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLWJ5dGVzLWZvci1sb2c"
OPAQUE = "opaque-5b0e6f2d4a-NEVER-LOGGED"
SECRETS = {
    "Cookie": "session=cookie-secret-81f2",
    "Proxy-Authorization": "Basic cHJveHktdXNlcjpwcm94eS1zZWNyZXQtNzc=",
    "DPoP": "eyJ0eXAiOiJkcG9wK2p3dCJ9.dpop-proof-secret-3c1",
    "X-Api-Key": "api-key-secret-9d4e",
    "X-Custom-Credential": "custom-secret-6a0b",
}
IDENTITY = Identity(jwt=JWT, claims={"sub": "alice", "scope": "read"}, scopes=frozenset({"read"}), subject="alice",
                    client_id="web", expires_at=4_000_000_000)
POLICY = """package app
import rego.v1

default allow := false

allow if {
	http := input.attributes.request.http
	http.method == "GET"
	token := input.token
	token.subject == "alice"
}
"""


def _variants(secret: str) -> list[str]:
    """The secret as it could appear in a log line: itself, and base64 at each of the three alignments (a
    ``rawValue`` holds ``Bearer <jwt>`` or ``name=value`` base64-encoded)."""
    found = [secret]
    for prefix in ("", "x", "xx"):
        encoded = base64.b64encode((prefix + secret).encode()).decode()
        skip = {"": 0, "x": 2, "xx": 3}[prefix]  # characters still mixed with the prefix's bits
        found.append(encoded[skip:len(encoded) - 4])
    return [f for f in found if len(f) >= 12]


def leaks(text: str, secrets: list[str]) -> list[str]:
    return [s for s in secrets for v in _variants(s) if v in text]


def _request(raw: bool, upper: bool) -> CheckRequest:
    req = CheckRequest()
    http = req.attributes.request.http
    http.id, http.method, http.path, http.host = "r-1", "GET", "/orders/7", "api.example"
    headers = {":method": "GET", ":path": "/orders/7", ":authority": "api.example", "authorization": f"Bearer {OPAQUE}",
               "x-trace": "t-1", **SECRETS}
    for name, value in headers.items():
        name = name.upper() if upper and not name.startswith(":") else name.lower()
        if raw:
            http.header_map.headers.add(key=name, raw_value=value.encode())
        else:
            http.headers[name] = value
    req.attributes.context_extensions["policy"] = "app/allow"
    return req


def _stage(tmp_path: Path, **policy: Any) -> PolicyStage:
    (tmp_path / "app.rego").write_text(POLICY, encoding="utf-8")
    config = PolicyConfig(engine="embedded", paths=(str(tmp_path),), watch_interval_seconds=0, decision_log="full",
                          **{"decision_log_mask": DEFAULT_MASK, **policy})
    return PolicyStage(config, EmbeddedEngine(config.paths, 5.0))


def _logged(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return json_lines(caplog.records, "authz.decisions")


@pytest.mark.parametrize("raw", [True, False], ids=["encode_raw_headers", "headers_map"])
@pytest.mark.parametrize("upper", [False, True], ids=["lower", "upper"])
async def test_item05_full_decision_log_erases_credentials_in_every_header_form(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, raw: bool, upper: bool) -> None:
    stage = _stage(tmp_path, decision_log_mask_headers=("x-custom-credential",))
    with caplog.at_level(logging.INFO, logger="authz.decisions"):
        outcome = await stage.decide("app/allow", request_info(_request(raw, upper)), IDENTITY)
    assert outcome.decision is not None and outcome.decision.allowed
    assert leaks(stream_text(caplog.records), [JWT, OPAQUE, *SECRETS.values()]) == []
    (line,) = _logged(caplog)
    http = line["input"]["attributes"]["request"]["http"]
    if raw:
        kept = [e["key"] for e in http["headerMap"]["headers"]]
        assert [k.lower() for k in kept] == [":method", ":path", ":authority", "x-trace"]
        assert base64.b64decode(http["headerMap"]["headers"][3]["rawValue"]) == b"t-1"  # the rest is all there
    else:
        assert {k.lower() for k in http["headers"]} == {":method", ":path", ":authority", "x-trace"}
    assert "/input/token/jwt" in line["erased"] and len(line["erased"]) == 2 + len(SECRETS)  # + Authorization


async def test_item05_credentials_are_erased_even_when_decision_log_mask_leaves_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A configured mask replaces the default pointers, never the credential erasure."""
    stage = _stage(tmp_path, decision_log_mask=("/input/attributes/request/http/headers/x-trace",))
    with caplog.at_level(logging.INFO, logger="authz.decisions"):
        await stage.decide("app/allow", request_info(_request(raw=False, upper=False)), IDENTITY)
    (line,) = _logged(caplog)
    assert "/input/token/jwt" in line["erased"] and "/input/attributes/request/http/headers/x-trace" in line["erased"]
    assert leaks(stream_text(caplog.records), [JWT, OPAQUE, *list(SECRETS.values())[:-1]]) == []
    # not named anywhere: logged (the list is extensible)
    assert SECRETS["X-Custom-Credential"] in stream_text(caplog.records)


def test_item05_erase_credentials_reports_json_pointers() -> None:
    doc = {"input": {"attributes": {"request": {"http": {
        "headers": {"Authorization": "Bearer x", "accept": "*/*"},
        "headerMap": {"headers": [{"key": "accept", "value": "*/*"}, {"key": "COOKIE", "rawValue": "YT1i"},
                                  {"key": "set-cookie", "value": "a=b"}]}}}}}}
    names = frozenset(CREDENTIAL_HEADERS)
    assert erase_credentials(doc, names) == [
        "/input/attributes/request/http/headers/Authorization",
        "/input/attributes/request/http/headerMap/headers/1",
        "/input/attributes/request/http/headerMap/headers/2",
    ]
    assert doc["input"]["attributes"]["request"]["http"]["headerMap"]["headers"] == [{"key": "accept",
                                                                                       "value": "*/*"}]
    assert DecisionLogger("full", (), ("X-Mine",))._credential_headers >= {"x-mine", "authorization", "dpop"}
