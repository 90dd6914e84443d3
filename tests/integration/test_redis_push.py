"""The replay reader's Pub/Sub connection against a real redis-server: a burst of messages comes back
from few reads, whole and in order; a connection Redis closes is an error, after which the reader
connects again and its follower misses nothing; a connection that stops answering is found by its ping."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

from infra.redis.client import connect
from infra.redis.jobrecord import JobRecord
from infra.redis.jobstore import JobStore
from infra.redis.push import PushConnection
from infra.redis.replay import ReplayReader
from infra.redis.server import LocalRedis
from schemas.enums import EventSource, JobStatus, Modality
from schemas.events import Completed, TokenDelta

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis():
    """A redis-server of this test's own: the tests kill and pause its Pub/Sub clients."""
    with LocalRedis() as server:
        client = connect(server.url)
        yield client
        await client.aclose()


async def _read_until(conn: PushConnection, count: int) -> tuple[list[list], int]:
    """`count` messages and how many reads they took."""
    got, reads = [], 0
    async with asyncio.timeout(10):
        while len(got) < count:
            got += await conn.read(1.0)
            reads += 1
    return got, reads


async def test_a_burst_comes_back_whole_in_order_from_few_reads(redis):
    channel = f"push-{uuid.uuid4().hex[:8]}".encode()
    conn = PushConnection(redis)
    await conn.connect()
    try:
        await conn.subscribe(channel)
        [confirmed], _ = await _read_until(conn, 1)
        assert confirmed == [b"subscribe", channel, 1]
        pipe = redis.pipeline(transaction=False)
        for i in range(200):
            pipe.publish(channel, b"entry %d" % i)
        assert await pipe.execute() == [1] * 200  # one subscriber: this connection
        got, reads = await _read_until(conn, 200)
        assert got == [[b"message", channel, b"entry %d" % i] for i in range(200)]
        assert reads < 50  # a read takes what arrived, not one message each
        assert await conn.read(0.05) == []  # nothing more: an idle wait ends empty
        await conn.unsubscribe(channel)
        [left], _ = await _read_until(conn, 1)
        assert left == [b"unsubscribe", channel, 0]
    finally:
        await conn.aclose()


async def test_a_connection_that_stops_answering_is_found_by_its_ping(redis):
    conn = PushConnection(redis)
    await conn.connect()
    try:
        await conn.ping()
        [pong], _ = await _read_until(conn, 1)
        assert pong == b"PONG"  # before any subscription, a plain reply
        await conn.subscribe(b"push-ping")
        await _read_until(conn, 1)
        await conn.ping()
        [pong], _ = await _read_until(conn, 1)
        assert pong == [b"pong", b""]  # subscribed: a message of its own kind
        await conn.ping()  # answered: a second ping may go out
        await _read_until(conn, 1)
        await redis.execute_command("CLIENT", "PAUSE", "2000", "ALL")  # the pong to the next ping waits
        try:
            await conn.ping()
            assert await conn.read(0.2) == []
            with pytest.raises(RedisConnectionError, match="did not answer"):
                await conn.ping()
        finally:
            await redis.execute_command("CLIENT", "UNPAUSE")
    finally:
        await conn.aclose()


async def test_a_connection_redis_closes_is_an_error_and_the_reader_follows_on(redis, caplog):
    conn = PushConnection(redis)
    await conn.connect()
    await conn.subscribe(b"push-killed")
    await _read_until(conn, 1)
    await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
    with pytest.raises(RedisConnectionError):
        async with asyncio.timeout(5):
            while True:
                await conn.read(1.0)
    await conn.aclose()

    reader = ReplayReader(redis, block_ms=100)
    store = JobStore(redis, replay=reader)
    job = f"push-{uuid.uuid4().hex[:8]}"
    await store.admit(job, JobRecord(status=JobStatus.QUEUED, tenant="t", modality=Modality.TEXT, fingerprint="f",
                                     created_at=1.0), max_inflight=100)
    record = await store.load(job)
    follow = store.follow(job, record, None, 100)
    payload = lambda e: e.model_dump_json().encode()  # noqa: E731
    got = []
    async with asyncio.timeout(20):
        for seq in range(6):
            if seq == 3:  # Redis drops the reader's connection mid-stream
                await redis.execute_command("CLIENT", "KILL", "TYPE", "pubsub")
            event = TokenDelta(job_id=job, seq=seq, source=EventSource.WORKER, text=str(seq), tokens=1)
            await store.apply(event, payload(event), 1.0)
            while len(got) < seq + 1:
                entry = await anext(follow)
                if entry is not None and entry.type == "token":
                    got.append(entry.event.text)
        done = Completed(job_id=job, seq=6, source=EventSource.WORKER)
        await store.apply(done, payload(done), 1.0)
        while True:
            entry = await anext(follow)
            if entry is not None and entry.terminal:
                break
    assert got == [str(seq) for seq in range(6)]
    assert any("replay reader: ConnectionError" in r.getMessage() for r in caplog.records)  # it did reconnect
    await follow.aclose()
    await reader.aclose()
