"""The policy stage as an operator meets it: start-up refuses broken policies, SIGHUP reloads atomically, slow or
failing policies give the OPA-failure status — never an allow. phantom-authz runs in process (``tests/inprocess.py``)
except in the tests of the CLI's refusal and of SIGHUP, which need the ``authz serve`` process."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from devtools.processes import Process, free_port
from tests.harness import Stack, wait_until
from tests.log_lines import json_lines
from tests.service.test_grpc_service import call, check_request, target

ALLOW_GET = """package demo
import rego.v1
default allow := false
allow if input.attributes.request.http.method == "GET"
"""
DENY_ALL = """package demo
import rego.v1
default allow := false
"""
SLOW = """package demo
import rego.v1
allow if count([x | some x in numbers.range(1, 3000000); x % 7 == 0]) > 0
"""


def policy_stack(factory: type[Stack], policy_dir: Path, in_process: bool = True, **policy: object) -> Stack:
    s = factory()
    with s.together():
        s.start_dev_as()
        s.start_authz(policy={"paths": [str(policy_dir)], "watch_interval_seconds": 0, **policy},
                      in_process=in_process)
    return s


def decide(s: Stack, token: str) -> int:
    response = call(target(s), check_request(f"Bearer {token}", policy="demo/allow"))
    return 200 if response.status.code == 0 else int(response.denied_response.status.code)


def test_broken_policy_stops_the_start_naming_file_and_line(tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "broken.rego").write_text("package demo\nimport rego.v1\nallow if {\n  input.x ==\n}\n")
    config = tmp_path / "authz.yaml"
    config.write_text(yaml.safe_dump({
        "authorization_servers": {"a": {"dialect": "rfc7662", "introspection_endpoint": "http://127.0.0.1:9/i",
                                        "client_id": "c", "client_secret_env": "S"}},
        "policy": {"paths": [str(tmp_path / "p")]}}))
    done = subprocess.run([sys.executable, "-m", "authz", "serve", "--config", str(config)], capture_output=True,
                          text=True, timeout=30, env={"S": "x", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "broken.rego" in lines[0] and ":5:" in lines[0], lines[0]


def test_sighup_reloads_and_a_broken_update_keeps_the_old_policy(stack_factory: type[Stack], tmp_path: Path) -> None:
    policy = tmp_path / "policies" / "demo.rego"
    policy.parent.mkdir()
    policy.write_text(ALLOW_GET)
    s = policy_stack(stack_factory, policy.parent, in_process=False)  # SIGHUP: the process's signal handler
    token = s.token("read")
    assert decide(s, token) == 200
    assert s.authz is not None
    policy.write_text(DENY_ALL)
    s.authz.signal(signal.SIGHUP)
    wait_until(lambda: decide(s, token) == 403, "SIGHUP reloads the policy", timeout=5)
    policy.write_text("package demo\nallow if {{{\n")
    s.authz.signal(signal.SIGHUP)
    authz = s.authz
    wait_until(lambda: "policy reload failed" in authz.log_tail(50), "the broken reload is logged")
    assert decide(s, token) == 403  # the previous (valid) policy still decides
    assert "policy reload failed, keeping the policies loaded before" in s.authz.log_tail(50)


def test_file_watch_reloads_without_a_signal(stack_factory: type[Stack], tmp_path: Path) -> None:
    policy = tmp_path / "policies" / "demo.rego"
    policy.parent.mkdir()
    policy.write_text(ALLOW_GET)
    s = policy_stack(stack_factory, policy.parent, watch_interval_seconds=0.1)
    token = s.token("read")
    assert decide(s, token) == 200
    policy.write_text(DENY_ALL)
    wait_until(lambda: decide(s, token) == 403, "the watcher picks up the change", timeout=5)


def test_slow_embedded_policy_gets_the_failure_status(stack_factory: type[Stack], tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "slow.rego").write_text(SLOW)
    s = policy_stack(stack_factory, tmp_path / "p", timeout_seconds=0.05, failure_status=500)
    assert decide(s, s.token("read")) == 500


def test_slow_remote_opa_is_cut_off_by_the_timeout(stack_factory: type[Stack], tmp_path: Path) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "demo.rego").write_text(ALLOW_GET)
    s = stack_factory()
    opa_port = free_port()
    s._start(Process("opa-double", [sys.executable, "-m", "tests.opa_double", "--port", str(opa_port),
                                    "--policies", str(tmp_path / "p"), "--latency-ms", "2000"], opa_port, s.dir))
    with s.together():
        s.start_dev_as()
        s.start_authz(policy={"engine": "remote", "timeout_seconds": 0.2,
                              "remote": {"url": f"http://127.0.0.1:{opa_port}"}}, in_process=True)
    started = time.monotonic()
    assert decide(s, s.token("read")) == 503
    assert time.monotonic() - started < 1.5


def test_opa_down_is_the_failure_status_never_an_allow(stack_factory: type[Stack]) -> None:
    s = stack_factory()
    with s.together():
        s.start_dev_as()
        s.start_authz(policy={"engine": "remote", "remote": {"url": f"http://127.0.0.1:{free_port()}"}},
                      in_process=True)
    assert decide(s, s.token("read")) == 503


def test_dry_run_allows_but_logs_the_denial(stack_factory: type[Stack], tmp_path: Path,
                                            caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "p").mkdir()
    (tmp_path / "p" / "demo.rego").write_text(DENY_ALL)
    s = policy_stack(stack_factory, tmp_path / "p", dry_run=True)
    assert decide(s, s.token("read")) == 200
    (decision,) = json_lines(caplog.records, "authz.decisions")  # the line the service writes, read from its record
    assert decision["result"]["allowed"] is False and decision["dry_run"] is True

