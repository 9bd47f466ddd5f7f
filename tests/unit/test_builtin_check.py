"""A policy calling a function the embedded engine cannot evaluate is refused when it loads (file, line, column and
the function's name), not loaded to fail every decision with the failure status; a reload of such files keeps the
policies loaded before. Calls resolve as in OPA: the policies' own functions first, then built-ins."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from authz.policy.builtin_check import regorus_builtins
from authz.policy.embedded import EmbeddedEngine
from authz.policy.engine import PolicyLoadError

HEAD = "package app\nimport rego.v1\n\n"


def _load(tmp_path: Path, **files: str) -> EmbeddedEngine:
    for name, text in files.items():
        (tmp_path / f"{name}.rego").write_text(text, encoding="utf-8")
    return EmbeddedEngine((str(tmp_path),), timeout_seconds=5.0)


@pytest.mark.parametrize(("call", "name"), [
    ('startwith(input.path, "/admin")', "startwith"),  # a misspelt built-in
    ('net.lookup_ip_addr("example.com")', "net.lookup_ip_addr"),
    ('crypto.x509.parse_and_verify_certificates(input.chain)', "crypto.x509.parse_and_verify_certificates"),
    ('io.jwt.encode_sign({}, {}, {})', "io.jwt.encode_sign"),
    ('regex.globs_match("a.*", "a.b")', "regex.globs_match"),
    ('strings.render_template("{{.x}}", {})', "strings.render_template"),
    ('http.send({"method": "get", "url": "http://127.0.0.1:1/"})', "http.send"),  # regorus: always undefined
    ("data.lib.missing(1)", "data.lib.missing"),
])
def test_a_call_the_engine_cannot_evaluate_is_refused_at_load(tmp_path: Path, call: str, name: str) -> None:
    with pytest.raises(PolicyLoadError) as info:
        _load(tmp_path, app=f"{HEAD}default allow := false\n\nallow if {{\n    input.ok\n    {call}\n}}\n")
    message = str(info.value)
    assert re.search(rf"app\.rego:8:5: `{re.escape(name)}`", message), message
    assert "policy.engine: remote" in message


def test_every_unevaluable_call_is_named(tmp_path: Path) -> None:
    with pytest.raises(PolicyLoadError) as info:
        _load(tmp_path, a=f"{HEAD}x := crypto.md4(input.a)\n", b=f"{HEAD}y := to_yaml(input.b)\nz := to_yaml(1)\n")
    message = str(info.value)
    assert "a.rego:4:6: `crypto.md4`" in message and "b.rego:4:6: `to_yaml`" in message
    assert message.count("to_yaml") == 1  # each problem once, where it first appears


LIB = "package lib.strings\nimport rego.v1\n\nshout(s) := upper(s)\n\nnested.deeper(s) := lower(s)\n"


def test_the_policies_own_functions_resolve_as_in_opa(tmp_path: Path) -> None:
    engine = _load(tmp_path, lib=LIB, app=f"""{HEAD}import data.lib.strings
import data.lib.strings as s

startwith(a, b) := startswith(a, b)  # a package function may take a name no built-in has

f(x) := x + 1
default g(_) := 0
deep.h(x) := x

r1 := strings.shout("a")
r2 := s.shout("b")
r3 := data.lib.strings.shout("c")
r4 := data.lib.strings.nested.deeper("D")
r5 := startwith("abc", "a")
r6 := f(1) + g(2) + deep.h(3)
r7 := data.app.f(1)
r8 := [x | some x in numbers.range(1, 2)]
r9 := crypto.sha256("x") != crypto.hmac.sha256("x", "k")
r10 := io.jwt.decode("a.b.c") != null
""")
    assert engine.needs.deterministic is False  # io.jwt.*: not reused (unchanged by this check)


@pytest.mark.parametrize("call", ['strings.nosuch("a")', 's.nosuch("a")', 'data.lib.strings.nested.nosuch("a")'])
def test_a_function_no_module_defines_is_refused(tmp_path: Path, call: str) -> None:
    with pytest.raises(PolicyLoadError, match="is not a function any loaded policy defines"):
        _load(tmp_path, lib=LIB, app=f"{HEAD}import data.lib.strings\nimport data.lib.strings as s\n\nx := {call}\n")


def test_every_builtin_regorus_reports_loads(tmp_path: Path) -> None:
    """The engine's own list (``opa.runtime().builtins``) is what the check trusts; each name in it resolves."""
    names = sorted(n for n in regorus_builtins() if not n.startswith("__") and n != "http.send")
    assert {"count", "startswith", "net.cidr_contains", "time.now_ns", "print", "urlquery.decode"} <= set(names)
    rules = "\n".join(f"r{i} if {{ false; {n}(1) }}" for i, n in enumerate(names))
    _load(tmp_path, all=f"{HEAD}{rules}\n")


async def test_a_reload_with_such_a_call_keeps_the_old_policies(tmp_path: Path) -> None:
    engine = _load(tmp_path, app=f"{HEAD}allow if input.ok\n")
    (tmp_path / "app.rego").write_text(f"{HEAD}allow if net.lookup_ip_addr(input.host)\n", encoding="utf-8")
    assert engine.reload() is False
    assert (await engine.evaluate("app/allow", {"ok": True})).result is True
