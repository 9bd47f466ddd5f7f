"""What a policy reads of a request body, through real Envoy in both ext_authz modes: a client cannot hide its body
from the policy, and a body two parsers would read differently is refused before the policy."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from tests.harness import Stack


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, mode: str) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp(f"body-{mode}"), mode)
    try:
        yield s.full()
    finally:
        s.stop()


def _approve(stack: Stack, headers: dict[str, str], body: str) -> int:
    alice = stack.token("read approve", subject="alice")
    return stack.get("/records/bob/transactions/t1/approve", alice, method="POST",
                     headers={"Content-Type": "application/json", **headers}, body=body).status


def test_client_sent_partial_body_mark_does_not_hide_the_body(stack: Stack) -> None:
    """records.rego takes the creator from the body, else from a header: a client that says its (complete, small)
    body was cut must not make the policy read the header instead."""
    body = json.dumps({"created_by": "alice"})
    assert _approve(stack, {}, body) == 403  # separation of duty
    assert _approve(stack, {"X-Envoy-Auth-Partial-Body": "true", "X-Transaction-Creator": "carol"}, body) == 403


def test_repeated_json_key_is_400(stack: Stack) -> None:
    assert _approve(stack, {}, '{"created_by": "alice", "created_by": "carol"}') == 400
