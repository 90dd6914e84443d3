"""One reader of replay logs per process: every followed job's log in one blocking XREAD.

Following a job used to be one blocking XREAD, and so one pooled Redis connection, per stream:
400 open streams were 400 connections. A `ReplayReader` runs one task that reads every followed
log in a single XREAD (it takes many keys) and hands the entries to each follower's bounded queue.
A follower registers with `open` and leaves with `Subscription.close`.

Registering while the reader is blocked appends to a small wake stream of this reader's own, which
is one of the keys it blocks on, so the new log is read at once. A follower whose queue is full is
left out of the reads until it has taken entries again (the reader reads from each follower's own
cursor, so nothing is skipped). A Redis error does not end any follower: the reader backs off and
reads again from the same cursors, and the followers keep their keep-alives meanwhile.
The task ends when nobody follows anything, and starts again with the next follower.

Each XREAD goes with a read of the store's epoch key (`keys.store_epoch`). When it is gone or
changed, Redis lost its data while these followers waited: a log started again from entry 1 would
hide entries below their cursors, so every follower of that moment gets `StoreReset` instead of
entries, and decides from the job's record what to do (`JobStore.follow`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from . import keys

log = logging.getLogger(__name__)

#: a raw entry: (stream id, fields)
RawEntry = tuple[bytes, dict[bytes, bytes]]

#: how long one XREAD blocks (below every client's socket timeout); a new follower wakes it anyway
BLOCK_MS = 1000
#: most entries read per log per XREAD
BATCH = 256
#: entries a follower may have waiting before the reader stops reading its log for it
QUEUE_SIZE = 512
#: the wake stream of each reader lives this long after its last wake
_WAKE_TTL_S = 3600
_BACKOFF_S = (0.1, 0.2, 0.5, 1.0, 2.0)


class StoreReset(Exception):
    """Redis lost its data while this follower waited: its log may have been renumbered."""


def _number(stream_id: bytes) -> int:
    return int(stream_id.split(b"-", 1)[0])


class Subscription:
    """One follower's entries of one log, after its cursor, in order."""

    def __init__(self, reader: ReplayReader, key: bytes, cursor: int, size: int) -> None:
        self._reader = reader
        self.key = key
        self.cursor = cursor  # the last entry number handed over
        self._queue: asyncio.Queue[RawEntry | None] = asyncio.Queue(size)
        self.reset = False

    @property
    def full(self) -> bool:
        return self._queue.full()

    def lost(self) -> None:
        """The store lost its data: no more entries; the follower's next `get` raises StoreReset."""
        self.reset = True
        if not self._queue.full():
            self._queue.put_nowait(None)  # wakes a waiting `get`

    def offer(self, entries: list[RawEntry]) -> None:
        if self.reset:
            return
        for stream_id, fields in entries:
            number = _number(stream_id)
            if number <= self.cursor:
                continue
            if self._queue.full():
                return  # read again from self.cursor once the follower has taken some
            self._queue.put_nowait((stream_id, fields))
            self.cursor = number

    async def get(self, timeout_s: float) -> RawEntry | None:
        """The next entry, or None when none came within `timeout_s`; StoreReset once the entries read
        before the store lost its data are taken."""
        if self.reset and self._queue.empty():
            raise StoreReset(self.key.decode())
        was_full = self._queue.full()
        try:
            entry = await asyncio.wait_for(self._queue.get(), timeout_s)
        except asyncio.TimeoutError:
            return None
        if entry is None:
            raise StoreReset(self.key.decode())
        if was_full:
            await self._reader.wake()  # read its log again
        return entry

    def close(self) -> None:
        self._reader.leave(self)


class ReplayReader:
    def __init__(self, redis: aioredis.Redis, *, block_ms: int = BLOCK_MS, batch: int = BATCH,
                 queue_size: int = QUEUE_SIZE) -> None:
        self._redis = redis
        self._block_ms = block_ms
        self._batch = batch
        self._queue_size = queue_size
        self._subs: dict[bytes, set[Subscription]] = {}
        self._wake_key = f"genloom:gateway:wake:{uuid.uuid4().hex}".encode()
        self._wake_id = b"0-0"
        self._task: asyncio.Task | None = None

    @property
    def followers(self) -> int:
        return sum(len(s) for s in self._subs.values())

    async def open(self, key: str | bytes, cursor: int) -> Subscription:
        """Follow the log `key` after entry `cursor`."""
        key = key.encode() if isinstance(key, str) else key
        sub = Subscription(self, key, cursor, self._queue_size)
        self._subs.setdefault(key, set()).add(sub)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="replay-reader")
        else:
            await self.wake()
        return sub

    def leave(self, sub: Subscription) -> None:
        subs = self._subs.get(sub.key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del self._subs[sub.key]

    async def wake(self) -> None:
        """End the reader's current block, so that it reads the logs followed now."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.xadd(self._wake_key, {b"w": b"1"}, maxlen=1, approximate=False)
            pipe.expire(self._wake_key, _WAKE_TTL_S)
            await pipe.execute()
        except RedisError as exc:  # the reader reads the new log after its block anyway
            log.warning("could not wake the replay reader: %s", exc)

    def _streams(self) -> dict[bytes, bytes]:
        streams: dict[bytes, bytes] = {}
        for key, subs in self._subs.items():
            cursors = [s.cursor for s in subs if not s.full]
            if cursors:
                streams[key] = b"%d-0" % min(cursors)
        streams[self._wake_key] = self._wake_id
        return streams

    async def _epoch(self) -> bytes:
        """The store's epoch, set here when this is the first reader of a new (or emptied) dataset."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.set(keys.store_epoch(), uuid.uuid4().hex, nx=True)
        pipe.get(keys.store_epoch())
        return (await pipe.execute())[1]

    def _lost(self) -> None:
        log.warning("replay reader: Redis lost its data (the store epoch changed); ending %d follower(s)",
                    self.followers)
        for subs in self._subs.values():
            for sub in subs:
                sub.lost()

    async def _run(self) -> None:
        failures = 0
        epoch: bytes | None = None
        while self._subs:
            try:
                if epoch is None:
                    epoch = await self._epoch()
                pipe = self._redis.pipeline(transaction=False)
                pipe.get(keys.store_epoch())  # on the XREAD's connection, just before it
                pipe.xread(self._streams(), count=self._batch, block=self._block_ms)
                seen, reply = await pipe.execute()
            except RedisError as exc:
                delay = _BACKOFF_S[min(failures, len(_BACKOFF_S) - 1)]
                failures += 1
                log.warning("replay reader: %s: %s; reading again in %.1fs", type(exc).__name__, exc, delay)
                await asyncio.sleep(delay)
                continue
            failures = 0
            if seen != epoch:  # what this XREAD returned may be numbered anew: hand none of it over
                self._lost()
                epoch = None
                continue
            for key, entries in reply or ():
                if key == self._wake_key:
                    self._wake_id = entries[-1][0]
                    continue
                for sub in list(self._subs.get(key, ())):
                    sub.offer(entries)
        self._task = None

    async def aclose(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        with contextlib.suppress(RedisError):
            await self._redis.delete(self._wake_key)
