"""EmbeddedEngine: Rego v1 evaluated in process by regorus, loaded from files and directories, reloaded and watched.

Every test writes its own policies to ``tmp_path``; evaluation goes through the engine's public ``evaluate`` (decision
reuse, which the policy stage keys, through ``PolicyStage``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
from pathlib import Path

import pytest
import yaml
from envoy.service.auth.v3.external_auth_pb2 import CheckRequest

from authz.config import PolicyConfig
from authz.errors import PolicyDenied, PolicyFailed
from authz.policy.embedded import EmbeddedEngine
from authz.policy.engine import Evaluation, PolicyEvaluationError, PolicyLoadError
from authz.policy.stage import PolicyStage
from authz.transport.grpc_request import request_info

ALLOW_ADMIN = """package app
import rego.v1

default allow := false

allow if input.user == "admin"
"""

ALLOW_ANYONE = """package app
import rego.v1

default allow := false

allow if input.user != ""
"""


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _bump_mtime(path: Path) -> None:
    """Make sure the watcher sees a change even on file systems with coarse timestamps."""
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 2_000_000_000))


async def _result(engine: EmbeddedEngine, path: str, policy_input: dict[str, object] | None = None) -> object:
    return (await engine.evaluate(path, policy_input or {})).result


async def _eventually(predicate: object, within: float = 2.0) -> bool:
    """Poll an async predicate until it holds or ``within`` seconds pass."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while loop.time() < deadline:
        if await predicate():  # type: ignore[operator]
            return True
        await asyncio.sleep(0.02)
    return bool(await predicate())  # type: ignore[operator]


# --- loading ----------------------------------------------------------------------------------------------------------


async def test_single_rego_file_is_loaded_and_evaluated(tmp_path: Path) -> None:
    policy = _write(tmp_path / "app.rego", ALLOW_ADMIN)
    engine = EmbeddedEngine((str(policy),), timeout_seconds=5.0)
    assert await _result(engine, "app/allow", {"user": "admin"}) is True
    assert await _result(engine, "app/allow", {"user": "eve"}) is False


async def test_evaluate_returns_the_rule_value_and_a_fresh_decision_id(tmp_path: Path) -> None:
    _write(tmp_path / "p.rego", """package app
import rego.v1

decision := {"allowed": true, "headers": {"x-user": input.user}, "n": 3}
""")
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    first = await engine.evaluate("app/decision", {"user": "alice"})
    second = await engine.evaluate("app/decision", {"user": "alice"})
    assert isinstance(first, Evaluation)
    assert first.result == {"allowed": True, "headers": {"x-user": "alice"}, "n": 3}
    assert isinstance(first.decision_id, str) and first.decision_id
    assert first.decision_id != second.decision_id


async def test_directories_are_loaded_recursively(tmp_path: Path) -> None:
    _write(tmp_path / "policies" / "top.rego", """package top
import rego.v1

allow if data.nested.deep.ok
""")
    _write(tmp_path / "policies" / "sub" / "dir" / "deep.rego", """package nested.deep
import rego.v1

ok if input.x == 1
""")
    _write(tmp_path / "policies" / "README.md", "not a policy {{{")  # other files are ignored
    engine = EmbeddedEngine((str(tmp_path / "policies"),), timeout_seconds=5.0)
    assert await _result(engine, "top/allow", {"x": 1}) is True
    with pytest.raises(PolicyEvaluationError):
        await engine.evaluate("top/allow", {"x": 2})  # no default: undefined


async def test_several_configured_paths_are_combined(tmp_path: Path) -> None:
    a = _write(tmp_path / "a" / "a.rego", "package a\nimport rego.v1\n\nv := 1\n")
    _write(tmp_path / "b" / "b.rego", "package b\nimport rego.v1\n\nv := data.a.v + 1\n")
    engine = EmbeddedEngine((str(a), str(tmp_path / "b")), timeout_seconds=5.0)
    assert await _result(engine, "b/v") == 2


