"""What the bundled broker can hold: why `genloom up` restarts it before a partition fills (Stack.recycle_full_broker).

The broker reads a partition from its first record batch at every fetch, and a fetch whose read outlasts the
fetch's wait comes back empty, however long the consumer goes on fetching. How that grows with the batches a
partition holds, and where each fetch wait stops bringing the end, depends on the machine's speed: it is
measured by bench/broker_batches.py (part 2, docs/benchmarks.md), not asserted here. The test below only
holds genloom's forced restart limit (`GENLOOM_KAFKA_BUNDLED_RECYCLE_FORCE_BATCHES`) to a partition whose
end the broker still serves at the shortest fetch wait genloom uses."""

from __future__ import annotations


import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from infra.kafka.broker import LocalBroker
from infra.kafka.clients import ensure_topics
from infra.kafka.topics import TopicSpec
from infra.settings import KafkaSettings
from infra.settings.streams import StreamsSettings

pytestmark = pytest.mark.integration


@pytest.fixture
def broker():
    with LocalBroker() as running:
        yield running


async def _fill(bootstrap: str, batches: int) -> str:
    """A fresh partition holding `batches` records of 100 bytes, each sent alone (a record batch each, as a
    worker's token events go); its topic."""
    topic = f"fill-{batches}"
    await ensure_topics(bootstrap, [TopicSpec(topic, 1, "job_id", "bytes", "test")])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    try:
        for i in range(batches):
            await producer.send_and_wait(topic, b"%100d" % i, partition=0)
    finally:
        await producer.stop()
    return topic


async def _read_the_end(bootstrap: str, topic: str, batches: int, fetch_wait_ms: int, timeout_s: float) -> int:
    """Read the partition's last record with fetches of `fetch_wait_ms` for `timeout_s` at most: how many came back."""
    reader = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, fetch_max_wait_ms=fetch_wait_ms)
    await reader.start()
    try:
        tp = TopicPartition(topic, 0)
        reader.assign([tp])
        reader.seek(tp, batches - 1)
        got = await reader.getmany(tp, timeout_ms=int(timeout_s * 1000))
        return sum(len(records) for records in got.values())
    finally:
        await reader.stop()


async def test_a_partition_at_the_forced_restart_limit_serves_its_end_at_the_shortest_fetch_wait_genloom_uses(broker):
    limit = KafkaSettings().bundled_recycle_force_batches
    shortest = min(StreamsSettings().fetch_max_wait_ms, KafkaSettings().fetch_max_wait_ms)
    topic = await _fill(broker.bootstrap, limit)
    assert await _read_the_end(broker.bootstrap, topic, limit, shortest, timeout_s=5.0) == 1
