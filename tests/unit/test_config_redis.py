"""``cache.redis``: one topology (url, sentinel or cluster), TLS files checked at load, an ACL user whose password never
sits in the file; every mistake is one line naming its key, and no password shows in an error or a repr."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from authz.config import ConfigError, Secret, load_config
from authz.config.redis import RedisConfig
from tests.redis_topologies import make_tls_files

PASSWORD = "redis-acl-password-5b9e"
SERVER = {"introspection_endpoint": "https://as.example/introspect", "client_id": "gw", "client_secret_env": "GW",
          "issuer": "https://as.example"}


def _load(tmp_path: Path, redis: Any, **env: str) -> RedisConfig:
    path = tmp_path / "authz.yaml"
    path.write_text(yaml.safe_dump({"authorization_servers": {"as": SERVER}, "cache": {"redis": redis}}),
                    encoding="utf-8")
    return load_config(path, {"GW": "x", **env}).cache.redis


def _error(tmp_path: Path, redis: Any, **env: str) -> str:
    with pytest.raises(ConfigError) as info:
        _load(tmp_path, redis, **env)
    message = str(info.value)
    assert "\n" not in message and PASSWORD not in message
    return message


def test_no_topology_is_no_l2(tmp_path: Path) -> None:
    for section in (None, {}, {"timeout_seconds": 0.1}):
        config = _load(tmp_path, section)
        assert not config.enabled and config.topology is None


def test_each_topology_is_named_by_its_key(tmp_path: Path) -> None:
    assert _load(tmp_path, {"url": "redis://10.0.0.1:6379/2"}).topology == "standalone"
    sentinel = _load(tmp_path, {"sentinel": {"addresses": "10.0.0.1:26379 [::1]:26380", "service_name": "l2"}})
    assert sentinel.topology == "sentinel" and sentinel.sentinel is not None
    assert sentinel.sentinel.hosts == [("10.0.0.1", 26379), ("::1", 26380)] and sentinel.sentinel.db == 0
    cluster = _load(tmp_path, {"cluster": {"nodes": ["redis-0.redis:6379", "redis-1.redis:6379"]}})
    assert cluster.topology == "cluster" and cluster.cluster is not None
    assert cluster.cluster.hosts == [("redis-0.redis", 6379), ("redis-1.redis", 6379)]


def test_tls_is_a_rediss_url_or_a_tls_section(tmp_path: Path) -> None:
    assert _load(tmp_path, {"url": "rediss://redis.internal:6380/0"}).uses_tls
    assert not _load(tmp_path, {"url": "redis://redis.internal:6379/0"}).uses_tls
    cluster = {"nodes": ["10.0.0.1:6379"]}
    assert _load(tmp_path, {"cluster": cluster, "tls": None}).uses_tls  # ``tls:`` alone: on, the system's CAs
    assert not _load(tmp_path, {"cluster": cluster}).uses_tls


def test_tls_files_are_read_at_load(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "pki")
    tls = {"ca_file": str(files.ca), "cert_file": str(files.client_cert), "key_file": str(files.client_key)}
    config = _load(tmp_path, {"sentinel": {"addresses": ["127.0.0.1:26379"], "service_name": "l2"}, "tls": tls})
    assert config.tls is not None and config.tls.check_hostname


def test_the_password_comes_from_a_file_or_a_variable_never_the_file_itself(tmp_path: Path) -> None:
    secret = tmp_path / "redis-password"
    secret.write_text(PASSWORD + "\n", encoding="utf-8")
    url = "rediss://redis.internal:6380/0"
    from_file = _load(tmp_path, {"url": url, "username": "phantom-authz", "password_file": str(secret)})
    from_env = _load(tmp_path, {"url": url, "username": "phantom-authz", "password_env": "REDIS_PW"},
                     REDIS_PW=PASSWORD)
    assert from_file.password == from_env.password == Secret(PASSWORD)
    assert PASSWORD not in repr(from_file) and str(secret) not in repr(from_file)
    sentinel = _load(tmp_path, {"sentinel": {"addresses": ["10.0.0.1:26379"], "service_name": "l2",
                                             "password_env": "SENTINEL_PW"}}, SENTINEL_PW=PASSWORD)
    assert sentinel.sentinel is not None and sentinel.sentinel.password == Secret(PASSWORD)
    assert sentinel.password is None  # the Sentinels' password is not the data nodes'


@pytest.mark.parametrize(("redis", "env", "expected"), [
    ({"url": "http://127.0.0.1:6379/0"}, {}, "cache.redis.url: must be a redis://, rediss:// or unix:// URL"),
    ({"url": "memcached://127.0.0.1:11211"}, {}, "cache.redis.url: must be a redis://, rediss:// or unix:// URL"),
    ({"url": f"redis://:{PASSWORD}@127.0.0.1:6379/0"}, {}, "cache.redis.url: must not hold a user or password"),
    ({"url": "redis://127.0.0.1:6379/0?ssl_cert_reqs=none"}, {}, "cache.redis.url: must not carry query parameters"),
    ({"url": "redis://a:1", "cluster": {"nodes": ["a:1"]}}, {}, "cache.redis.cluster: cannot be combined with url"),
    ({"sentinel": {"addresses": ["a:26379"]}}, {}, "cache.redis.sentinel.service_name: is required"),
    ({"sentinel": {"addresses": [], "service_name": "l2"}}, {}, "cache.redis.sentinel.addresses: must list at least"),
    ({"sentinel": {"addresses": ["a:99999"], "service_name": "l2"}}, {}, "cache.redis.sentinel.addresses: 'a:99999'"),
    ({"cluster": {"nodes": ["just-a-host"]}}, {}, "cache.redis.cluster.nodes: 'just-a-host' is not a valid HOST:PORT"),
    ({"cluster": {}}, {}, "cache.redis.cluster.nodes: is required"),
    ({"url": "redis://a:1", "password": PASSWORD}, {}, "cache.redis.password: must not be inline in the config file"),
    ({"url": "redis://a:1", "username": "u"}, {}, "cache.redis.password_file: is required with username 'u'"),
    ({"url": "redis://a:1", "password_env": "NOPE"}, {}, "cache.redis.password_env: environment variable NOPE is not"),
    ({"url": "redis://a:1", "tls": {}}, {}, "cache.redis.tls: applies only to a rediss:// url"),
    ({"tls": {}}, {}, "cache.redis.tls: applies only with url, sentinel or cluster set"),
    ({"url": "rediss://a:1", "tls": {"cert_file": "/x"}}, {}, "cache.redis.tls.key_file: is required with cert_file"),
    ({"url": "rediss://a:1", "tls": {"ca_file": "/nonexistent/ca.pem"}}, {}, "cache.redis.tls.ca_file: cannot read"),
    ({"url": "redis://a:1", "eviction_lease_seconds": 1}, {}, "cache.redis.eviction_lease_seconds: must be >= 3"),
    ({"url": "redis://a:1", "database": 2}, {}, "cache.redis.database: unknown key"),
])
def test_each_mistake_is_one_line_naming_its_key(tmp_path: Path, redis: dict[str, Any], env: dict[str, str],
                                                 expected: str) -> None:
    assert _error(tmp_path, redis, **env).startswith(expected)


def test_an_empty_ca_bundle_or_a_certificate_without_its_key_is_refused(tmp_path: Path) -> None:
    files = make_tls_files(tmp_path / "pki")
    empty = tmp_path / "empty.pem"
    empty.write_text("", encoding="utf-8")
    url = "rediss://127.0.0.1:6380/0"
    assert _error(tmp_path, {"url": url, "tls": {"ca_file": str(empty)}}).startswith("cache.redis.tls.ca_file: ")
    mismatched = {"cert_file": str(files.client_cert), "key_file": str(files.server_key)}
    assert _error(tmp_path, {"url": url, "tls": mismatched}).startswith(
        "cache.redis.tls.key_file: does not match the certificate in cert_file")
