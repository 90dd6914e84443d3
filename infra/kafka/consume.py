"""`ConsumeLoop`: the one Kafka consume loop of the workers and the moderation gate.

It polls (backing off when the broker hiccups), decodes each message or dead-letters it, hands
the decoded batch of one partition to the caller, and commits an offset only once the caller said
the message (and every earlier one of its partition) is done, i.e. its output was acknowledged.
The consumer and producer are passed in, so a loop runs as well on in-memory doubles as on
aiokafka clients. In burst mode it returns once the assigned partitions are drained.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from aiokafka import ConsumerRebalanceListener

from schemas.dlq import DeadLetter
from schemas.errors import describe_validation_error

from .dlq import Describe, decode_or_dead_letter, send_dead_letter
from .offsets import OffsetTracker

log = logging.getLogger(__name__)

T = TypeVar("T")

#: how often a `commit_behind` consumer of genloom's commits at most (the taps, the moderation gate): a
#: process that dies replays at most about this long's records, which its idempotent handler passes over;
#: every commit costs a round trip to the broker
COMMIT_GAP_S = 1.0

#: how long one poll waits while the partitions are paused or a burst drains (ms): the loop must come
#: round soon to resume them, or to see that the topic is drained
POLL_MS = 100
#: how long one poll waits otherwise (ms): records end the wait as soon as the fetcher has them, so
#: this only sets how often an idle loop wakes up for nothing
QUIET_POLL_MS = 2000
#: the pause after a failed poll before the next one (s)
BACKOFF_S = 0.5


@dataclass(frozen=True)
class Record(Generic[T]):
    """One decoded message and where it came from."""

    tp: Hashable
    offset: int
    key: bytes | None
    value: T
    #: the message's Kafka headers (name, value), as the producer sent them
    headers: tuple[tuple[str, bytes], ...] = ()


def _cancelling() -> int:
    """How many cancellations the running task has been asked for (its own, not its poll's)."""
    task = asyncio.current_task()
    return task.cancelling() if task is not None else 0


class ConsumeLoop(Generic[T]):
    """Poll → decode or dead-letter → `on_batch` → commit what was marked `done`.

    `on_batch(tp, records)` gets each partition's decoded records in order and calls `done(tp,
    *offsets)` for them once its effects are acknowledged (now or later, from another task).
    `on_poll(records)` instead gets every partition's records of one poll in one call (in order
    within each partition; each record names its partition): one round trip of the caller's for
    what a poll brought from several partitions.
    A message that does not decode goes to `genloom.dlq` through `dead_letters`, is passed to
    `on_rejected` (if any), and counts as done; with no `dead_letters` producer it is only logged.
    `capacity()` (if given) bounds how many messages may be in flight: at 0 the assigned partitions
    are paused, so the consumer keeps polling (heartbeats, rebalances) without taking more.
    `commit=False` is for a consumer without a group (nothing to commit). `commit_behind=True` takes
    commits off the loop's path: `done` notes the position and one background commit at a time sends
    what was noted meanwhile (commits coalesce under load, the next poll never waits for one); for
    consumers whose effects are idempotent, where a commit lost in a crash only means a replay.
    `commit_gap_s` spaces those commits (a crash replays at most that long's records).
    `flush()` sends what is owed at once and waits for it (before a revocation, at stop).
    """

    def __init__(
        self,
        consumer: Any,
        *,
        decode: Callable[[bytes], T],
        expected: str,
        group: str,
        on_batch: Callable[[Hashable, list[Record[T]]], Awaitable[None]] | None = None,
        on_poll: Callable[[list[Record[T]]], Awaitable[None]] | None = None,
        dead_letters: Any = None,
        on_rejected: Callable[[DeadLetter], Awaitable[None]] | None = None,
        describe: Describe = describe_validation_error,
        capacity: Callable[[], int] | None = None,
        commit: bool = True,
        commit_behind: bool = False,
        commit_gap_s: float = 0.0,
        poll_ms: int = POLL_MS,
        quiet_poll_ms: int = QUIET_POLL_MS,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        self._consumer = consumer
        self._decode = decode
        self._expected = expected
        self._group = group
        if (on_batch is None) == (on_poll is None):
            raise ValueError("give ConsumeLoop one of on_batch and on_poll")
        self._on_batch = on_batch
        self._on_poll = on_poll
        self._dead_letters = dead_letters
        self._on_rejected = on_rejected
        self._describe = describe
        self._capacity = capacity
        self._commit = commit
        self._commit_behind = commit_behind
        self._owed: dict[Hashable, int] = {}  # positions noted, not yet sent (commit_behind)
        self._committer: asyncio.Task | None = None
        self._commit_gap_s = commit_gap_s
        self._hurry = asyncio.Event()  # flush(): the next commit goes now, not after the gap
        self._poll_ms = poll_ms
        self._quiet_poll_ms = quiet_poll_ms
        self._backoff_s = backoff_s
        self._tracker = OffsetTracker()
        self._paused = False
        self._stopping = asyncio.Event()
        self._poll: asyncio.Future | None = None

    def stop(self) -> None:
        """End `run` now: a poll in flight (up to `quiet_poll_ms`) is cancelled, not waited out."""
        self._stopping.set()
        if self._poll is not None and not self._poll.done():
            self._poll.cancel()

    async def run(self, *, burst: bool = False) -> None:
        """Consume until `stop()`; with `burst`, return once every assigned partition is drained."""
        while not self._stopping.is_set():
            try:
                room = self._room()
                wait = self._poll_ms if burst or self._paused else self._quiet_poll_ms
                self._poll = asyncio.ensure_future(self._consumer.getmany(timeout_ms=wait, max_records=room))
                batches = await self._poll
            except asyncio.CancelledError:
                if self._stopping.is_set() and self._poll.cancelled() and not _cancelling():
                    return  # stop() ended the poll; nothing was taken from the fetcher
                raise
            except Exception as exc:  # a broker hiccup must not kill the worker
                log.warning("%s poll failed: %s", self._group, exc)
                await asyncio.sleep(self._backoff_s)
                continue
            if self._on_poll is not None:
                polled = [r for tp, messages in batches.items() for r in await self._decoded(tp, messages)]
                if polled:
                    await self._on_poll(polled)
            else:
                for tp, messages in batches.items():
                    records = await self._decoded(tp, messages)
                    if records:
                        await self._on_batch(tp, records)
            if burst and not batches and await self._drained():
                return

    def _room(self) -> int | None:
        if self._capacity is None:
            return None
        free = self._capacity()
        assignment = self._consumer.assignment()
        if free <= 0 and not self._paused and assignment:
            self._consumer.pause(*assignment)
            self._paused = True
        elif free > 0 and self._paused:
            self._consumer.resume(*self._consumer.paused())
            self._paused = False
        return max(free, 1)

    async def _drained(self) -> bool:
        assignment = list(self._consumer.assignment())
        if not assignment or self._paused:
            return False
        ends = await self._consumer.end_offsets(assignment)
        for tp in assignment:
            if await self._consumer.position(tp) < ends[tp]:
                return False
        return True

    async def _decoded(self, tp: Hashable, messages: list) -> list[Record[T]]:
        """The partition's messages decoded, in order; what does not decode is dead-lettered and done."""
        records: list[Record[T]] = []
        for msg in messages:  # hot loop: one pass over the polled batch
            self._tracker.add(tp, msg.offset)
            value = decode_or_dead_letter(
                self._decode, expected=self._expected, describe=self._describe, topic=tp.topic,
                partition=tp.partition, offset=msg.offset, key=msg.key, value=msg.value, consumer=self._group,
            )
            if isinstance(value, DeadLetter):
                await self._reject(value)
                await self.done(tp, msg.offset)
            else:
                records.append(Record(tp, msg.offset, msg.key, value, tuple(msg.headers or ())))
        return records

    async def _reject(self, letter: DeadLetter) -> None:
        if self._dead_letters is None:
            log.warning("ignoring malformed message at %s[%d]@%d: %s", letter.topic, letter.partition,
                        letter.offset, letter.error)
            return
        await send_dead_letter(self._dead_letters, letter)
        if self._on_rejected is not None:
            await self._on_rejected(letter)

    async def done(self, tp: Hashable, *offsets: int) -> None:
        """The messages at `offsets` are finished; commit their partition as far as that allows
        (once, however many offsets)."""
        position = None
        for offset in offsets:
            moved = self._tracker.done(tp, offset)
            position = moved if moved is not None else position
        if not self._commit or position is None or tp not in self._consumer.assignment():
            return
        if not self._commit_behind:
            await self._send_commit({tp: position})
            return
        self._owed[tp] = position
        if self._committer is None or self._committer.done():
            self._committer = asyncio.create_task(self._commit_owed())

    async def _commit_owed(self) -> None:
        while self._owed:  # what was noted while the last commit was in flight (or the gap) goes in the next
            owed, self._owed = self._owed, {}
            assigned = self._consumer.assignment()
            owed = {tp: position for tp, position in owed.items() if tp in assigned}
            if owed:
                await self._send_commit(owed)
            if self._commit_gap_s > 0 and not self._hurry.is_set():
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(self._hurry.wait(), self._commit_gap_s)

    async def _send_commit(self, positions: dict[Hashable, int]) -> None:
        try:
            await self._consumer.commit(positions)
        except Exception as exc:  # a lost commit only means a re-run, which is deduplicated
            log.warning("commit of %s failed: %s", ", ".join(f"{tp}@{p}" for tp, p in positions.items()), exc)

    async def flush(self) -> None:
        """Wait until every position noted so far was sent (commit_behind); a no-op otherwise."""
        self._hurry.set()
        try:
            while self._committer is not None and not self._committer.done():
                await asyncio.shield(self._committer)
        finally:
            self._hurry.clear()

    def forget(self, partitions) -> None:
        """Partitions were revoked: drop what was tracked for them."""
        for tp in partitions:
            self._tracker.forget(tp)


class FlushOnRevoke(ConsumerRebalanceListener):
    """For a `commit_behind` loop: before its partitions go to another member, send the positions noted
    for them, so the new owner starts after what this one finished; then forget them."""

    def __init__(self, loop: ConsumeLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked) -> None:
        await self._loop.flush()
        self._loop.forget(revoked)

    async def on_partitions_assigned(self, assigned) -> None:
        pass
