"""ConfigReloader: a valid file is applied, a bad or half-written one keeps the running configuration (one log line
naming the key, counted), restart-only keys keep their running values, and the file watch waits for a settled file."""

from __future__ import annotations

import logging
import os
from itertools import pairwise
from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import Config, load_config
from authz.metrics import Metrics
from authz.reload import ConfigReloader

SERVER = {"introspection_endpoint": "https://as.example/i", "client_id": "gw", "client_secret_env": "S",
          "dialect": "rfc7662"}
ENV = {"S": "secret"}


def _write(path: Path, scopes: str = "read", **top: Any) -> None:
    doc = {"authorization_servers": {"main": SERVER}, "routes": {"required_scopes": scopes}, **top}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(yaml.safe_dump(doc), encoding="utf-8")
    os.replace(tmp, path)


class _Target:
    def __init__(self) -> None:
        self.applied: list[Config] = []
        self.fail = False
        self.attempts = 0

    def apply(self, config: Config) -> None:
        self.attempts += 1
        if self.fail:
            raise RuntimeError("policy app.rego does not compile")
        self.applied.append(config)


def _reloader(tmp_path: Path) -> tuple[ConfigReloader, _Target, Metrics, Path]:
    path = tmp_path / "authz.yaml"
    _write(path)
    metrics, target = Metrics(), _Target()
    return ConfigReloader(path, load_config(path, ENV), target.apply, metrics, ENV), target, metrics, path


def _count(metrics: Metrics, result: str) -> float:
    return metrics.registry.get_sample_value("phantom_authz_config_reloads_total", {"result": result}) or 0.0


def test_a_valid_file_is_applied_and_counted(tmp_path: Path) -> None:
    reloader, target, metrics, path = _reloader(tmp_path)
    _write(path, "write")
    assert reloader.reload("SIGHUP") is True
    assert [c.routes.required_scopes for c in target.applied] == [("write",)]
    assert reloader.config.routes.required_scopes == ("write",)
    assert _count(metrics, "ok") == 1


@pytest.mark.parametrize(("content", "named"), [
    ("routes: {required_scopes: [read\n", "not valid YAML"),
    ("authorization_servers: {main: {introspection_endpoint: 'https://as.example/i', client_id: gw, "
     "client_secret_env: S, dialect: rfc7662}}\nroutes: {rules: [{name: a, as: nope}]}\n", "routes.rules[0] (a).as"),
    ("authorization_servers: {}\n", "authorization_servers"),
    ("", "authorization_servers"),  # truncated to nothing
])
def test_a_bad_file_keeps_the_running_configuration(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                   content: str, named: str) -> None:
    reloader, target, metrics, path = _reloader(tmp_path)
    path.write_text(content, encoding="utf-8")
    with caplog.at_level(logging.ERROR, "authz.reload"):
        assert reloader.reload("SIGHUP") is False
    assert target.applied == [] and reloader.config.routes.required_scopes == ("read",)
    assert _count(metrics, "error") == 1
    lines = [r.getMessage() for r in caplog.records if r.name == "authz.reload"]
    assert len(lines) == 1 and named in lines[0] and "kept" in lines[0]


def test_a_pipeline_that_cannot_be_built_keeps_the_old_one(tmp_path: Path) -> None:
    reloader, target, metrics, path = _reloader(tmp_path)
    target.fail = True
    _write(path, "write")
    assert reloader.reload("SIGHUP") is False
    assert reloader.config.routes.required_scopes == ("read",) and _count(metrics, "error") == 1


def test_restart_only_keys_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    reloader, _, _, path = _reloader(tmp_path)
    _write(path, "write", server={"listen": "127.0.0.1:9999"}, admin_listen="")
    with caplog.at_level(logging.WARNING, "authz.reload"):
        assert reloader.reload("SIGHUP") is True
    assert any("server.listen, admin_listen changed" in r.getMessage() for r in caplog.records)
    # applied only at start (the log handler, the watch's task): named too, rather than silently ignored
    _write(path, "write", server={"listen": "127.0.0.1:9999", "log_format": "text",
                                  "config_watch_interval_seconds": 9}, admin_listen="")
    with caplog.at_level(logging.WARNING, "authz.reload"):
        assert reloader.reload("SIGHUP") is True
    assert any("server.log_format, server.config_watch_interval_seconds changed" in r.getMessage()
               for r in caplog.records)


def test_the_watch_applies_a_change_once_the_file_has_settled(tmp_path: Path) -> None:
    reloader, target, metrics, path = _reloader(tmp_path)
    assert reloader.poll() is None  # unchanged
    _write(path, "write")
    assert reloader.poll() is None  # first sight of new content: wait for it to settle
    assert reloader.poll() is True  # the same content twice: applied
    assert reloader.poll() is None and len(target.applied) == 1
    path.write_text("routes: [", encoding="utf-8")  # half-written
    assert reloader.poll() is None
    _write(path, "admin")  # finished before the next look
    assert reloader.poll() is None
    assert reloader.poll() is True
    assert [c.routes.required_scopes for c in target.applied] == [("write",), ("admin",)]
    assert _count(metrics, "error") == 0


