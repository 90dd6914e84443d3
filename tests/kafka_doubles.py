"""In-memory stand-ins for aiokafka's consumer and producer, for unit tests of the runners' logic.

One `MemoryLog` holds every topic (one list of messages per partition); a `MemoryProducer` appends
to it and a `MemoryConsumer` reads it, either subscribed (it gets every partition of its topics) or
assigned. Commits are recorded, so a test can see what a runner committed and when.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from aiokafka import TopicPartition


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()


class MemoryLog:
    def __init__(self, partitions: dict[str, int] | None = None) -> None:
        self._partitions = dict(partitions or {})
        self.topics: dict[TopicPartition, list[Message]] = {}

    def partitions_for(self, topic: str) -> set[int]:
        return set(range(self._partitions.get(topic, 1)))

    def append(self, topic: str, value: bytes | None, key: bytes | None = None, partition: int = 0,
               headers=None) -> Message:
        tp = TopicPartition(topic, partition)
        messages = self.topics.setdefault(tp, [])
        msg = Message(topic, partition, len(messages), key, value, tuple(headers or ()))
        messages.append(msg)
        return msg

    def read(self, topic: str) -> list[Message]:
        return [m for tp, ms in sorted(self.topics.items()) if tp.topic == topic for m in ms]


class MemoryProducer:
    def __init__(self, log: MemoryLog) -> None:
        self._log = log
        self.started = False
        #: what was sent without ringing its topic's doorbell (`RingingProducer.send(ring=False)`)
        self.unrung: list[Message] = []

    async def start(self) -> None:
        self.started = True

    async def stop(self) -> None:
        self.started = False

    async def send(self, topic: str, value: bytes, key: bytes | None = None, headers=None,
                   ring: bool = True) -> asyncio.Future:
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(self._log.append(topic, value, key, headers=headers))
        if not ring:
            self.unrung.append(fut.result())
        return fut

    async def send_and_wait(self, topic: str, value: bytes, key: bytes | None = None, headers=None) -> Message:
        return await (await self.send(topic, value, key, headers))


class MemoryConsumer:
    def __init__(self, log: MemoryLog, *topics: str) -> None:
        self._log = log
        self._topics = list(topics)
        self._listener = None
        self._assigned: list[TopicPartition] = []
        self._positions: dict[TopicPartition, int] = {}
        self._paused: set[TopicPartition] = set()
        self.committed: dict[TopicPartition, int] = {}
        self.commits: list[dict[TopicPartition, int]] = []
        #: how many of the next polls raise, as a broker hiccup would
        self.failing_polls = 0
        self.polls = 0
        self.running = False

    # -- lifecycle and assignment ------------------------------------------------------------------

    def subscribe(self, topics: list[str], listener=None) -> None:
        self._topics = list(topics)
        self._listener = listener

    async def start(self) -> None:
        self.running = True
        if self._topics:
            self.assign([TopicPartition(t, p) for t in self._topics for p in sorted(self._log.partitions_for(t))])
            if self._listener is not None:
                await self._listener.on_partitions_assigned(set(self._assigned))

    async def stop(self) -> None:
        self.running = False

    def assign(self, tps: list[TopicPartition]) -> None:
        self._assigned = list(tps)
        for tp in tps:
            self._positions.setdefault(tp, self.committed.get(tp, 0))

    def assignment(self) -> set[TopicPartition]:
        return set(self._assigned)

    def partitions_for_topic(self, topic: str) -> set[int]:
        return self._log.partitions_for(topic)

    async def offsets_for_times(self, timestamps: dict) -> dict:
        return {tp: None for tp in timestamps}

    async def seek_to_beginning(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self._positions[tp] = 0

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self._positions[tp] = offset

    def pause(self, *tps: TopicPartition) -> None:
        self._paused.update(tps)

    def resume(self, *tps: TopicPartition) -> None:
        self._paused.difference_update(tps)

    def paused(self) -> set[TopicPartition]:
        return set(self._paused)

    # -- reading -------------------------------------------------------------------------------

    async def getmany(self, timeout_ms: int = 0, max_records: int | None = None) -> dict:
        self.polls += 1
        if not self.running:
            raise RuntimeError("consumer is stopped")
        if self.failing_polls:
            self.failing_polls -= 1
            raise ConnectionError("broker hiccup")
        out: dict[TopicPartition, list[Message]] = {}
        room = max_records if max_records is not None else 10**9
        for tp in self._assigned:
            if tp in self._paused or room <= 0:
                continue
            position = self._positions[tp]
            batch = self._log.topics.get(tp, [])[position:position + room]
            if batch:
                out[tp] = batch
                self._positions[tp] = position + len(batch)
                room -= len(batch)
        if not out:
            await asyncio.sleep(0.001)  # an empty poll waits a moment, as a real one does
        return out

    async def end_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self._log.topics.get(tp, [])) for tp in tps}

    async def position(self, tp: TopicPartition) -> int:
        return self._positions[tp]

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.commits.append(dict(offsets))
        self.committed.update(offsets)

