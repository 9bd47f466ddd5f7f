"""Whatever an AS answers outside its dialect is a 502 (or a 503 for outages) naming the AS, never an allow or 401.

One phantom-authz (in process), one named authorization server per misbehaviour, each route picking one with ``as``;
its log lines are read with ``caplog``.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from authz.logs import token_id
from tests.fake_as import BEHAVIOURS, FakeAS
from tests.harness import Stack
from tests.log_lines import json_lines, stream_text
from tests.service.test_grpc_service import call, check_request, target

DIALECT = {"truncated_json": "rfc7662"}


@pytest.fixture(scope="module")
def bad_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Stack, FakeAS]]:
    fake = FakeAS().start()
    s = Stack(tmp_path_factory.mktemp("bad-as"))
    servers = {
        name: {
            "dialect": DIALECT.get(name, "phantom"),
            "introspection_endpoint": f"http://127.0.0.1:{fake.port}/introspect/{name}",
            "client_id": "gateway-client",
            "client_secret_env": "TEST_GATEWAY_SECRET",
            "issuer": "http://fake-as",
            "jwks_uri": f"http://127.0.0.1:{fake.port}/jwks",
            "audiences": ["api"],
            "max_response_bytes": 65536,
            "timeout_seconds": 2,
        }
        for name in BEHAVIOURS
    }
    try:
        s.start_authz(authorization_servers=servers, default_authorization_server="ok", in_process=True)
        yield s, fake
    finally:
        s.stop()
        fake.stop()


@pytest.mark.parametrize(("behaviour", "status"), [
    ("html", 502), ("wrong_content_type", 502), ("truncated_json", 502), ("alg_none", 502), ("huge", 502),
    ("redirect", 502), ("unauthorized", 502), ("hs256_with_public_key", 502),
    ("server_error", 503), ("rate_limited", 503), ("expired", 401),
])
def test_bad_answer_is_denied_with_status_and_logged_with_as_name(bad_stack: tuple[Stack, FakeAS], behaviour: str,
                                                                 status: int, caplog: pytest.LogCaptureFixture) -> None:
    s, fake = bad_stack
    response = call(target(s), check_request("Bearer some-opaque-token", **{"as": behaviour}))
    assert response.status.code != 0, "must never allow"
    assert response.denied_response.status.code == status
    assert fake.calls.get(behaviour, 0) >= 1
    if status != 401:
        assert f"AS {behaviour}:" in caplog.text


def test_rate_limited_as_passes_its_retry_after_on(bad_stack: tuple[Stack, FakeAS]) -> None:
    s, _ = bad_stack
    response = call(target(s), check_request("Bearer some-opaque-token", **{"as": "rate_limited"}))
    headers = {h.header.key: h.header.value for h in response.denied_response.headers}
    assert headers["retry-after"] == "17"


def test_route_without_as_uses_the_default_and_allows(bad_stack: tuple[Stack, FakeAS]) -> None:
    s, _ = bad_stack
    response = call(target(s), check_request("Bearer some-opaque-token"))
    assert response.status.code == 0
    assert {h.header.key for h in response.ok_response.headers} == {"authorization"}


def test_raw_token_never_appears_in_logs(bad_stack: tuple[Stack, FakeAS], caplog: pytest.LogCaptureFixture) -> None:
    """Every record logged while checking (``caplog``, before any handler's filter of library records), written in
    both of the service's formats."""
    s, _ = bad_stack
    secret_token = "very-secret-opaque-token-1234567890"
    for behaviour in ("html", "expired", "server_error"):
        call(target(s), check_request(f"Bearer {secret_token}", **{"as": behaviour}))
    assert secret_token not in stream_text(caplog.records)
    denials = [line for line in json_lines(caplog.records, "authz.check") if line.get("outcome") == "deny"]
    assert len(denials) == 3 and {line["token_id"] for line in denials} == {token_id(secret_token)}  # by its hash
