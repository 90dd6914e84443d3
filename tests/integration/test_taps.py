"""Taps (streams/tap.py) on the real broker: batches in order, commits behind the handler, a fresh group
starts where the faust group stood, and a handler that fails commits nothing past what it finished."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from aiokafka import TopicPartition

from infra.kafka import clients
from infra.kafka.topics import TopicSpec
from infra.settings.streams import StreamsSettings
from streams.tap import Tap
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import started_producer, wait_until

pytestmark = pytest.mark.integration

SETTINGS = StreamsSettings(session_timeout_s=2, heartbeat_s=0.5, rebalance_timeout_s=5)


class Recording:
    """A tap handler that keeps what it was given; fails on the value `poison`."""

    dead_letters = None

    def __init__(self, poison: bytes | None = None) -> None:
        self.values: list[bytes] = []
        self.opened = self.closed = False
        self._poison = poison

    async def open(self) -> None:
        self.opened = True

    async def handle(self, records) -> None:
        for r in records:
            if r.value == self._poison:
                raise RuntimeError("poison")
            self.values.append(r.value)

    async def close(self) -> None:
        self.closed = True


async def a_topic(bootstrap: str, n: int) -> str:
    topic = f"tap-{uuid.uuid4().hex[:8]}"
    await clients.ensure_topics(bootstrap, [TopicSpec(topic, 1, "job_id", "bytes", "test")])
    producer = await started_producer(bootstrap)
    try:
        for i in range(n):
            await producer.send_and_wait(topic, str(i).encode())
    finally:
        await producer.stop()
    return topic


async def committed(bootstrap: str, group: str, topic: str) -> int | None:
    consumer = clients.consumer(bootstrap, group_id=group, **FAST_GROUP)
    await clients.start_client(consumer, bootstrap)
    try:
        return await consumer.committed(TopicPartition(topic, 0))
    finally:
        await consumer.stop()


async def run_until(tap: Tap, handler: Recording, count: int) -> None:
    task = asyncio.create_task(tap.run())
    try:
        await wait_until(lambda: len(handler.values) >= count or task.done(), timeout=30)
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def test_a_tap_hands_over_every_record_in_order_and_a_restart_resumes_after_its_commit(kafka_bootstrap):
    topic = await a_topic(kafka_bootstrap, 5)
    group = f"g-{uuid.uuid4().hex[:6]}"
    first = Recording()
    await run_until(Tap(group, [topic], first, bootstrap=kafka_bootstrap, settings=SETTINGS), first, 5)
    assert first.values == [b"0", b"1", b"2", b"3", b"4"] and first.opened and first.closed
    assert await committed(kafka_bootstrap, group, topic) == 5  # flushed when it stopped

    producer = await started_producer(kafka_bootstrap)
    await producer.send_and_wait(topic, b"5")
    await producer.stop()
    second = Recording()
    await run_until(Tap(group, [topic], second, bootstrap=kafka_bootstrap, settings=SETTINGS), second, 1)
    assert second.values == [b"5"]


async def test_a_new_tap_group_starts_where_the_faust_group_stood(kafka_bootstrap):
    topic = await a_topic(kafka_bootstrap, 6)
    legacy = f"faust-{uuid.uuid4().hex[:6]}"
    old = clients.consumer(kafka_bootstrap, topic, group_id=legacy, **FAST_GROUP)
    await clients.start_client(old, kafka_bootstrap)
    try:
        await wait_until(lambda: bool(old.assignment()), timeout=30)
        await old.commit({TopicPartition(topic, 0): 4})  # the faust app had handled 0..3
    finally:
        await old.stop()
    handler = Recording()
    tap = Tap(f"{legacy}-fanout", [topic], handler, bootstrap=kafka_bootstrap, settings=SETTINGS,
              legacy_group=legacy)
    await run_until(tap, handler, 2)
    assert handler.values == [b"4", b"5"]


async def test_a_new_tap_group_without_a_faust_commit_reads_the_topic_from_its_start(kafka_bootstrap):
    topic = await a_topic(kafka_bootstrap, 3)
    handler = Recording()
    tap = Tap(f"g-{uuid.uuid4().hex[:6]}", [topic], handler, bootstrap=kafka_bootstrap, settings=SETTINGS,
              legacy_group=f"never-{uuid.uuid4().hex[:6]}")
    await run_until(tap, handler, 3)
    assert handler.values == [b"0", b"1", b"2"]


async def test_a_failing_handler_ends_the_tap_and_commits_nothing_of_its_batch(kafka_bootstrap):
    topic = await a_topic(kafka_bootstrap, 3)
    group = f"g-{uuid.uuid4().hex[:6]}"
    handler = Recording(poison=b"1")
    tap = Tap(group, [topic], handler, bootstrap=kafka_bootstrap, settings=SETTINGS)
    with pytest.raises(RuntimeError, match="poison"):
        await asyncio.wait_for(tap.run(), 30)
    assert handler.closed
    # never past the poisoned record (at offset 1): it and what follows are read again by whoever runs next
    assert (await committed(kafka_bootstrap, group, topic) or 0) <= 1
