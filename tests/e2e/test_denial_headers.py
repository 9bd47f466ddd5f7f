"""README "What the client sees": every denial a client gets through real Envoy, in both ext_authz modes, carries
``content-type: application/json``, ``cache-control: no-store`` (no shared cache may keep a refusal), the RFC 6750
challenge and a JSON body whose ``error`` is the table's, and never the token it refused."""

from __future__ import annotations

import pytest

from tests.harness import Stack

UNKNOWN_TOKEN = "opaque-token-nobody-issued-4f1c9a"


@pytest.mark.parametrize(("path", "credential", "status", "error", "challenge"), [
    ("/httpbin/get", None, 401, "unauthorized", 'Bearer realm="api"'),
    ("/httpbin/get", "Bearer two tokens", 400, "invalid_request", 'error="invalid_request"'),
    ("/httpbin/get", f"Bearer {UNKNOWN_TOKEN}", 401, "invalid_token", 'error="invalid_token"'),
    ("/admin/get", "read", 403, "insufficient_scope", 'scope="admin"'),
], ids=["no-token", "malformed", "inactive", "scope"])
def test_a_denial_is_uncacheable_json_with_its_challenge(stack: Stack, path: str, credential: str | None,
                                                          status: int, error: str, challenge: str) -> None:
    headers: dict[str, str] = {}
    token = UNKNOWN_TOKEN
    if credential == "read":
        token = stack.token("read")
        headers["Authorization"] = f"Bearer {token}"
    elif credential is not None:
        headers["Authorization"] = credential
    resp = stack.get(path, headers=headers)
    assert resp.status == status, resp
    assert resp.headers["content-type"] == "application/json", resp
    assert resp.headers["cache-control"] == "no-store", resp
    assert challenge in resp.headers["www-authenticate"], resp
    assert resp.json()["error"] == error, resp
    assert token not in resp.body.decode() and token not in str(resp.headers), resp
