"""The operator CLI (issue 15 item 6) against a real running service (dev AS + ``authz serve``): ``authz admin``
over the admin gRPC API, ``authz check`` as a real Check call (``--target``) and offline (``--config``), and
``bench-check`` refusing to report denials as throughput. Each command runs as the user runs it, a subprocess."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from devtools.processes import free_port
from tests.harness import GATEWAY_SECRET, Stack, wait_until
from tests.log_lines import parse_json_lines

RECORDS_RULE = {"name": "records", "match": {"paths": ["/records/{owner}/**"]}, "required_scopes": ["read"],
                "policy": "records/decision"}


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    s = Stack(tmp_path_factory.mktemp("operator-cli"))
    try:
        with s.together():
            s.start_dev_as()
            s.start_authz()
        yield s
    finally:
        s.stop()


def authz(*args: str, env: dict[str, str] | None = None, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "authz", *args], capture_output=True, text=True, timeout=60,
                          input=stdin, env={**os.environ, **(env or {})})


def admin(s: Stack, *args: str, env: dict[str, str] | None = None,
          stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return authz("admin", "--admin", f"127.0.0.1:{s.admin_port}", *args, env=env, stdin=stdin)


def check(s: Stack, token: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    env = {"AUTHZ_CHECK_TOKEN": token or "", "TEST_GATEWAY_SECRET": GATEWAY_SECRET}
    return authz("check", "--host", "api.example.com", *args, env=env)


def stats(s: Stack) -> dict[str, int]:
    done = admin(s, "stats", "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)  # type: ignore[no-any-return]


def cached(s: Stack, token: str) -> None:
    """Put ``token``'s answer in the cache with one allowed check."""
    done = check(s, token, "--target", f"127.0.0.1:{s.authz_port}", "--path", "/x", "--ext", "required_scopes=read")
    assert done.returncode == 0, done.stdout + done.stderr


def test_admin_stats_prints_the_cache_counters(service: Stack) -> None:
    done = admin(service, "stats")
    assert done.returncode == 0, done.stderr
    lines = dict(line.split(": ", 1) for line in done.stdout.splitlines())
    assert {"entries", "negative_entries", "hits", "misses", "max_entries", "redis_enabled"} <= set(lines)
    assert lines["redis_enabled"] == "false"
    assert isinstance(stats(service)["max_entries"], int)


def test_admin_evict_token_reads_the_token_from_the_environment_or_stdin(service: Stack) -> None:
    for how in ("env", "stdin"):
        token = service.token("read")
        cached(service, token)
        before = stats(service)["entries"]
        if how == "env":
            done = admin(service, "evict-token", env={"AUTHZ_EVICT_TOKEN": token})
        else:
            done = admin(service, "evict-token", "--stdin", stdin=token + "\n")
        assert done.returncode == 0, done.stderr
        assert done.stdout.startswith("evicted 1 cache entries") and token not in done.stdout + done.stderr
        assert stats(service)["entries"] == before - 1


def test_admin_evict_token_by_the_id_the_logs_show(service: Stack) -> None:
    token = service.token("read")
    cached(service, token)
    token_id = hashlib.sha256(token.encode()).hexdigest()[:12]
    done = admin(service, "evict-token", "--token-id", token_id.upper())
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"evicted 1 cache entries: token id {token_id}"


def test_admin_never_takes_a_token_as_an_argument(service: Stack) -> None:
    assert admin(service, "evict-token", "--token", "abc").returncode == 2  # no such option
    missing = admin(service, "evict-token", env={"AUTHZ_EVICT_TOKEN": ""})
    assert missing.returncode == 2 and "AUTHZ_EVICT_TOKEN" in missing.stderr
    bad_id = admin(service, "evict-token", "--token-id", "not-hex")
    assert bad_id.returncode == 2 and "12 hex digits" in bad_id.stderr


def test_admin_evict_subject_and_purge(service: Stack) -> None:
    cached(service, service.token("read", subject="carol"))
    done = admin(service, "evict-subject", "carol")
    assert done.returncode == 0 and done.stdout.strip() == "evicted 1 cache entries: subject 'carol'", done
    cached(service, service.token("read"))
    purged = admin(service, "purge")
    assert purged.returncode == 0 and purged.stdout.startswith("evicted "), purged
    assert stats(service)["entries"] == 0


def test_admin_against_nothing_listening_fails_with_1() -> None:
    done = authz("admin", "--admin", f"127.0.0.1:{free_port()}", "--timeout", "2", "stats")
    assert done.returncode == 1 and "UNAVAILABLE" in done.stderr, done


def test_check_target_allows_and_shows_what_the_upstream_gets(service: Stack) -> None:
    token = service.token("read")
    done = check(service, token, "--target", f"127.0.0.1:{service.authz_port}", "--path", "/orders/7",
                 "--ext", "required_scopes=read")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "decision: ALLOW" in out and "upstream gets authorization: Bearer <credential, " in out, out
    assert "client_id=demo-client" in out and "scope=read" in out, out
    assert f"token: id {hashlib.sha256(token.encode()).hexdigest()[:12]}" in out
    assert token not in out and "eyJ" not in out  # neither the token nor the JWT


