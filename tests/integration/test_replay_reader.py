"""The shared replay reader against a real redis-server: the same entries as a follower's own XREAD,
many followers on one reader, a slow follower that misses nothing, a new follower read at once, and
followers of jobs whose data Redis lost."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from infra.redis import keys
from infra.redis.client import connect
from infra.redis.jobrecord import JobRecord
from infra.redis.jobstore import JobStore, ReplayExpired
from infra.redis.replay import ReplayReader
from infra.redis.server import LocalRedis
from schemas.enums import ErrorCode, EventSource, JobStatus, Modality
from schemas.events import Completed, Failed, TokenDelta

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


async def _admitted(store: JobStore, job: str):
    record = JobRecord(status=JobStatus.QUEUED, tenant="t-lost", modality=Modality.TEXT, fingerprint="f1",
                       created_at=1.0)
    await store.admit(job, record, max_inflight=100)
    return await store.load(job)


async def _next_entries(follow, n: int) -> list:
    got = []
    while len(got) < n:
        entry = await anext(follow)
        if entry is not None:
            got.append(entry)
    return got


async def test_a_follower_whose_job_redis_lost_gets_one_retryable_failed_not_renumbered_entries():
    """Redis restarted empty while a job was followed; the fan-out then wrote the job's later events to a new
    log numbered from 1. The follower (cursor 3) used to skip entries 1..3 of it silently; now it ends."""
    with LocalRedis() as server:
        redis = connect(server.url)
        reader = ReplayReader(redis, block_ms=100)
        store = JobStore(redis, replay=reader)
        job = _id("lost")
        record = await _admitted(store, job)
        for seq in range(3):
            await _apply(store, _token(job, seq))
        follow = store.follow(job, record, None, 100)
        assert [e.id for e in await _next_entries(follow, 3)] == [1, 2, 3]
        server.kill()
        server.start()
        for seq in range(3, 7):  # the rest of the job, on the emptied store: entries 1..4 of a new log
            await _apply(store, _token(job, seq))
        await _apply(store, Completed(job_id=job, seq=7, source=EventSource.WORKER))
        async with asyncio.timeout(20):
            [end] = await _next_entries(follow, 1)
        assert end.id == 4 and end.terminal
        failed = end.event
        assert isinstance(failed, Failed) and failed.retryable and failed.code == ErrorCode.BACKEND_UNAVAILABLE
        assert (failed.source, failed.attempt, failed.seq) == (EventSource.GATEWAY, 0, 2)  # not accepted's (0)
        with pytest.raises(StopAsyncIteration):
            await anext(follow)
        await reader.aclose()
        await redis.aclose()


async def test_a_flush_ends_the_follower_and_a_store_that_kept_the_record_is_followed_on(redis):
    reader = ReplayReader(redis, block_ms=100)
    store = JobStore(redis, replay=reader)
    kept, flushed = _id("kept"), _id("flushed")
    records = {job: await _admitted(store, job) for job in (kept, flushed)}
    for job in records:
        await _apply(store, _token(job, 0))
    follows = {job: store.follow(job, records[job], None, 100) for job in records}
    for follow in follows.values():
        assert [e.id for e in await _next_entries(follow, 1)] == [1]
    # the epoch key goes away (as in a flush) but the kept job's record and log are still there
    await redis.delete(keys.store_epoch(), keys.job_record(flushed), keys.replay_log(flushed), keys.dedupe(flushed))
    async with asyncio.timeout(20):
        [end] = await _next_entries(follows[flushed], 1)
        assert end.type == "failed" and end.event.retryable
        await _apply(store, _token(kept, 1))
        await _apply(store, Completed(job_id=kept, seq=2, source=EventSource.WORKER))
        assert [(e.id, e.type) for e in await _next_entries(follows[kept], 2)] == [(2, "token"), (3, "completed")]
    await reader.aclose()
