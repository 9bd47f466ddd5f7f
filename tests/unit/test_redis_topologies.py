"""The L2 tier on a real Redis Cluster (three primaries) and on a TLS-only redis-server, as the least-privileged ACL
user the README documents: answers shared across slots, evictions broadcast and confirmed, nothing refused by the
ACL; a Redis the tier cannot trust (wrong CA) is a miss, never a denial."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from authz.cache.introspection_cache import BroadcastFailed
from devtools.processes import free_port
from tests.redis_server import RedisServer, cached_answers
from tests.redis_sidecars import PREFIX, TOKEN, Clock, Sidecar, listening, require_redis_server, running, until_async
from tests.redis_topologies import ACL_PASSWORD, ACL_USER, RedisClusterOf3, TlsFiles, acl_rules, make_tls_files

ACL = ("--user", ACL_USER, *acl_rules(PREFIX))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisClusterOf3]:
    yield from running(lambda: RedisClusterOf3(tmp_path_factory.mktemp("cluster"), *ACL).start())


@pytest.fixture
async def made() -> Any:
    sidecars: list[Sidecar] = []
    yield sidecars
    for sidecar in sidecars:
        await sidecar.tier.close()


def _acl_denials(*admins: redis.Redis) -> list[Any]:
    return [entry for admin in admins for entry in admin.acl_log()]


async def test_cluster_shares_answers_across_slots_and_confirms_every_eviction(
        cluster: RedisClusterOf3, made: list[Sidecar]) -> None:
    admins = [cluster.admin(i) for i in range(3)]
    for admin in admins:
        admin.flushall()
        admin.acl_log_reset()
    redis_config = {"cluster": {"nodes": [cluster.addresses[1]]}, "username": ACL_USER,
                    "password": ACL_PASSWORD, "timeout_seconds": 0.5}
    clock = Clock()
    a, b = Sidecar(redis_config, clock, "a"), Sidecar(redis_config, clock, "b")
    made += [a, b]
    await listening(a, b)
    tokens = [f"{TOKEN}-{i}" for i in range(12)]
    for token in tokens:
        await a.lookup(token)
    await until_async(lambda: sum(cached_answers(admin, PREFIX) for admin in admins) >= len(tokens), 5)
    assert sum(1 for admin in admins if cached_answers(admin, PREFIX) > 0) >= 2, \
        "the keys spread over the cluster's slots"
    for token in tokens:
        assert (await b.lookup(token)).active
    assert b.upstream.calls == [] and b.count("l2_hit") == len(tokens)

    assert await a.cache.evict_token(token=tokens[0]) == 2  # L1, Redis; BroadcastFailed had B not heard it
    await until_async(lambda: len(b.cache.positive) == len(tokens) - 1)
    assert await a.cache.evict_subject("alice") >= len(tokens) - 1  # the subject's keys, on every node
    await until_async(lambda: len(b.cache.positive) == 0)
    await a.lookup(tokens[1])
    await until_async(lambda: sum(cached_answers(admin, PREFIX) for admin in admins) >= 1)
    await a.cache.purge()
    assert [k for admin in admins for k in admin.scan_iter(match=f"{PREFIX}:a:*")] == []
    assert _acl_denials(*admins) == [], "the documented ACL lacks something the tier sends"


async def test_the_acl_user_can_do_nothing_else(cluster: RedisClusterOf3) -> None:
    node = redis.Redis(port=cluster.nodes[0].port, username=ACL_USER, password=ACL_PASSWORD)
    for refused in (lambda: node.flushall(), lambda: node.config_get("*"), lambda: node.keys("*"),
                    lambda: node.get("other-app:secret"), lambda: node.publish("other-channel", b"x")):
        with pytest.raises(redis.exceptions.NoPermissionError):
            refused()
    node.close()


async def test_cluster_node_down_is_a_miss_and_the_eviction_says_retry(
        tmp_path: Path, made: list[Sidecar]) -> None:
    """A cluster whose nodes are all gone: lookups go to the AS, an eviction is refused (the caller retries)."""
    require_redis_server()
    nodes = RedisClusterOf3(tmp_path / "short-lived").start()
    a = Sidecar({"cluster": {"nodes": nodes.addresses}, "timeout_seconds": 0.2}, Clock(), "a")
    made.append(a)
    await listening(a)
    await a.lookup()
    nodes.stop()
    with pytest.raises(BroadcastFailed):
        await a.cache.evict_token(token=TOKEN)
    assert (await a.lookup()).active and len(a.upstream.calls) == 2


def _tls_server(workdir: Path, files: TlsFiles) -> RedisServer:
    """TLS only (no plain port), client certificates required, the ACL user."""
    port = free_port()
    return RedisServer(workdir, "--port", "0", "--tls-port", str(port), "--tls-cert-file", str(files.server_cert),
                       "--tls-key-file", str(files.server_key), "--tls-ca-cert-file", str(files.ca),
                       "--tls-auth-clients", "yes", *ACL, name="redis-tls", port=port).start()


def _tls_admin(server: RedisServer, files: TlsFiles) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=server.port, ssl=True, ssl_ca_certs=str(files.ca),
                       ssl_certfile=str(files.client_cert), ssl_keyfile=str(files.client_key))


async def test_tls_with_a_client_certificate_shares_answers_and_evictions(
        tmp_path: Path, made: list[Sidecar]) -> None:
    require_redis_server()
    files = make_tls_files(tmp_path / "pki")
    server = _tls_server(tmp_path / "redis", files)
    try:
        tls = {"ca_file": str(files.ca), "cert_file": str(files.client_cert), "key_file": str(files.client_key)}
        config = {"url": f"rediss://127.0.0.1:{server.port}/0", "tls": tls, "username": ACL_USER,
                  "password": ACL_PASSWORD, "timeout_seconds": 0.5}
        clock = Clock()
        a, b = Sidecar(config, clock, "a"), Sidecar(config, clock, "b")
        made += [a, b]
        await listening(a, b)
        await a.lookup()
        admin = _tls_admin(server, files)
        await until_async(lambda: cached_answers(admin, PREFIX) > 0)
        assert (await b.lookup()).active and b.count("l2_hit") == 1
        await a.cache.evict_token(token=TOKEN)
        await until_async(lambda: len(b.cache.positive) == 0)
        assert admin.acl_log() == []
        admin.close()
    finally:
        server.stop()


@pytest.mark.parametrize("mistake", ["unrelated CA", "host not in the certificate", "plain TCP"])
async def test_tls_redis_we_cannot_trust_is_a_miss_never_a_denial(tmp_path: Path, made: list[Sidecar],
                                                                   mistake: str) -> None:
    require_redis_server()
    files = make_tls_files(tmp_path / "pki")
    server = _tls_server(tmp_path / "redis", files)
    try:
        tls: dict[str, Any] = {"ca_file": str(files.other_ca if mistake == "unrelated CA" else files.ca),
                               "cert_file": str(files.client_cert), "key_file": str(files.client_key)}
        host = "localhost" if mistake == "host not in the certificate" else "127.0.0.1"
        config: dict[str, Any] = {"url": f"rediss://{host}:{server.port}/0", "tls": tls, "timeout_seconds": 0.3}
        if mistake == "plain TCP":
            config = {"url": f"redis://127.0.0.1:{server.port}/0", "timeout_seconds": 0.3}
        a = Sidecar(config, Clock(), "a")
        made.append(a)
        a.cache.listen()
        assert (await a.lookup()).active
        assert (await a.lookup(f"{TOKEN}-2")).active
        assert len(a.upstream.calls) == 2 and a.count("l2_hit") == 0 and a.count("l2_error") >= 1
        with pytest.raises(BroadcastFailed):
            await a.cache.evict_token(token=TOKEN)
        assert not a.tier.subscribed.is_set()
        admin = _tls_admin(server, files)
        assert admin.dbsize() == 0, "nothing was written through a connection we do not trust"
        admin.close()
    finally:
        server.stop()
