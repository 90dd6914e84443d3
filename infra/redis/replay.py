"""One reader of replay logs per process: live entries pushed over Pub/Sub, backlogs read with XRANGE.

Following a job used to be one blocking XREAD, and so one pooled Redis connection, per stream. Then
one task read every followed log in a single XREAD of many keys: one connection, but each read
sent and parsed every followed key, so at 100 streams the reader cost more CPU per event than the
streams themselves, and added latency (bench/edge_fanout.py measures both).

Now the fan-out publishes each entry it appends, whole (`replay_dispatch.push_payload`), on a
channel named as the log's key, in the same Lua call as the XADD. A `ReplayReader` holds one
Pub/Sub connection per process (`push.PushConnection`: each socket read's messages parsed at once),
subscribed to the logs followed here, and hands each pushed entry
to its followers' bounded queues (`replay_dispatch.Dispatcher`): one small message per event,
whatever the number of streams. A follower registers with `open` (its channel is subscribed at
once: nothing waits for the reader's current wait to end) and leaves with `Subscription.close`
(the reader unsubscribes a log nobody follows within one block interval).

Pub/Sub delivers at most once, so the log stays the truth: a follower starts behind and reads its
backlog after its cursor with XRANGE (this is the replay of Last-Event-ID) once its channel's
subscription is confirmed; a follower whose queue was full when an entry came, or that saw a gap,
is behind again and reads from its cursor once it has room (a slow client holds at most
`queue_size` entries in memory and misses nothing); after a reconnect every follower reads from its
cursor; and an idle follower reads its log once per keep-alive interval, so even a push lost on the
way (a fan-out older than this reader publishes none) costs one interval, never the entry.

A Redis error does not end any follower: the reader backs off and connects again, the followers keep
their keep-alives meanwhile. The task ends when nobody follows anything, and starts again with the
next follower.

The store's epoch key (`keys.store_epoch`) is read when the reader connects, once per block interval,
and with every backlog read. When it is gone or changed, Redis lost its data while these followers
waited: a log started again from entry 1 would hide entries below their cursors, so every follower
of that moment gets `StoreReset` instead of entries, and decides from the job's record what to do
(`JobStore.follow`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import keys
from .push import PushConnection
from .replay_dispatch import Dispatcher, Follower, RawEntry

log = logging.getLogger(__name__)

__all__ = ["RawEntry", "ReplayReader", "StoreReset", "Subscription"]

#: longest the reader waits for a message before it checks the store's epoch and its subscriptions
BLOCK_MS = 1000
#: most entries read per backlog read
BATCH = 256
#: entries a follower may have waiting; past that it reads its log again once it has room
QUEUE_SIZE = 512
_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)


class StoreReset(Exception):
    """Redis lost its data while this follower waited: its log may have been renumbered."""


def _expire(waiter: asyncio.Future) -> None:
    if not waiter.done():
        waiter.set_result(None)


class Subscription:
    """One follower's entries of one log, after its cursor, in order."""

    def __init__(self, reader: ReplayReader, follower: Follower) -> None:
        self._reader = reader
        self._follower = follower
        self._waiter: asyncio.Future | None = None
        self.key = follower.key

    @property
    def cursor(self) -> int:
        return self._follower.cursor

    def wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def get(self, timeout_s: float) -> RawEntry | None:
        """The next entry, or None when none came within `timeout_s`; StoreReset once the entries
        handed over before the store lost its data are taken."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout_s
        follower = self._follower
        while True:
            raw = follower.take()
            if raw is not None:
                return raw
            if follower.reset:
                raise StoreReset(self.key.decode())
            if follower.behind and self._reader.subscribed(self.key) and await self._reader.catch_up(follower):
                continue
            left = deadline - loop.time()
            if left <= 0:
                follower.behind = True  # idle: read the log once at the next get, in case a push was lost
                return None
            # a timer on the waiter rather than asyncio.wait_for, which adds a future, callbacks and (3.12+)
            # a timeout context to each call: this wait is made once per event per stream
            self._waiter = waiter = loop.create_future()
            timer = loop.call_later(left, _expire, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiter = None

    def close(self) -> None:
        self._reader.leave(self)


class ReplayReader:
    def __init__(self, redis: aioredis.Redis, *, block_ms: int = BLOCK_MS, batch: int = BATCH,
                 queue_size: int = QUEUE_SIZE) -> None:
        self._redis = redis
        self._block_s = block_ms / 1000
        self._batch = batch
        self._queue_size = queue_size
        self._dispatch = Dispatcher()
        self._subs: dict[Follower, Subscription] = {}
        self._pubsub = None
        self._requested: set[bytes] = set()  # channels SUBSCRIBE was sent for on the current connection
        self._confirmed: set[bytes] = set()  # of those, the ones Redis confirmed: pushes flow
        self._epoch: bytes | None = None
        self._next_check = 0.0
        self._task: asyncio.Task | None = None

    @property
    def followers(self) -> int:
        return len(self._dispatch)

    @property
    def following(self) -> frozenset[bytes]:
        """The logs followed now (their channels are subscribed, or will be within a block interval)."""
        return frozenset(self._dispatch.followers)

    @property
    def channels(self) -> frozenset[bytes]:
        """The channels subscribed on the reader's connection now."""
        return frozenset(self._requested)

    def subscribed(self, key: bytes) -> bool:
        return key in self._confirmed and self._epoch is not None

    async def open(self, key: str | bytes, cursor: int) -> Subscription:
        """Follow the log `key` after entry `cursor`."""
        key = key.encode() if isinstance(key, str) else key
        follower = Follower(key, cursor, self._queue_size)
        sub = Subscription(self, follower)
        self._subs[follower] = sub
        new = self._dispatch.add(follower)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="replay-reader")
        elif new and self._pubsub is not None:
            try:
                await self._sync()  # subscribe now; the confirmation wakes the follower
            except (RedisError, OSError) as exc:  # the reader connects again and subscribes it then
                log.warning("replay reader: could not subscribe %s: %s", key.decode(), exc)
        return sub

    def leave(self, sub: Subscription) -> None:
        follower = sub._follower
        self._subs.pop(follower, None)
        self._dispatch.remove(follower)  # its channel is unsubscribed at the reader's next turn

    async def catch_up(self, follower: Follower) -> bool:
        """Read the follower's log from its cursor; False when Redis could not be read."""
        missed, asked = follower.missed, min(self._batch, follower.room)
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(keys.store_epoch())
            pipe.xrange(follower.key, min=b"%d-0" % (follower.cursor + 1), count=asked)
            seen, entries = await pipe.execute()
        except (RedisError, OSError) as exc:
            log.warning("replay reader: reading %s: %s: %s", follower.key.decode(), type(exc).__name__, exc)
            return False
        if self._epoch is None:
            return False
        if seen != self._epoch:  # what this read returned may be numbered anew: hand none of it over
            self._lost()
            return True
        follower.offer(entries)
        follower.caught_up(len(entries), asked, missed)
        return True

    async def _sync(self) -> None:
        """Subscribe the channels of logs followed now, unsubscribe those nobody follows."""
        wanted = set(self._dispatch.followers)
        new, gone = wanted - self._requested, self._requested - wanted
        self._requested |= new
        self._requested -= gone
        self._confirmed -= gone
        if new:
            await self._pubsub.subscribe(*new)
        if gone:
            await self._pubsub.unsubscribe(*gone)

    async def _read_epoch(self) -> bytes:
        """The store's epoch, set here when this is the first reader of a new (or emptied) dataset."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(keys.store_epoch(), uuid.uuid4().hex, nx=True)
        pipe.get(keys.store_epoch())
        return (await pipe.execute())[1]

    async def _connect(self) -> None:
        pubsub = PushConnection(self._redis)
        try:
            await pubsub.connect()
            epoch = await self._read_epoch()
        except BaseException:
            await pubsub.aclose()
            raise
        if self._epoch is not None and epoch != self._epoch:
            self._lost()
        self._epoch = epoch
        self._pubsub, self._requested, self._confirmed = pubsub, set(), set()
        for follower in self._dispatch.everyone():  # pushes may have gone by while disconnected
            follower.behind = True
        await self._sync()

    async def _drop(self) -> None:
        pubsub, self._pubsub = self._pubsub, None
        self._requested, self._confirmed = set(), set()
        if pubsub is not None:
            with contextlib.suppress(RedisError, OSError):
                await pubsub.aclose()

    def _lost(self) -> None:
        log.warning("replay reader: Redis lost its data (the store epoch changed); ending %d follower(s)",
                    self.followers)
        self._epoch = None
        for follower, sub in list(self._subs.items()):
            follower.lost()
            sub.wake()

    async def _check_epoch(self, loop: asyncio.AbstractEventLoop) -> None:
        self._next_check = loop.time() + self._block_s
        if self._epoch is None:
            self._epoch = await self._read_epoch()
            for sub in list(self._subs.values()):
                sub.wake()  # those behind read their logs now
        elif await self._redis.get(keys.store_epoch()) != self._epoch:
            self._lost()

    def _handle(self, message: list | bytes) -> None:
        if not isinstance(message, list):  # b'PONG': pinged while nothing was subscribed
            return
        kind, channel = message[0], message[1]
        if kind == b"message":
            for follower in self._dispatch.push(channel, message[2]):
                self._subs[follower].wake()
        elif kind == b"subscribe" and channel in self._requested:
            self._confirmed.add(channel)
            for follower in self._dispatch.of(channel):
                self._subs[follower].wake()
        elif kind == b"unsubscribe":
            self._confirmed.discard(channel)

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        failures = 0
        while True:
            if not self._dispatch.followers:  # decided without awaiting: a new follower starts a new task
                self._task = None
                await self._drop()
                return
            try:
                if self._pubsub is None:
                    await self._connect()
                if loop.time() >= self._next_check:
                    await self._check_epoch(loop)
                    await self._sync()
                messages = await self._pubsub.read(self._block_s)  # hot loop: what one socket read brought
                for message in messages:
                    self._handle(message)
                if not messages:  # idle: ask for a pong, which the next wait must see (PushConnection.ping)
                    await self._pubsub.ping()
            except (RedisError, OSError, ValueError) as exc:
                delay = _BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)]
                failures += 1
                log.warning("replay reader: %s: %s; connecting again in %.1fs", type(exc).__name__, exc, delay)
                await self._drop()
                await asyncio.sleep(delay)
                continue
            failures = 0

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()
