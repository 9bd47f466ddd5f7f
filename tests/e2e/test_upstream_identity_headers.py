"""What the upstream receives in the headers a policy sets, through real Envoy in both modes.

A policy's allow may set request headers an upstream trusts (deploy/policies/records.rego sets ``x-authz-policy``).
On a route or an answer where no policy sets it, a client's copy of the same header would reach the upstream
unchanged, so such a header belongs in ``headers_to_remove``. Envoy applies removals after additions, so the
service must then not name it for removal on an allow whose policy sets it (overwriting): the policy's value would
be removed with the client's.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.harness import Stack

SPOOF = {"x-authz-policy": "records", "x-user-id": "admin"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp(f"upstream-identity-{mode}"), mode)
    try:
        yield s.full(headers_to_remove=["x-user-id", "x-authz-policy"])
    finally:
        s.stop()


def test_policy_header_reaches_upstream_when_listed_for_removal(stack: Stack) -> None:
    alice = stack.token("read", subject="alice")
    resp = stack.get("/records/alice/profile", alice, headers=SPOOF)
    assert resp.status == 200, resp
    headers = resp.json()["headers"]
    assert headers.get("x-authz-policy") == "records", sorted(headers)
    assert "x-user-id" not in headers, headers


def test_client_copy_of_a_policy_header_never_reaches_upstream_without_policy(stack: Stack) -> None:
    resp = stack.get("/httpbin/anything", stack.token("read"), headers={"x-authz-policy": "forged"})
    assert resp.status == 200, resp
    assert "x-authz-policy" not in resp.json()["headers"], resp.json()["headers"]


def test_client_copy_of_a_policy_header_never_reaches_upstream_on_a_disabled_route(stack: Stack) -> None:
    resp = stack.get("/public/anything", headers={"x-authz-policy": "forged"})
    assert resp.status == 200, resp
    assert "x-authz-policy" not in resp.json()["headers"], resp.json()["headers"]
