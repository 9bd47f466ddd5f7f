"""A reload is applied whole or not at all: when building the new pipeline fails, the running one keeps everything it
had — its authorization servers' clients and its policy engine's file watch — not only the transports' pointer to it.

The failure is injected (``authz.app.Authorizer`` raising once the service runs): no valid configuration makes the
constructor raise today, so this is the only way to reach the path; what the test watches is what a user would see,
a policy edited after the failed reload still taking effect."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from authz import app as authz_app
from authz.config import Config, load_config
from tests.harness import GATEWAY_SECRET, Stack, wait_until
from tests.inprocess import InProcessAuthz
from tests.service.test_grpc_service import call, check_request, target

GATE = "package gate\n\nimport rego.v1\n\ndefault allow := {}\n"


def _gate(policies: Path, allow: bool) -> None:
    (policies / "gate.rego").write_text(GATE.format("true" if allow else "false"), encoding="utf-8")


def _allowed(s: Stack, token: str) -> bool:
    return bool(call(target(s), check_request(f"Bearer {token}", policy="gate/allow")).status.code == 0)


def _failure(reconfigure: Callable[[Config], None], config: Config) -> str:
    """What ``reconfigure`` raised, as text: the error, and with it the half-built pipeline its traceback holds, is
    dropped here, on the server's thread (regorus engines may only be dropped on the thread that made them)."""
    try:
        reconfigure(config)
    except RuntimeError as exc:
        return str(exc)
    return "applied"


def test_a_reload_that_fails_to_build_keeps_the_running_policy_watched(stack_factory: type[Stack], tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    policies = tmp_path / "policies"
    policies.mkdir()
    _gate(policies, allow=True)
    s = stack_factory()
    s.start_dev_as()
    policy = {"paths": [str(policies)], "watch_interval_seconds": 0.1, "decision_log": "off"}
    authz = s.start_authz(in_process=True, policy=policy)
    assert isinstance(authz, InProcessAuthz)
    running = authz.on_loop(lambda server: server.authorizer)
    token = s.token("read")
    assert _allowed(s, token)

    def refused(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("building the pipeline failed")

    monkeypatch.setattr(authz_app, "Authorizer", refused)
    changed = load_config(s.dir / "authz.yaml", {"TEST_GATEWAY_SECRET": GATEWAY_SECRET})
    changed = changed.model_copy(update={"policy": changed.policy.model_copy(update={"timeout_seconds": 0.4})})
    # a new policy stage: a new engine, its own watch (the reloader logs the failure and keeps going)
    assert authz.on_loop(lambda server: _failure(server.reconfigure, changed)) == "building the pipeline failed"
    monkeypatch.undo()
    assert authz.on_loop(lambda server: server.authorizer) is running

    _gate(policies, allow=False)  # the operator tightens the policy the running pipeline uses
    wait_until(lambda: not _allowed(s, token), "the running engine reloads its edited policy")