def test_check_target_denial_and_its_request_id_in_the_service_log(service: Stack) -> None:
    done = check(service, service.token("read"), "--target", f"127.0.0.1:{service.authz_port}",
                 "--path", "/admin/x", "--ext", "required_scopes=admin")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "decision: DENY 403" in done.stdout and 'scope="admin"' in done.stdout, done.stdout
    request_id = next(line for line in done.stdout.splitlines() if line.startswith("request id: ")).split()[2]
    assert service.authz is not None
    log_path = service.authz.log_path

    def denied() -> list[dict[str, object]]:
        return [line for line in parse_json_lines(log_path.read_text()) if line.get("request_id") == request_id]

    wait_until(denied, "the service's deny line for the CLI's request id")
    (line,) = denied()
    assert line["reason"] == "insufficient_scope" and line["status"] == 403, line


def test_check_target_unreachable_is_2() -> None:
    done = authz("check", "--target", f"127.0.0.1:{free_port()}", "--timeout", "2", "--host", "h", "--path", "/")
    assert done.returncode == 2 and "UNAVAILABLE" in done.stderr, done


def test_check_refuses_a_token_in_the_arguments(service: Stack) -> None:
    done = check(service, None, "--target", f"127.0.0.1:{service.authz_port}", "--path", "/",
                 "--header", "Authorization=Bearer abc")
    assert done.returncode == 2 and "AUTHZ_CHECK_TOKEN" in done.stderr, done


def _config(s: Stack, tmp_path: Path, **overrides: object) -> str:
    path = tmp_path / "check.yaml"
    path.write_text(yaml.safe_dump(s.authz_config(**overrides)))
    return str(path)


def test_check_offline_explains_the_rule_scopes_and_policy(service: Stack, tmp_path: Path) -> None:
    config = _config(service, tmp_path, routes={"rules": [RECORDS_RULE], "default": "deny"})
    alice = service.token("read", subject="alice")
    before = service.as_stats()["introspections"]
    allowed = check(service, alice, "--config", config, "--path", "/records/alice/profile")
    assert allowed.returncode == 0, allowed.stdout + allowed.stderr
    out = allowed.stdout
    assert "route: rule records (params owner=alice)" in out and "required scopes: read" in out, out
    assert "policy: records/decision" in out and "token holder: subject alice, client demo-client, scopes read" in out
    assert "policy records/decision: allowed (decision id " in out and "decision: ALLOW" in out, out
    assert "upstream gets x-authz-policy: records" in out and alice not in out, out
    assert service.as_stats()["introspections"] == before + 1  # offline still asks the configured AS
    denied = check(service, alice, "--config", config, "--path", "/records/bob/profile")
    assert denied.returncode == 1, denied.stdout + denied.stderr
    assert "why: policy_denied" in denied.stdout and "decision: DENY 403" in denied.stdout, denied.stdout
    unmatched = check(service, alice, "--config", config, "--path", "/orders/1")
    assert unmatched.returncode == 1 and "why: no_route_rule" in unmatched.stdout, unmatched.stdout


def test_check_offline_names_the_missing_scope(service: Stack, tmp_path: Path) -> None:
    config = _config(service, tmp_path)
    done = check(service, service.token("read"), "--config", config, "--path", "/x", "--ext", "required_scopes=admin")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "route: the service defaults (no route rule)" in done.stdout and "required scopes: admin" in done.stdout
    assert "scopes required: admin; missing: admin" in done.stdout, done.stdout
    no_token = check(service, None, "--config", config, "--path", "/x")
    assert no_token.returncode == 1 and "token: none" in no_token.stdout, no_token.stdout
    assert "why: missing_credential" in no_token.stdout and "decision: DENY 401" in no_token.stdout


def test_check_offline_config_error_is_2(tmp_path: Path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("bogus: 1\n")
    done = authz("check", "--config", str(bad), "--host", "h", "--path", "/")
    assert done.returncode == 2 and "config error" in done.stderr, done


def bench(s: Stack, token: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "devtools.bench_check", "--target", f"127.0.0.1:{s.authz_port}",
                           "-n", "5", "--warmup", "0", *args], env={**os.environ, "AUTHZ_BENCH_TOKEN": token},
                          capture_output=True, text=True, timeout=60)


def test_bench_check_refuses_to_report_denials_as_throughput(service: Stack) -> None:
    token = service.token("read")
    refused = bench(service, token, "--ext", "required_scopes=admin")
    assert refused.returncode == 1 and "Denials are not throughput" in refused.stderr, refused
    assert "rate" not in refused.stdout
    measured = bench(service, token, "--ext", "required_scopes=admin", "--allow-denials")
    assert measured.returncode == 0 and "outcomes {403: 5}" in measured.stdout and "rate" in measured.stdout
    allowed = bench(service, token, "--ext", "required_scopes=read")
    assert allowed.returncode == 0 and "outcomes {200: 5}" in allowed.stdout, allowed
