"""What an operator hands ``EvictToken`` / ``authz admin``: the token as a request presents it, however it was pasted.

A token read from an environment variable or a line of stdin often keeps a trailing newline or CR LF, spaces, or the
``Bearer``/``DPoP`` scheme copied with it from a request. Hashed as given, it named a cache key no request ever
makes, and the call answered OK while the revoked token kept being allowed from the cache. Now the admin API reads it
as the request path does (``authz.credential``), on one worker, through the relay to sibling workers and through
Redis to another sidecar; what no request could present is INVALID_ARGUMENT. ``authz admin`` says when an eviction
evicted nothing."""

from __future__ import annotations

import asyncio
import contextlib
import io
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager

import grpc
import pytest
import redis

from authz.admin import CacheAdminService
from authz.adminpb import admin_pb2, admin_pb2_grpc
from authz.cache import IntrospectionCache
from authz.cli.admin import main as admin_main
from authz.config import CacheConfig
from authz.metrics import Metrics
from tests.redis_server import RedisServer
from tests.redis_sidecars import PREFIX, TOKEN, Clock, FakeUpstream, Sidecar, listening, running, until_async

PRESENTED = {
    "newline": TOKEN + "\n",
    "crlf": TOKEN + "\r\n",
    "spaces": f"  {TOKEN}  ",
    "bearer": f"Bearer {TOKEN}",
    "bearer-lower-crlf": f"bearer  {TOKEN}\r\n",
    "dpop": f"DPoP {TOKEN}",
}
NOT_A_TOKEN = {
    "whitespace": " \r\n",
    "scheme-only": "Bearer ",
    "basic": "Basic ZGVtbzpzZWNyZXQ=",
    "two-words": f"{TOKEN} {TOKEN}",
    "comma": f"{TOKEN},x",
    "non-ascii": "tökén",
}


class Worker:
    """One worker: a cache in front of the fake AS and its admin API on a real gRPC server."""

    def __init__(self, cache: IntrospectionCache, upstream: FakeUpstream) -> None:
        self.cache, self.upstream = cache, upstream
        self.server = grpc.aio.server()
        self.port = self.server.add_insecure_port("127.0.0.1:0")
        self.address = f"127.0.0.1:{self.port}"

    async def lookup(self) -> None:
        await self.cache.introspect(self.upstream, TOKEN)


@asynccontextmanager
async def serving(*workers: tuple[Worker, tuple[str, ...]]) -> AsyncIterator[list[admin_pb2_grpc.CacheAdminStub]]:
    channels = []
    for worker, siblings in workers:
        admin_pb2_grpc.add_CacheAdminServicer_to_server(CacheAdminService(worker.cache, siblings), worker.server)
        await worker.server.start()
        channels.append(grpc.aio.insecure_channel(worker.address))
    try:
        yield [admin_pb2_grpc.CacheAdminStub(c) for c in channels]
    finally:
        for channel in channels:
            await channel.close()
        for worker, _ in workers:
            await worker.server.stop(None)


def worker(name: str = "w") -> Worker:
    clock = Clock()
    cache = IntrospectionCache(CacheConfig(max_ttl_seconds=300.0), Metrics(), clock=clock)
    upstream = FakeUpstream(clock, name)
    cache.wrap(upstream)
    return Worker(cache, upstream)


@pytest.mark.parametrize("presented", PRESENTED.values(), ids=PRESENTED.keys())
async def test_evict_token_reads_the_token_as_a_request_presents_it(presented: str) -> None:
    w = worker()
    async with serving((w, ())) as (stub,):
        await w.lookup()
        reply = await stub.EvictToken(admin_pb2.EvictTokenRequest(token=presented))
        assert reply.evicted == 1
        await w.lookup()
        assert w.upstream.calls == [TOKEN, TOKEN]  # the revoked token went back to the AS


@pytest.mark.parametrize("given", NOT_A_TOKEN.values(), ids=NOT_A_TOKEN.keys())
async def test_evict_token_refuses_what_no_request_presents_as_a_token(given: str) -> None:
    w = worker()
    async with serving((w, ())) as (stub,):
        await w.lookup()
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.EvictToken(admin_pb2.EvictTokenRequest(token=given))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert TOKEN not in (info.value.details() or "")
        assert len(w.cache.positive) == 1


@pytest.mark.parametrize("given", [" d442dd1e5cea", "d442dd1e5ce", "not-a-token-id"])
async def test_evict_token_refuses_a_token_id_no_log_line_shows(given: str) -> None:
    w = worker()
    async with serving((w, ())) as (stub,):
        with pytest.raises(grpc.aio.AioRpcError) as info:
            await stub.EvictToken(admin_pb2.EvictTokenRequest(token_id=given))
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_a_pasted_token_is_evicted_from_every_worker_through_the_relay() -> None:
    first, second = worker("1"), worker("2")
    async with serving((second, (first.address,)), (first, (second.address,))) as (_, stub):
        await first.lookup()
        await second.lookup()
        reply = await stub.EvictToken(admin_pb2.EvictTokenRequest(token=f"Bearer {TOKEN}\r\n"))
        assert reply.evicted == 2
        assert len(first.cache.positive) == len(second.cache.positive) == 0


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    yield from running(lambda: RedisServer(tmp_path_factory.mktemp("redis")).start())


async def test_a_pasted_token_is_evicted_from_another_sidecar_and_redis(redis_server: RedisServer) -> None:
    clock = Clock()
    a, b = (Sidecar({"url": redis_server.url, "timeout_seconds": 0.5}, clock, name) for name in ("a", "b"))
    try:
        await listening(a, b)
        await b.lookup()
        with redis.Redis(port=redis_server.port) as client:
            await until_async(lambda: bool(client.keys(f"{PREFIX}:a:*")))  # b's answer reached Redis
        admin_a = Worker(a.cache, a.upstream)
        async with serving((admin_a, ())) as (stub,):
            reply = await stub.EvictToken(admin_pb2.EvictTokenRequest(token=f"DPoP {TOKEN}\n"))
        assert reply.evicted >= 1  # b's L1 is not counted here; Redis's copy is
        assert len(b.cache.positive) == 0
        await a.lookup()
        assert a.upstream.calls == [TOKEN]  # not served from Redis
    finally:
        for sidecar in (a, b):
            await sidecar.tier.close()


async def _cli(address: str, *args: str) -> tuple[int, str]:
    out = io.StringIO()

    def run() -> int:
        with contextlib.redirect_stdout(out):
            return admin_main(["--admin", address, *args])

    code = await asyncio.to_thread(run)
    return code, out.getvalue()


async def test_admin_cli_says_when_a_token_eviction_evicted_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    w = worker()
    async with serving((w, ())):
        monkeypatch.setenv("AUTHZ_EVICT_TOKEN", "never-cached-token")
        code, out = await _cli(w.address, "evict-token")
    assert code == 0
    assert out.startswith("evicted 0 cache entries: the token from $AUTHZ_EVICT_TOKEN")
    assert "no worker here nor Redis held it" in out


async def test_admin_cli_says_when_a_subject_eviction_evicted_nothing() -> None:
    w = worker()
    async with serving((w, ())):
        await w.lookup()  # sub alice
        code, out = await _cli(w.address, "evict-subject", "Alice ")
    assert code == 0
    assert "evicted 0 cache entries: subject 'Alice '" in out
    assert "exactly" in out and "sub claim" in out
    assert len(w.cache.positive) == 1