async def test_data_json_in_a_subdirectory_lands_under_its_path(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    _write(root / "authz.rego", """package authz
import rego.v1

allow if input.role in data.a.b.roles
top := data.level
""")
    _write(root / "a" / "b" / "data.json", json.dumps({"roles": ["admin", "ops"]}))
    _write(root / "data.json", json.dumps({"level": "root"}))
    engine = EmbeddedEngine((str(root),), timeout_seconds=5.0)
    assert await _result(engine, "authz/allow", {"role": "ops"}) is True
    with pytest.raises(PolicyEvaluationError):
        await engine.evaluate("authz/allow", {"role": "guest"})
    assert await _result(engine, "authz/top") == "root"


async def test_data_yaml_is_loaded_with_placement(tmp_path: Path) -> None:
    root = tmp_path / "bundle"
    _write(root / "p.rego", """package p
import rego.v1

limit := data.config.limits.max
names := data.config.names
""")
    _write(root / "config" / "data.yaml", yaml.safe_dump({"limits": {"max": 10}, "names": ["x", "y"]}))
    engine = EmbeddedEngine((str(root),), timeout_seconds=5.0)
    assert await _result(engine, "p/limit") == 10
    assert await _result(engine, "p/names") == ["x", "y"]


async def test_rego_v1_syntax_if_contains_every(tmp_path: Path) -> None:
    _write(tmp_path / "v1.rego", """package v1
import rego.v1

big contains n if {
    some n in input.numbers
    n > 2
}

all_positive if {
    every n in input.numbers {
        n > 0
    }
}

first_big := x if {
    some x in input.numbers
    x > 2
}
""")
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    big = await _result(engine, "v1/big", {"numbers": [1, 3, 5]})
    assert sorted(big) == [3, 5]  # type: ignore[call-overload]
    assert await _result(engine, "v1/all_positive", {"numbers": [1, 3, 5]}) is True
    with pytest.raises(PolicyEvaluationError, match="undefined"):
        await engine.evaluate("v1/all_positive", {"numbers": [1, -3]})
    assert await _result(engine, "v1/first_big", {"numbers": [1, 3]}) == 3


def test_unparseable_policy_names_file_and_line(tmp_path: Path) -> None:
    _write(tmp_path / "good.rego", ALLOW_ADMIN)
    bad = _write(tmp_path / "broken.rego", "package broken\nimport rego.v1\n\nallow if {\n    input.a ==\n}\n")
    with pytest.raises(PolicyLoadError) as info:
        EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    message = str(info.value)
    assert str(bad) in message
    assert re.search(r"broken\.rego:6\b", message), message


def test_unparseable_policy_error_says_what_is_wrong(tmp_path: Path) -> None:
    _write(tmp_path / "broken.rego", "package broken\nimport rego.v1\n\nallow if {\n    input.a ==\n}\n")
    with pytest.raises(PolicyLoadError) as info:
        EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    assert "expecting expression" in str(info.value)


def test_missing_path_is_a_load_error(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(PolicyLoadError, match=re.escape(str(missing))):
        EmbeddedEngine((str(missing),), timeout_seconds=5.0)


def test_directory_without_rego_files_is_a_load_error(tmp_path: Path) -> None:
    _write(tmp_path / "data.json", "{}")
    _write(tmp_path / "notes.txt", "hello")
    with pytest.raises(PolicyLoadError, match=r"no \.rego files"):
        EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)


def test_data_file_that_is_not_an_object_is_a_load_error(tmp_path: Path) -> None:
    _write(tmp_path / "p.rego", ALLOW_ADMIN)
    data = _write(tmp_path / "x" / "data.json", "[1, 2]")
    with pytest.raises(PolicyLoadError, match=re.escape(str(data))):
        EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)


def test_data_file_that_does_not_parse_is_a_load_error(tmp_path: Path) -> None:
    _write(tmp_path / "p.rego", ALLOW_ADMIN)
    data = _write(tmp_path / "data.json", '{"a": ')
    with pytest.raises(PolicyLoadError, match=re.escape(str(data))):
        EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)


# --- evaluation errors ------------------------------------------------------------------------------------------------