def test_a_bad_settled_file_is_reported_once(tmp_path: Path) -> None:
    reloader, _, metrics, path = _reloader(tmp_path)
    path.write_text("routes: [", encoding="utf-8")
    for _ in range(5):
        reloader.poll()
    assert _count(metrics, "error") == 1


def test_a_configmap_symlink_swap_is_seen(tmp_path: Path) -> None:
    """Kubernetes mounts a ConfigMap as <dir>/authz.yaml -> ..data/authz.yaml, ..data -> ..<timestamp>; an update
    writes a new timestamped directory and swaps ..data in one rename."""
    first, second = tmp_path / "..2026_01", tmp_path / "..2026_02"
    first.mkdir()
    second.mkdir()
    _write(first / "authz.yaml", "read")
    _write(second / "authz.yaml", "write")
    (tmp_path / "..data").symlink_to(first.name)
    path = tmp_path / "authz.yaml"
    path.symlink_to("..data/authz.yaml")
    target, metrics = _Target(), Metrics()
    reloader = ConfigReloader(path, load_config(path, ENV), target.apply, metrics, ENV)
    (tmp_path / "..data_tmp").symlink_to(second.name)
    os.replace(tmp_path / "..data_tmp", tmp_path / "..data")
    reloader.poll()
    assert reloader.poll() is True
    assert target.applied[-1].routes.required_scopes == ("write",)


def test_file_names_are_relative_to_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A config file's ``*_file`` keys and ``policy.paths`` name files next to it, wherever the service starts."""
    folder = tmp_path / "etc"
    (folder / "policies").mkdir(parents=True)
    (folder / "secret").write_text("s3cret\n", encoding="utf-8")
    server = {**SERVER, "client_secret_file": "secret"}
    del server["client_secret_env"]
    path = folder / "authz.yaml"
    path.write_text(yaml.safe_dump({"authorization_servers": {"main": server},
                                    "policy": {"paths": ["policies", str(tmp_path / "abs")]}}), encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    config = load_config(path.relative_to(tmp_path), {})
    assert config.policy.paths == (str(folder / "policies"), str(tmp_path / "abs"))
    assert config.authorization_servers["main"].client_secret is not None
    assert config.authorization_servers["main"].client_secret.reveal() == "s3cret"


def _polls_until_applied(reloader: ConfigReloader, most: int) -> int:
    for count in range(1, most + 1):
        if reloader.poll() is True:
            return count
    return 0


def test_a_refused_content_is_tried_again_until_what_it_reads_settles(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    """One worker of several caught the client_secret_file mid-rotation (empty) while its siblings read it whole: it
    must not run the old configuration (a scope fewer) for as long as the file stays. The same content is tried
    again, quietly, until it loads."""
    secret = tmp_path / "secret"
    secret.write_text("s3cret\n", encoding="utf-8")
    server = {**SERVER, "client_secret_file": str(secret)}
    del server["client_secret_env"]
    reloader, target, metrics, path = _reloader(tmp_path)
    secret.write_text("", encoding="utf-8")  # mid-rotation
    _write(path, "read admin", authorization_servers={"main": server})
    with caplog.at_level(logging.ERROR, "authz.reload"):
        assert reloader.poll() is None and reloader.poll() is False  # settled, tried, refused
        for _ in range(6):
            assert reloader.poll() in (None, False)  # tried again now and then, still refused
    assert _count(metrics, "error") == 1 and len(caplog.records) == 1, "refused once, reported once"
    assert reloader.config.routes.required_scopes == ("read",) and target.applied == []
    secret.write_text("s3cret-2\n", encoding="utf-8")  # the rotation completes
    assert _polls_until_applied(reloader, 32) > 0
    assert [c.routes.required_scopes for c in target.applied] == [("read", "admin")]
    assert _count(metrics, "ok") == 1 and _count(metrics, "error") == 1


def test_a_refused_content_is_tried_less_and_less_often(tmp_path: Path) -> None:
    """A pipeline that cannot be built (a policy that does not compile) is tried 1, 2, 4 ... 32 looks apart."""
    reloader, target, _, path = _reloader(tmp_path)
    target.fail = True
    _write(path, "write")
    tries = []
    for look in range(200):
        before = target.attempts
        reloader.poll()
        if target.attempts > before:
            tries.append(look)
    gaps = [b - a for a, b in pairwise(tries)]
    assert gaps[:6] == [1, 2, 4, 8, 16, 32] and set(gaps[6:]) == {32}
    target.fail = False  # the policy was fixed
    assert _polls_until_applied(reloader, 33) > 0 and len(target.applied) == 1
