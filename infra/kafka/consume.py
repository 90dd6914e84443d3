"""`ConsumeLoop`: the one Kafka consume loop of the workers and the moderation gate.

It polls (backing off when the broker hiccups), decodes each message or dead-letters it, hands
the decoded batch of one partition to the caller, and commits an offset only once the caller said
the message (and every earlier one of its partition) is done, i.e. its output was acknowledged.
The consumer and producer are passed in, so a loop runs as well on in-memory doubles as on
aiokafka clients. In burst mode it returns once the assigned partitions are drained.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from schemas.dlq import DeadLetter
from schemas.errors import describe_validation_error

from .dlq import Describe, decode_or_dead_letter, send_dead_letter
from .offsets import OffsetTracker

log = logging.getLogger(__name__)

T = TypeVar("T")

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
    A message that does not decode goes to `genloom.dlq` through `dead_letters`, is passed to
    `on_rejected` (if any), and counts as done; with no `dead_letters` producer it is only logged.
    `capacity()` (if given) bounds how many messages may be in flight: at 0 the assigned partitions
    are paused, so the consumer keeps polling (heartbeats, rebalances) without taking more.
    `commit=False` is for a consumer without a group (nothing to commit).
    """

    def __init__(
        self,
        consumer: Any,
        *,
        decode: Callable[[bytes], T],
        expected: str,
        group: str,
        on_batch: Callable[[Hashable, list[Record[T]]], Awaitable[None]],
        dead_letters: Any = None,
        on_rejected: Callable[[DeadLetter], Awaitable[None]] | None = None,
        describe: Describe = describe_validation_error,
        capacity: Callable[[], int] | None = None,
        commit: bool = True,
        poll_ms: int = POLL_MS,
        quiet_poll_ms: int = QUIET_POLL_MS,
        backoff_s: float = BACKOFF_S,
    ) -> None:
        self._consumer = consumer
        self._decode = decode
        self._expected = expected
        self._group = group
        self._on_batch = on_batch
        self._dead_letters = dead_letters
        self._on_rejected = on_rejected
        self._describe = describe
        self._capacity = capacity
        self._commit = commit
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
            for tp, messages in batches.items():
                await self._handle(tp, messages)
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

    async def _handle(self, tp: Hashable, messages: list) -> None:
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
        if records:
            await self._on_batch(tp, records)

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
        try:
            await self._consumer.commit({tp: position})
        except Exception as exc:  # a lost commit only means a re-run, which is deduplicated
            log.warning("commit of %s@%d failed: %s", tp, position, exc)

    def forget(self, partitions) -> None:
        """Partitions were revoked: drop what was tracked for them."""
        for tp in partitions:
            self._tracker.forget(tp)