async def test_undefined_decision_is_an_evaluation_error(tmp_path: Path) -> None:
    _write(tmp_path / "p.rego", "package p\nimport rego.v1\n\nallow if input.ok\n")
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    with pytest.raises(PolicyEvaluationError, match="undefined"):
        await engine.evaluate("p/allow", {"ok": False})
    with pytest.raises(PolicyEvaluationError, match="undefined"):
        await engine.evaluate("p/no_such_rule", {})
    with pytest.raises(PolicyEvaluationError, match="undefined"):
        await engine.evaluate("no/such/package", {})


async def test_divide_by_zero_is_an_evaluation_error(tmp_path: Path) -> None:
    _write(tmp_path / "p.rego", "package p\nimport rego.v1\n\nratio := 1 / input.z\n")
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    assert await _result(engine, "p/ratio", {"z": 4}) == 0.25
    with pytest.raises(PolicyEvaluationError, match="p/ratio"):
        await engine.evaluate("p/ratio", {"z": 0})


async def test_builtin_called_with_wrong_type_is_an_evaluation_error(tmp_path: Path) -> None:
    _write(tmp_path / "p.rego", "package p\nimport rego.v1\n\nshout := upper(input.name)\n")
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    assert await _result(engine, "p/shout", {"name": "bob"}) == "BOB"
    with pytest.raises(PolicyEvaluationError):
        await engine.evaluate("p/shout", {"name": 5})


async def test_slow_decision_is_discarded_after_the_timeout(tmp_path: Path) -> None:
    _write(tmp_path / "slow.rego", """package slow
import rego.v1

allow if count([x | some x in numbers.range(1, input.n); x > 0]) > 0
""")
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=0.01)
    assert await _result(engine, "slow/allow", {"n": 3}) is True  # fast: within the timeout
    with pytest.raises(PolicyEvaluationError, match="timeout"):
        await engine.evaluate("slow/allow", {"n": 300_000})


# --- reload -----------------------------------------------------------------------------------------------------------


async def test_reload_picks_up_an_edited_policy(tmp_path: Path) -> None:
    policy = _write(tmp_path / "app.rego", ALLOW_ADMIN)
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    assert await _result(engine, "app/allow", {"user": "bob"}) is False
    assert engine.generation == 1
    _write(policy, ALLOW_ANYONE)
    assert engine.reload() is True
    assert await _result(engine, "app/allow", {"user": "bob"}) is True
    assert engine.generation == 2


async def test_reload_picks_up_edited_data(tmp_path: Path) -> None:
    _write(tmp_path / "p.rego", "package p\nimport rego.v1\n\nallow if input.user in data.users.names\n")
    data = _write(tmp_path / "users" / "data.json", json.dumps({"names": ["alice"]}))
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    with pytest.raises(PolicyEvaluationError):
        await engine.evaluate("p/allow", {"user": "bob"})
    _write(data, json.dumps({"names": ["alice", "bob"]}))
    assert engine.reload() is True
    assert await _result(engine, "p/allow", {"user": "bob"}) is True


async def test_reload_with_a_broken_file_keeps_the_old_policy(tmp_path: Path,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    policy = _write(tmp_path / "app.rego", ALLOW_ADMIN)
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    _write(policy, "package app\nimport rego.v1\n\nallow if {\n")
    with caplog.at_level(logging.ERROR, logger="authz.policy.embedded"):
        assert engine.reload() is False
    assert await _result(engine, "app/allow", {"user": "admin"}) is True
    assert await _result(engine, "app/allow", {"user": "bob"}) is False
    assert engine.generation == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "authz.policy.embedded"]
    assert len(errors) == 1
    assert str(policy) in errors[0].getMessage()

    _write(policy, ALLOW_ANYONE)  # fixed: the next reload succeeds
    assert engine.reload() is True
    assert engine.generation == 2
    assert await _result(engine, "app/allow", {"user": "bob"}) is True


async def test_reload_after_the_policies_vanish_keeps_the_old_policy(tmp_path: Path) -> None:
    policy = _write(tmp_path / "app.rego", ALLOW_ADMIN)
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    policy.unlink()
    assert engine.reload() is False
    assert engine.generation == 1
    assert await _result(engine, "app/allow", {"user": "admin"}) is True


