"""The redis-py clients of one ``cache.redis`` topology: one for commands, one for blocking reads (the eviction
feed's ``BLPOP`` on its acknowledgements, which may wait longer than ``timeout_seconds``), and a fresh one per
attempt to subscribe to the eviction channel.

- standalone (``url``): ``Redis.from_url``;
- sentinel: ``Sentinel.master_for``: every new connection asks the Sentinels for the primary, and a connection to a
  demoted primary is dropped (redis-py turns its ``READONLY`` into a connection error), so the tier follows a
  failover without a restart. The subscription is on the primary too (Sentinel disconnects the clients of an
  instance it reconfigures, so a subscriber notices a failover and comes back on the new primary);
- cluster: ``RedisCluster`` (slots, ``MOVED``, multi-key ``DEL`` split per slot, ``SCAN`` over every primary). The
  eviction channel is sharded (``SSUBSCRIBE`` on the primary owning its slot; ``authz.cache.eviction_feed`` says
  why).

TLS and the ACL user (``authz.config.redis``) apply to every connection, the Sentinels' included.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

import redis.asyncio as aioredis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from authz.config.redis import RedisConfig

__all__ = ["RedisClients"]

# a subscription's reads block: no read timeout; keep-alive and a PING now and then find a dead peer; and no retry,
# which would resubscribe behind our back and hide the gap (messages sent meanwhile are lost: the feed must know)
_SUBSCRIBER: dict[str, Any] = {"socket_keepalive": True, "health_check_interval": 5, "retry": Retry(NoBackoff(), 0)}


def _tls(config: RedisConfig) -> dict[str, Any]:
    if not config.uses_tls:
        return {}
    tls = config.tls
    options: dict[str, Any] = {"ssl_cert_reqs": "required", "ssl_check_hostname": tls is None or tls.check_hostname}
    if tls is not None:
        options.update(ssl_ca_certs=tls.ca_file, ssl_certfile=tls.cert_file, ssl_keyfile=tls.key_file)
    if config.url is None:
        options["ssl"] = True  # a rediss:// url says it itself
    return options


def _user(username: str | None, password: Any) -> dict[str, Any]:
    return {"username": username, "password": password.reveal() if password is not None else None}


class RedisClients:
    """``commands``: the client for GET, SET, DEL, SCAN, PUBLISH; ``blocking()``: the one for BLPOP; ``subscriber()``:
    a new client to subscribe with."""

    def __init__(self, config: RedisConfig) -> None:
        self.topology = config.topology
        self._connect_timeout = max(1.0, config.timeout_seconds * 20)
        self.longest_block = self._connect_timeout  # seconds a blocking read on ``blocking()`` may ask to wait
        self._options: dict[str, Any] = {**_tls(config), **_user(config.username, config.password)}
        self._timeout = timeout = config.timeout_seconds
        timeouts: dict[str, Any] = {"socket_timeout": timeout, "socket_connect_timeout": timeout}
        self._url = config.url or ""
        self._sentinel: Sentinel | None = None
        self._service, self._db = "", 0
        self._nodes: list[ClusterNode] = []
        if config.sentinel is not None:
            sentinel = config.sentinel
            tls = {k: v for k, v in self._options.items() if k.startswith("ssl")}
            self._sentinel = Sentinel(  # type: ignore[no-untyped-call]  # redis-py's Sentinel has no annotations
                sentinel.hosts, sentinel_kwargs={**timeouts, **tls, **_user(sentinel.username, sentinel.password)},
                **self._options)
            self._service, self._db = sentinel.service_name, sentinel.db
        elif config.cluster is not None:
            self._nodes = [ClusterNode(host, port) for host, port in config.cluster.hosts]
        else:
            assert config.url is not None, "cache.redis has no topology"
        self.commands = self._client(timeouts)
        self._blocking: aioredis.Redis | RedisCluster | None = None

    def _client(self, timeouts: dict[str, Any]) -> aioredis.Redis | RedisCluster:
        """A commands client of this topology with these socket timeouts."""
        if self._sentinel is not None:
            return cast(aioredis.Redis, self._sentinel.master_for(self._service, db=self._db, **timeouts))
        if self._nodes:
            return RedisCluster(startup_nodes=self._nodes, **timeouts, **self._options)
        return aioredis.Redis.from_url(self._url, **timeouts, **self._options)

    def blocking(self) -> aioredis.Redis | RedisCluster:
        """The client for blocking reads of up to ``longest_block`` seconds (``commands``' reads give up after
        ``timeout_seconds``); made on first use, closed by ``aclose``. A second past the longest block covers the
        server's own timer granularity."""
        if self._blocking is None:
            self._blocking = self._client({"socket_timeout": self.longest_block + 1.0,
                                           "socket_connect_timeout": self._timeout})
        return self._blocking

    async def subscriber(self, channel: str) -> aioredis.Redis:
        """A new client for one attempt at subscribing to ``channel``; the caller closes it. Sentinel: the primary
        now; cluster: the primary owning the channel's slot (sharded pub/sub)."""
        blocking: dict[str, Any] = {"socket_connect_timeout": self._connect_timeout, **_SUBSCRIBER}
        if self._sentinel is not None:
            return cast(aioredis.Redis, self._sentinel.master_for(self._service, db=self._db, **blocking))
        if isinstance(self.commands, RedisCluster):
            await asyncio.wait_for(self.commands.initialize(), self._connect_timeout)
            node = self.commands.get_node_from_key(channel)
            if node is None:
                raise ConnectionError(f"no node serves the slot of {channel}")
            return aioredis.Redis(host=node.host, port=int(node.port), **blocking, **self._options)
        return aioredis.Redis.from_url(self._url, **blocking, **self._options)

    async def aclose(self) -> None:
        await self.commands.aclose()
        if self._blocking is not None:
            await self._blocking.aclose()
        if self._sentinel is not None:
            for sentinel in self._sentinel.sentinels:
                await sentinel.aclose()
