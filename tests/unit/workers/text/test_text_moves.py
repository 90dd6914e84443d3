"""A text job whose partition moves to another worker stops generating here, in the engine too."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka import TopicPartition

from infra.kafka.codec import decode_event, encode
from infra.kafka.topics import EVENTS_RAW, jobs_topic
from infra.models.loader import TextModelSpec
from schemas.enums import Modality
from schemas.requests import parse_request
from tests.kafka_doubles import MemoryConsumer, MemoryLog, MemoryProducer
from tests.kafka_helpers import wait_until
from workers.runner import JobRunner
from workers.text.handler import TextHandler

pytestmark = pytest.mark.slow

TOPIC = jobs_topic(Modality.TEXT)
TP = TopicPartition(TOPIC, 0)
MAX_TOKENS = 400


async def test_a_revoked_partition_aborts_its_jobs_in_the_engine():
    log = MemoryLog()
    request = parse_request({"job_id": "moves", "modality": "text", "params": {
        "messages": [{"role": "user", "content": "Write a very long story about a dragon."}],
        "max_tokens": MAX_TOKENS, "temperature": 0.0}})
    log.append(TOPIC, encode(request), key=b"moves")
    handler = TextHandler(TextModelSpec(), served_name="smollm2-135m-instruct", max_batch_size=2)
    runner = JobRunner(handler, producer=MemoryProducer(log), jobs=MemoryConsumer(log), control=MemoryConsumer(log),
                       worker_id="w-old")
    await runner.start()
    serving = asyncio.create_task(runner.run())
    try:
        await wait_until(lambda: handler.steps >= 3, timeout=120)
        await runner._drop_partitions({TP})  # the group gave the partition to another worker
        at_revoke = handler.steps
        engine = handler.engine.engine
        await wait_until(lambda: not engine.has_unfinished(), timeout=60)
        assert handler.steps - at_revoke < 20  # stopped within a step or two, not after MAX_TOKENS
        assert handler._queues == {} and runner.in_flight == 0
        types = [decode_event(m.value).type for m in log.read(EVENTS_RAW) if m.key == b"moves"]
        assert "started" in types and not {"completed", "failed", "cancelled"} & set(types)
    finally:
        await runner.stop()
        serving.cancel()
        await asyncio.gather(serving, return_exceptions=True)
