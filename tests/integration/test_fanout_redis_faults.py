"""The fan-out against a redis-server that refuses (out of memory, read-only during a failover) or
goes away: events wait and are applied once it is back, in order; only poison is dead-lettered."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from infra.procs import free_port
from infra.redis import keys
from infra.redis.client import connect
from infra.redis.jobstore import Appended, JobStore
from infra.redis.server import LocalRedis
from schemas.enums import EventSource, JobStatus
from schemas.events import Completed, ModelInfo, Started, TokenDelta, Usage
from infra.fanout.handler import FanoutHandler, RawMessage
from infra.fanout.logic import Malformed
from tests.kafka_helpers import wait_until

pytestmark = pytest.mark.integration

W = EventSource.WORKER
MODEL = ModelInfo(id="tiny", device="cpu", dtype="float32")


class CountingStore(JobStore):
    """The real store; counts the batches it was asked to apply (each try of the fan-out)."""

    calls = 0

    async def apply_batch(self, items, now):
        self.calls += 1
        return await super().apply_batch(items, now)


@pytest.fixture
async def server():
    with LocalRedis() as redis_server:
        yield redis_server


@pytest.fixture
async def redis(server):
    client = connect(server.url)
    yield client
    await client.aclose()


def messages(job_id: str, *events) -> list[RawMessage]:
    return [RawMessage("genloom.events", 0, i, job_id.encode(), e.model_dump_json().encode())
            for i, e in enumerate(events)]


def a_job(job_id: str) -> list[RawMessage]:
    return messages(
        job_id,
        Started(job_id=job_id, seq=0, attempt=1, source=W, worker="w", model=MODEL),
        TokenDelta(job_id=job_id, seq=1, attempt=1, source=W, text="a", tokens=1),
        Completed(job_id=job_id, seq=2, attempt=1, source=W, usage=Usage(completion_tokens=1), text="a"),
    )


REFUSALS = {
    "out of memory": ([("CONFIG", "SET", "maxmemory-policy", "noeviction"), ("CONFIG", "SET", "maxmemory", "1")],
                      [("CONFIG", "SET", "maxmemory", "0")]),
    "read-only replica (failover)": ([("REPLICAOF", "127.0.0.1", "{port}")], [("REPLICAOF", "NO", "ONE")]),
}


@pytest.mark.parametrize("refusal", list(REFUSALS))
async def test_events_wait_while_redis_refuses_writes_and_are_applied_after(redis, refusal):
    store = CountingStore(redis, job_ttl_s=60)
    handler = FanoutHandler(store, consumer="test")
    job_id = f"refused-{uuid.uuid4().hex[:6]}"
    refuse, restore = REFUSALS[refusal]
    port = str(free_port())
    for command in refuse:
        await redis.execute_command(*(part.replace("{port}", port) for part in command))
    try:
        applying = asyncio.create_task(handler.handle_batch(a_job(job_id)))
        await wait_until(lambda: store.calls >= 3, timeout=30)  # refused, and tried again
        assert not applying.done()
    finally:
        for command in restore:
            await redis.execute_command(*command)
    outcomes = await asyncio.wait_for(applying, 60)
    assert outcomes == [Appended(1, None), Appended(2, None), Appended(3, None)]
    record = await store.load(job_id)
    assert record.status == JobStatus.COMPLETED and record.text == "a" and record.terminal_id == 3


async def test_events_wait_while_redis_is_down_and_are_applied_after_its_restart(server, redis):
    store = CountingStore(redis, job_ttl_s=60)
    handler = FanoutHandler(store, consumer="test")
    job_id = f"down-{uuid.uuid4().hex[:6]}"
    server.stop()
    try:
        applying = asyncio.create_task(handler.handle_batch(a_job(job_id)))
        await wait_until(lambda: store.calls >= 2, timeout=30)
        assert not applying.done()
    finally:
        server.start()
    outcomes = await asyncio.wait_for(applying, 60)
    assert [type(o) for o in outcomes] == [Appended] * 3
    assert (await store.load(job_id)).status == JobStatus.COMPLETED


async def test_a_poison_message_is_still_dead_lettered_without_holding_the_others(redis):
    handler = FanoutHandler(JobStore(redis, job_ttl_s=60), consumer="test")
    poison, fine = f"poison-{uuid.uuid4().hex[:6]}", f"fine-{uuid.uuid4().hex[:6]}"
    await redis.set(keys.job_record(poison), "not a hash")  # every script call on it fails: WRONGTYPE
    outcomes = await asyncio.wait_for(handler.handle_batch(a_job(poison)[:1] + a_job(fine)), 30)
    assert isinstance(outcomes[0], Malformed) and "WRONGTYPE" in outcomes[0].letter.error
    assert [type(o) for o in outcomes[1:]] == [Appended] * 3


async def test_scripts_flushed_under_the_store_are_loaded_again_and_nothing_is_lost(redis):
    """The store runs its apply script by hash (no SCRIPT EXISTS round trip per batch): after a flush
    (or a restart) Redis answers NOSCRIPT; the store loads it and sends those calls again, in order."""
    store = CountingStore(redis, job_ttl_s=60)
    handler = FanoutHandler(store, consumer="test")
    first, second = f"flush-{uuid.uuid4().hex[:6]}", f"flush-{uuid.uuid4().hex[:6]}"
    assert [type(o) for o in await handler.handle_batch(a_job(first))] == [Appended] * 3
    await redis.script_flush()
    calls = store.calls
    outcomes = await asyncio.wait_for(handler.handle_batch(a_job(second)), 30)
    assert outcomes == [Appended(1, None), Appended(2, None), Appended(3, None)]
    assert store.calls == calls + 1  # NOSCRIPT: the store loaded the script and sent the calls again itself
    assert (await store.load(second)).status == JobStatus.COMPLETED
