"""The shared replay reader against a real redis-server: the same entries as a follower's own XREAD,
many followers on one reader, a slow follower that misses nothing, and a new follower read at once."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from infra.redis.client import connect
from infra.redis.jobstore import JobStore, ReplayExpired
from infra.redis.replay import ReplayReader
from schemas.enums import EventSource
from schemas.events import Completed, TokenDelta

pytestmark = pytest.mark.integration


@pytest.fixture
async def redis(redis_url):
    client = connect(redis_url)
    yield client
    await client.aclose()


def _id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _token(job: str, seq: int):
    return TokenDelta(job_id=job, seq=seq, source=EventSource.WORKER, text=str(seq), tokens=1)


async def _apply(store: JobStore, event) -> int:
    return (await store.apply(event, event.model_dump_json().encode(), 1.0)).event_id


async def test_shared_follow_gives_what_an_own_xread_gives(redis):
    reader = ReplayReader(redis, block_ms=100)
    own, shared = JobStore(redis, replay_maxlen=3), JobStore(redis, replay_maxlen=3, replay=reader)
    job = _id("same")
    for event in [_token(job, seq) for seq in range(5)] + [Completed(job_id=job, seq=5, source=EventSource.WORKER)]:
        await _apply(own, event)
    record = await own.load(job)
    for after in (None, 4, 6):
        mine = [(e.id, e.data) async for e in own.follow(job, record, after, 50)]
        theirs = [(e.id, e.data) async for e in shared.follow(job, record, after, 50)]
        assert mine == theirs
    with pytest.raises(ReplayExpired):
        [e async for e in shared.follow(job, record, 1, 50)]
    await reader.aclose()


async def test_many_followers_one_reader_and_a_slow_one_misses_nothing(redis):
    reader = ReplayReader(redis, block_ms=200, queue_size=2)
    store = JobStore(redis, replay=reader)
    jobs = [_id("many") for _ in range(20)]
    for job in jobs:
        await _apply(store, _token(job, 0))
    records = {job: await store.load(job) for job in jobs}

    async def follow(job: str, slow: bool) -> list[int]:
        ids = []
        async for entry in store.follow(job, records[job], None, 100):
            if entry is not None:
                ids.append(entry.id)
                if slow:
                    await asyncio.sleep(0.01)
        return ids

    tasks = [asyncio.create_task(follow(job, slow=i == 0)) for i, job in enumerate(jobs)]
    async with asyncio.timeout(20):
        while reader.followers < len(jobs):
            await asyncio.sleep(0.01)
    for job in jobs:  # a new follower's log is read at once: no task waits for a block to end
        for seq in range(1, 12):
            await _apply(store, _token(job, seq))
        await _apply(store, Completed(job_id=job, seq=12, source=EventSource.WORKER))
    results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    assert all(ids == list(range(1, 14)) for ids in results)
    async with asyncio.timeout(20):
        while reader.followers:
            await asyncio.sleep(0.01)
    await reader.aclose()