# --- watch ------------------------------------------------------------------------------------------------------------


async def test_watch_picks_up_an_edit(tmp_path: Path) -> None:
    policy = _write(tmp_path / "app.rego", ALLOW_ADMIN)
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    task = asyncio.create_task(engine.watch(0.05))
    try:
        await asyncio.sleep(0.12)
        assert engine.generation == 1  # nothing changed: no reload
        _write(policy, ALLOW_ANYONE + "\n# edited\n")
        _bump_mtime(policy)

        async def allows_bob() -> bool:
            return await _result(engine, "app/allow", {"user": "bob"}) is True

        assert await _eventually(allows_bob)
        assert engine.generation == 2
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_watch_picks_up_added_and_removed_files(tmp_path: Path) -> None:
    _write(tmp_path / "app.rego", ALLOW_ADMIN)
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    task = asyncio.create_task(engine.watch(0.05))

    async def extra_defined() -> bool:
        try:
            await engine.evaluate("extra/flag", {})
        except PolicyEvaluationError:
            return False
        return True

    async def extra_gone() -> bool:
        return not await extra_defined()

    try:
        assert not await extra_defined()
        extra = _write(tmp_path / "more" / "extra.rego", "package extra\nimport rego.v1\n\nflag := true\n")
        assert await _eventually(extra_defined)
        assert engine.generation == 2
        extra.unlink()
        assert await _eventually(extra_gone)
        assert engine.generation == 3
        assert await _result(engine, "app/allow", {"user": "admin"}) is True
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_watch_does_not_count_a_broken_edit_as_a_generation(tmp_path: Path,
                                                                  caplog: pytest.LogCaptureFixture) -> None:
    policy = _write(tmp_path / "app.rego", ALLOW_ADMIN)
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    task = asyncio.create_task(engine.watch(0.05))
    try:
        with caplog.at_level(logging.ERROR, logger="authz.policy.embedded"):
            _write(policy, "package app\n\nallow if {{{\n")
            _bump_mtime(policy)

            async def failed_logged() -> bool:
                return any(r.name == "authz.policy.embedded" and r.levelno >= logging.ERROR for r in caplog.records)

            assert await _eventually(failed_logged)
            await asyncio.sleep(0.2)  # several more polls of the same broken file
        failures = [r for r in caplog.records if r.name == "authz.policy.embedded" and r.levelno >= logging.ERROR]
        assert len(failures) == 1  # the same broken files are not recompiled (and logged) on every poll
        assert engine.generation == 1
        assert await _result(engine, "app/allow", {"user": "admin"}) is True
        _write(policy, ALLOW_ANYONE)
        _bump_mtime(policy)

        async def reloaded() -> bool:
            return engine.generation == 2

        assert await _eventually(reloaded)
        assert await _result(engine, "app/allow", {"user": "bob"}) is True
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


# --- reusing decisions of deterministic policies (through the policy stage, which keys them) --------------------

HEADER_RULE = """package p
import rego.v1

default allow := false

allow if input.attributes.request.http.headers["x-team"] == data.team
"""


def _header(name: str) -> str:
    return f'to_number(input.attributes.request.http.headers["{name}"])'


async def _decide(engine: EmbeddedEngine, path: str, **headers: str) -> tuple[bool, str]:
    """(allowed, decision id) of one gRPC request carrying ``headers`` (``x_team`` is ``x-team``)."""
    check = CheckRequest()
    http = check.attributes.request.http
    http.method, http.path, http.host = "GET", "/x", "api.example"
    http.headers.update({k.replace("_", "-"): v for k, v in headers.items()})
    # the stage reads the decision log, dry-run and failure settings of its config, not the paths
    config = PolicyConfig(engine="embedded", paths=("unused",), watch_interval_seconds=0, decision_log="off")
    try:
        outcome = await PolicyStage(config, engine).decide(path, request_info(check), None)
    except PolicyDenied:
        return False, ""
    return True, outcome.decision_id


