"""The eviction feed: how one sidecar's evictions reach every sidecar sharing the Redis tier, and how the sender knows
each one applied them.

- The channel ``<prefix>:evictions`` carries ``authz.cache.evictions`` messages (hashes only, never a token):
  ``PUBLISH``/``SUBSCRIBE`` on the primary (standalone, Sentinel); in a Redis Cluster, sharded ``SPUBLISH``/
  ``SSUBSCRIBE`` on the primary owning the channel's slot, so that every subscriber is on the node that answers how
  many received a message (a regular ``PUBLISH`` in a cluster counts only the receiving node's subscribers).
- Every subscribed process is a *listener*: it registers in the sorted set ``<prefix>:listeners`` (member: a random
  id; score: the end of its lease, ms since the epoch) once subscribed, and renews the lease every third of it.
- A sender reads the set (and remembers what it read, so a Redis that lost its data still has its listeners waited
  for until their leases end), then publishes: fewer receivers than live listeners means a listener is between
  connections — ``publish`` is False at once and the eviction call answers UNAVAILABLE, to be retried. Otherwise it
  waits until each of those listeners, by id, acknowledged that it *applied* the message (``authz.cache.
  eviction_acks``: a count of receivers says only that Redis wrote it to some connections); one missing after the
  bound is a False too. So a True means every listener whose lease is live has applied it. A subscription is never
  restored behind our back (the clients retry nothing): a lost one is retried (0.1 s, doubling to 1 s), and once
  back the listener drops its L1 (``resynced``).
- A listener cut off for longer than its lease is no longer waited for; just before its lease ends (less
  ``CLOCK_SKEW_SECONDS``), it drops its L1 and keeps answers for at most a lease until it is back (``lapsed``).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable
from typing import Any, cast

from authz.cache.eviction_acks import acknowledge, collect_acks, frame, new_nonce, unframe
from authz.cache.evictions import CLOCK_SKEW_SECONDS
from authz.cache.redis_clients import RedisClients

__all__ = ["EvictionFeed"]

log = logging.getLogger("authz.cache.redis")

_FIRST_RETRY, _LAST_RETRY = 0.1, 1.0  # seconds between attempts to resubscribe
_FORGET_AFTER = 3600.0  # a listener gone (lease over, or left) this long is removed from the set
_REPLIES = ("subscribe", "ssubscribe", "pong")  # to our own commands and health checks
_MESSAGES = ("message", "smessage")


class EvictionFeed:
    def __init__(self, clients: RedisClients, prefix: str, lease_seconds: float, timeout_seconds: float,
                 failed: Callable[[str, BaseException], None], clock: Callable[[], float] = time.time) -> None:
        self.channel = f"{prefix}:evictions"
        self.listener_id = secrets.token_hex(8)
        self.subscribed = asyncio.Event()  # set while subscribed and registered (tests wait on it)
        self._set = f"{prefix}:listeners"
        self._acks = f"{prefix}:acks:"  # + a message's nonce: the ids of the listeners that applied it
        self._clients = clients
        self._sharded = clients.topology == "cluster"
        self._lease = lease_seconds
        self._bound = max(1.0, timeout_seconds * 20)  # evictions are rare and worth a wait
        self._failed = failed
        self._clock = clock
        self._seen: dict[str, float] = {}  # listener id -> end of its lease (s), as last read
        self._lease_end = 0.0  # of our own registration
        self._task: asyncio.Task[None] | None = None
        self._lapse_timer: asyncio.TimerHandle | None = None

    # --- sending ------------------------------------------------------------------------------------------------

    async def publish(self, message: bytes) -> bool:
        """Send an eviction; True when every listener whose lease is live has applied it (acknowledged it by id)."""
        redis = self._clients.commands
        nonce = new_nonce()
        try:
            expected = await asyncio.wait_for(self._live_listeners(), self._bound)
            send = redis.spublish if self._sharded else redis.publish
            received = int(await asyncio.wait_for(send(self.channel, frame(nonce, message)), self._bound))
        except Exception as exc:  # Redis unreachable: the caller is told the broadcast failed
            self._failed("PUBLISH", exc)
            return False
        if received < len(expected):
            log.warning("eviction reached %d of %d listening processes (the others are reconnecting); the caller is "
                        "told to retry", received, len(expected))
            return False
        return await self._applied_by(expected, self._acks + nonce)

    async def _applied_by(self, expected: set[str], key: str) -> bool:
        """Wait until every listener in ``expected`` acknowledged the message whose acks go to ``key``."""
        wait = min(self._bound, self._clients.longest_block)
        try:
            missing = await asyncio.wait_for(collect_acks(self._clients.blocking(), key, expected, wait), wait + 1.0)
        except Exception as exc:  # Redis gone meanwhile: whether they applied it is unknown
            self._failed("eviction acks", exc)
            return False
        try:
            await asyncio.wait_for(self._clients.commands.delete(key), self._bound)
        except Exception as exc:  # acks of listeners not waited for: the list expires on its own
            log.debug("redis: could not delete an eviction's acks (%s)", type(exc).__name__)
        if missing:
            log.warning("eviction applied by %d of %d listening processes within %.1fs (the others are slow or "
                        "gone without leaving); the caller is told to retry", len(expected) - len(missing),
                        len(expected), wait)
            return False
        return True

    async def _live_listeners(self) -> set[str]:
        listeners = await self._clients.commands.zrange(self._set, 0, -1, withscores=True)
        for member, score in cast(list[tuple[Any, float]], listeners):
            self._seen[member.decode() if isinstance(member, bytes) else str(member)] = float(score) / 1000
        now = self._clock()
        self._seen = {member: end for member, end in self._seen.items() if end > now}
        return set(self._seen)

    # --- listening ----------------------------------------------------------------------------------------------

    def listen(self, received: Callable[[bytes], None], resynced: Callable[[], None],
               lapsed: Callable[[], None], joined: Callable[[], None] | None = None) -> None:
        """In the background: ``received(message)`` for each message; ``joined()`` once the first subscription is
        up (registered: from then on every eviction reaches it); ``resynced()`` when the subscription is back after a
        gap (also when the first attempts failed); ``lapsed()`` when the lease is about to end while the
        subscription is down."""
        if self._task is None:
            self._task = asyncio.ensure_future(self._listen(received, resynced, lapsed, joined))

    async def _register(self) -> None:
        now = self._clock()
        pipe = self._clients.commands.pipeline(transaction=False)
        pipe.zadd(self._set, {self.listener_id: (now + self._lease) * 1000})
        # scores are lease ends (> 0) or, for a listener that left, minus the time it left: one range drops both kinds
        # once they are _FORGET_AFTER old
        pipe.zremrangebyscore(self._set, -(now - _FORGET_AFTER) * 1000, (now - _FORGET_AFTER) * 1000)
        pipe.pexpire(self._set, int(_FORGET_AFTER * 1000))
        await asyncio.wait_for(pipe.execute(), self._bound)
        self._lease_end = now + self._lease

    async def _listen(self, received: Callable[[bytes], None], resynced: Callable[[], None],
                      lapsed: Callable[[], None], joined: Callable[[], None] | None) -> None:
        delay, lost = _FIRST_RETRY, False
        try:
            while True:
                client = await self._clients.subscriber(self.channel)
                try:
                    async with client.pubsub() as pubsub:
                        await self._subscribe(pubsub)
                        await self._register()
                        if lost:
                            log.warning("redis eviction subscription is back")
                            self._cancel_lapse()
                            resynced()
                        elif joined is not None:
                            joined()
                        joined = None  # once: the first subscription's
                        self.subscribed.set()
                        delay, lost = _FIRST_RETRY, False
                        await self._pump(pubsub, received)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:  # Redis down: checks carry on; retry with backoff
                    if not lost:
                        log.warning("redis eviction subscription lost (%s: %s); retrying", type(exc).__name__, exc)
                        self._lapse_at(lapsed)
                    self.subscribed.clear()
                    lost = True
                finally:
                    await client.aclose()
                await asyncio.sleep(delay)
                delay = min(delay * 2, _LAST_RETRY)
        finally:
            self.subscribed.clear()
            self._cancel_lapse()

    async def _subscribe(self, pubsub: Any) -> None:
        """Subscribe, and wait for the server to confirm it (a refusal, such as an ACL's, arrives as the reply)."""
        await (pubsub.ssubscribe if self._sharded else pubsub.subscribe)(self.channel)
        deadline = time.monotonic() + self._bound
        while time.monotonic() < deadline:
            reply = await pubsub.get_message(timeout=max(0.01, deadline - time.monotonic()))
            if reply is not None and reply.get("type") in ("subscribe", "ssubscribe"):
                return
        raise TimeoutError("the server did not confirm the subscription")

    async def _pump(self, pubsub: Any, received: Callable[[bytes], None]) -> None:
        """Deliver messages (acknowledging each once applied) and renew the lease until the subscription fails."""
        renew_at = self._clock() + self._lease / 3
        while True:
            message = await pubsub.get_message(timeout=min(5.0, self._lease / 3))
            if message is not None:
                kind = message.get("type")
                if kind in _MESSAGES:
                    nonce, payload = unframe(message["data"])
                    received(payload)
                    if nonce is not None:  # else an older sender's: it waits for no ack
                        await self._acknowledge(nonce)
                elif kind not in _REPLIES:  # the server ended it (a slot moved): subscribe again
                    raise ConnectionError(f"the server ended the subscription ({kind})")
            if self._clock() >= renew_at:
                renew_at = self._clock() + self._lease / 3
                try:
                    await self._register()
                except Exception as exc:  # still subscribed: messages arrive; the next renewal may succeed
                    self._failed("lease renewal", exc)

    async def _acknowledge(self, nonce: str) -> None:
        """Tell the sender this listener applied its message; a failure is counted, the pump goes on (the sender,
        missing this ack, answers "retry")."""
        try:
            await asyncio.wait_for(acknowledge(self._clients.commands, self._acks + nonce, self.listener_id,
                                               self._bound + 1.0), self._bound)
        except Exception as exc:
            self._failed("eviction ack", exc)

    def _lapse_at(self, lapsed: Callable[[], None]) -> None:
        delay = self._lease_end - CLOCK_SKEW_SECONDS - self._clock()
        self._cancel_lapse()
        self._lapse_timer = asyncio.get_running_loop().call_later(max(0.0, delay), lapsed)

    def _cancel_lapse(self) -> None:
        if self._lapse_timer is not None:
            self._lapse_timer.cancel()
            self._lapse_timer = None

    async def close(self) -> None:
        """Stop listening and leave the set, so senders stop waiting for this process at once."""
        if self._task is None:
            return
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        try:
            await asyncio.wait_for(self._clients.commands.zadd(self._set, {self.listener_id: -self._clock() * 1000}),
                                   self._bound)
        except Exception:
            log.info("redis: could not leave the listener set; senders wait for the lease to end")
