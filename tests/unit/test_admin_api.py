"""The cache admin gRPC API (protos/authz/adminpb/admin.proto), served in process and called over a real channel."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from authz.admin import CacheAdminService
from authz.adminpb import admin_pb2, admin_pb2_grpc
from authz.cache import IntrospectionCache
from authz.config import CacheConfig
from authz.errors import UpstreamUnavailable
from authz.logs import token_id
from authz.metrics import Metrics
from authz.models import Answer, Identity, Introspection

ROOT = Path(__file__).resolve().parents[2]
T0 = 1_700_000_000.0


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


class FakeUpstream:
    name = "as1"
    cache_identity = "https://as1.example/introspect\0gw"

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.answers: dict[str, Introspection] = {}
        self.down = False
        self.gate: asyncio.Event | None = None

    async def introspect(self, token: str) -> Introspection:
        self.calls.append(token)
        if self.gate is not None:
            await self.gate.wait()
        if self.down:
            raise UpstreamUnavailable("as down")
        return self.answers.get(token, Introspection(active=False))

    async def verified(self, answer: Introspection) -> Introspection:
        return answer

    def identity(self, answer: Answer) -> Identity:
        raise NotImplementedError

    def grant(self, token: str, sub: str) -> None:
        self.answers[token] = Introspection(active=True, claims={"sub": sub, "scope": "read", "exp": T0 + 3_600})


@dataclass
class Admin:
    stub: admin_pb2_grpc.CacheAdminStub
    cache: IntrospectionCache
    upstream: FakeUpstream
    clock: Clock
    metrics: Metrics

    async def lookup(self, token: str) -> Introspection:
        return (await self.cache.introspect(self.upstream, token)).introspection

    def evictions(self, how: str) -> float:
        value = self.metrics.registry.get_sample_value("phantom_authz_cache_admin_evictions_total", {"how": how})
        return value or 0.0


@pytest.fixture
async def admin() -> AsyncIterator[Admin]:
    clock, metrics = Clock(), Metrics()
    config = CacheConfig(max_ttl_seconds=30.0, max_entries=3, max_bytes=1_000_000, stale_if_error_seconds=60.0,
                         negative_max_entries=1)
    cache = IntrospectionCache(config, metrics, clock=clock)
    upstream = FakeUpstream()
    cache.wrap(upstream)
    server = grpc.aio.server()
    admin_pb2_grpc.add_CacheAdminServicer_to_server(CacheAdminService(cache), server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
    try:
        yield Admin(admin_pb2_grpc.CacheAdminStub(channel), cache, upstream, clock, metrics)
    finally:
        await channel.close()
        await server.stop(None)


async def test_evict_token_by_token(admin: Admin) -> None:
    admin.upstream.grant("tok-a", "alice")
    admin.upstream.grant("tok-b", "bob")
    await admin.lookup("tok-a")
    await admin.lookup("tok-b")
    reply = await admin.stub.EvictToken(admin_pb2.EvictTokenRequest(token="tok-a"))
    assert reply.evicted == 1
    assert admin.evictions("token") == 1
    await admin.lookup("tok-a")
    await admin.lookup("tok-b")
    assert admin.upstream.calls == ["tok-a", "tok-b", "tok-a"]


async def test_evict_token_that_is_not_cached_evicts_nothing(admin: Admin) -> None:
    reply = await admin.stub.EvictToken(admin_pb2.EvictTokenRequest(token="never-seen"))
    assert reply.evicted == 0


@pytest.mark.parametrize("case", [str.lower, str.upper], ids=["lower", "upper"])
async def test_evict_token_by_logged_token_id(admin: Admin, case: Callable[[str], str]) -> None:
    admin.upstream.grant("tok-a", "alice")
    admin.upstream.grant("tok-b", "bob")
    await admin.lookup("tok-a")
    await admin.lookup("tok-b")
    short = token_id("tok-a")
    reply = await admin.stub.EvictToken(admin_pb2.EvictTokenRequest(token_id=case(short)))
    assert reply.evicted == 1
    assert admin.evictions("token_id") == 1
    await admin.lookup("tok-a")
    await admin.lookup("tok-b")
    assert admin.upstream.calls == ["tok-a", "tok-b", "tok-a"]


async def test_evict_subject(admin: Admin) -> None:
    admin.upstream.grant("alice-1", "alice")
    admin.upstream.grant("alice-2", "alice")
    admin.upstream.grant("bob-1", "bob")
    for token in ("alice-1", "alice-2", "bob-1"):
        await admin.lookup(token)
    reply = await admin.stub.EvictSubject(admin_pb2.EvictSubjectRequest(subject="alice"))
    assert reply.evicted == 2
    assert admin.evictions("subject") == 2
    for token in ("alice-1", "alice-2", "bob-1"):
        await admin.lookup(token)
    assert admin.upstream.calls == ["alice-1", "alice-2", "bob-1", "alice-1", "alice-2"]


async def test_purge(admin: Admin) -> None:
    admin.upstream.grant("tok-a", "alice")
    await admin.lookup("tok-a")
    await admin.lookup("junk")
    reply = await admin.stub.Purge(admin_pb2.PurgeRequest())
    assert reply.evicted == 2
    stats = await admin.stub.Stats(admin_pb2.StatsRequest())
    assert stats.entries == stats.negative_entries == stats.bytes == 0
    await admin.lookup("tok-a")
    await admin.lookup("junk")
    assert admin.upstream.calls == ["tok-a", "junk", "tok-a", "junk"]


async def test_stats_report_sizes_and_counters(admin: Admin) -> None:
    up = admin.upstream
    for token in ("t1", "t2", "t3", "t4"):  # max_entries=3: t1 is pushed out
        up.grant(token, "alice")
        await admin.lookup(token)
    await admin.lookup("t4")  # hit
    await admin.lookup("t4")  # hit
    await admin.lookup("junk")  # miss, inactive
    await admin.lookup("junk")  # negative hit
    await admin.lookup("junk-2")  # miss, inactive; negative_max_entries=1: junk is pushed out
    up.gate = asyncio.Event()
    up.grant("t5", "bob")
    waiters = [asyncio.ensure_future(admin.lookup("t5")) for _ in range(3)]  # 1 miss + 2 joins
    for _ in range(50):
        await asyncio.sleep(0)
    up.gate.set()
    await asyncio.gather(*waiters)
    up.gate = None
    admin.clock.now = T0 + 40  # past the 30 s TTL, within the stale window
    up.down = True
    await admin.lookup("t4")  # stale (a miss first)

    stats = await admin.stub.Stats(admin_pb2.StatsRequest())
    assert stats.entries == 3
    assert stats.negative_entries == 1
    assert stats.bytes == admin.cache.positive.bytes > 0
    assert stats.max_entries == 3
    assert stats.max_bytes == 1_000_000
    assert stats.hits == 2
    assert stats.misses == 4 + 2 + 1 + 1
    assert stats.negative_hits == 1
    assert stats.singleflight_joins == 2
    assert stats.stale_served == 1
    assert stats.l2_hits == 0
    assert stats.lru_evictions == 3  # t1, then t2 when t5 came in; junk
    assert stats.redis_enabled is False


async def test_stats_of_an_empty_cache(admin: Admin) -> None:
    stats = await admin.stub.Stats(admin_pb2.StatsRequest())
    assert (stats.entries, stats.negative_entries, stats.bytes, stats.hits, stats.misses) == (0, 0, 0, 0, 0)
    assert stats.max_entries == 3


@pytest.mark.parametrize(
    "request_",
    [admin_pb2.EvictTokenRequest(), admin_pb2.EvictTokenRequest(token=""), admin_pb2.EvictTokenRequest(token_id="")],
    ids=["no-target", "empty-token", "empty-token-id"],
)
async def test_empty_evict_token_is_invalid_argument(admin: Admin, request_: admin_pb2.EvictTokenRequest) -> None:
    admin.upstream.grant("tok-a", "alice")
    await admin.lookup("tok-a")
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.stub.EvictToken(request_)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(admin.cache.positive) == 1


async def test_empty_evict_subject_is_invalid_argument(admin: Admin) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await admin.stub.EvictSubject(admin_pb2.EvictSubjectRequest())
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_committed_generated_code_matches_the_proto(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", "protos", f"--python_out={tmp_path}",
         f"--pyi_out={tmp_path}", f"--grpc_python_out={tmp_path}", "protos/authz/adminpb/admin.proto"],
        cwd=ROOT, capture_output=True, text=True, timeout=60, check=False,
    )
    assert result.returncode == 0, result.stderr
    generated = sorted(p.name for p in (tmp_path / "authz" / "adminpb").iterdir())
    assert generated == ["admin_pb2.py", "admin_pb2.pyi", "admin_pb2_grpc.py"]
    for name in generated:
        fresh = (tmp_path / "authz" / "adminpb" / name).read_bytes()
        committed = (ROOT / "authz" / "adminpb" / name).read_bytes()
        assert fresh == committed, f"authz/adminpb/{name} is out of date: run `make protos`"