async def test_equal_inputs_reuse_the_decision_until_a_reload(tmp_path: Path) -> None:
    _write(tmp_path / "p.rego", HEADER_RULE)
    data = _write(tmp_path / "data.json", json.dumps({"team": "blue"}))
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    first = await _decide(engine, "p/allow", x_team="blue", x_request_id="1")
    second = await _decide(engine, "p/allow", x_team="blue", x_request_id="2")  # a header the policy ignores
    assert first[0] is True and second[0] is True and engine.cached_decisions == 1
    assert first[1] != second[1]  # every request still gets its own decision id
    assert (await _decide(engine, "p/allow", x_team="red"))[0] is False and engine.cached_decisions == 2
    _write(data, json.dumps({"team": "red"}))
    assert engine.reload()
    assert engine.cached_decisions == 0  # decisions made with the old data are gone
    assert (await _decide(engine, "p/allow", x_team="blue"))[0] is False
    assert (await _decide(engine, "p/allow", x_team="red"))[0] is True


async def test_errors_and_undefined_decisions_are_not_reused(tmp_path: Path) -> None:
    _write(tmp_path / "p.rego", f"package p\nimport rego.v1\n\nratio := 1 / {_header('x-z')}\n"
                                f"allow if {_header('x-ok')} == 1\n")
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    for _ in range(2):
        with pytest.raises(PolicyFailed):
            await _decide(engine, "p/ratio", x_z="0")
        with pytest.raises(PolicyFailed, match="undefined"):
            await _decide(engine, "p/allow", x_ok="0")
    assert engine.cached_decisions == 0


@pytest.mark.parametrize("rule", [f"allow if time.now_ns() > {_header('x-after')}",
                                  f"allow if rand.intn(\"k\", 2) == {_header('x-n')}"])
async def test_policies_reading_the_clock_or_randomness_are_evaluated_every_time(tmp_path: Path, rule: str) -> None:
    _write(tmp_path / "p.rego", f"package p\nimport rego.v1\n\ndefault allow := false\n\n{rule}\n")
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    for _ in range(3):
        await _decide(engine, "p/allow", x_after="0", x_n="0")
    assert engine.cached_decisions == 0


async def test_a_clock_reading_policy_added_by_reload_turns_reuse_off(tmp_path: Path) -> None:
    policy = _write(tmp_path / "p.rego", f"package p\nimport rego.v1\n\nallow if {_header('x-ok')} == 1\n")
    engine = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)
    assert (await _decide(engine, "p/allow", x_ok="1"))[0] is True and engine.cached_decisions == 1
    _write(policy, f"package p\nimport rego.v1\n\nallow if time.now_ns() > {_header('x-after')}\n")
    assert engine.reload()
    for _ in range(2):
        assert (await _decide(engine, "p/allow", x_after="0"))[0] is True
    assert engine.cached_decisions == 0


async def test_decision_cache_size_bounds_the_entries_and_zero_turns_it_off(tmp_path: Path) -> None:
    _write(tmp_path / "p.rego", f"package p\nimport rego.v1\n\nallow if {_header('x-n')} >= 0\n")
    bounded = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0, decision_cache_size=3)
    off = EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0, decision_cache_size=0)
    for n in range(10):
        assert (await _decide(bounded, "p/allow", x_n=str(n)))[0] is True
        assert (await _decide(off, "p/allow", x_n=str(n)))[0] is True
        assert 0 < bounded.cached_decisions <= 3
    assert off.cached_decisions == 0


def test_decision_ids_are_unique_within_and_across_processes() -> None:
    import subprocess
    import sys

    from authz.policy.engine import new_decision_id

    ids = {new_decision_id() for _ in range(10_000)}
    assert len(ids) == 10_000 and all(re.fullmatch(r"[0-9a-f]{32}", i) for i in ids)
    other = subprocess.run([sys.executable, "-c", "from authz.policy.engine import new_decision_id as n; print(n())"],
                           capture_output=True, text=True, check=True).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{32}", other) and other not in ids
