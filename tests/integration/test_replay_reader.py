"""The shared replay reader against a real redis-server: the same entries as a follower's own XREAD,
many followers on one reader, a slow follower that misses nothing, a new follower read at once, and
followers of jobs whose data Redis lost."""

from __future__ import annotations

import asyncio
import uuid

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError

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
    """As the fan-out applies an event: once more when the first try met a connection Redis closed
    (a restart), as the fan-out's redelivery would."""
    try:
        return (await store.apply(event, event.model_dump_json().encode(), 1.0)).event_id
    except RedisConnectionError:
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


async def _follow_all(store: JobStore, job: str, record, after: int | None = None) -> list[int]:
    return [e.id async for e in store.follow(job, record, after, 100) if e is not None]


async def test_many_followers_of_many_jobs_get_exactly_their_own_entries_in_order(redis):
    reader = ReplayReader(redis, block_ms=200)
    store = JobStore(redis, replay=reader)
    jobs = [_id("own") for _ in range(30)]
    for job in jobs:
        await _apply(store, _token(job, 0))
    records = {job: await store.load(job) for job in jobs}

    async def follow(job: str) -> list[tuple[int, bytes]]:
        return [(e.id, e.data) async for e in store.follow(job, records[job], None, 100) if e is not None]

    tasks = [asyncio.create_task(follow(job)) for job in jobs for _ in range(2)]  # two streams per job
    async with asyncio.timeout(20):
        while reader.followers < len(tasks):
            await asyncio.sleep(0.01)
    for seq in range(1, 8):  # interleaved across jobs, as the fan-out writes them
        for job in jobs:
            await _apply(store, _token(job, seq))
    for job in jobs:
        await _apply(store, Completed(job_id=job, seq=8, source=EventSource.WORKER))
    results = await asyncio.wait_for(asyncio.gather(*tasks), 30)
    for i, got in enumerate(results):
        job = jobs[i // 2]
        assert [n for n, _ in got] == list(range(1, 10))
        assert all(f'"job_id":"{job}"'.encode() in data for _, data in got)  # its own job's entries only
    assert reader.followers == 0
    await reader.aclose()


async def test_a_late_follower_gets_the_replay_then_live_entries(redis):
    reader = ReplayReader(redis, block_ms=200)
    store = JobStore(redis, replay=reader)
    job = _id("late")
    for seq in range(4):
        await _apply(store, _token(job, seq))
    record = await store.load(job)
    from_start = asyncio.create_task(_follow_all(store, job, record))
    resumed = asyncio.create_task(_follow_all(store, job, record, after=2))  # Last-Event-ID: 2
    async with asyncio.timeout(20):
        while reader.followers < 2:
            await asyncio.sleep(0.01)
    await _apply(store, _token(job, 4))
    await _apply(store, Completed(job_id=job, seq=5, source=EventSource.WORKER))
    assert await asyncio.wait_for(from_start, 20) == [1, 2, 3, 4, 5, 6]
    assert await asyncio.wait_for(resumed, 20) == [3, 4, 5, 6]
    await reader.aclose()


async def test_a_follower_that_leaves_frees_the_readers_key_and_channel(redis):
    reader = ReplayReader(redis, block_ms=100)
    store = JobStore(redis, replay=reader)
    stays, leaves = _id("stays"), _id("leaves")
    for job in (stays, leaves):
        await _apply(store, _token(job, 0))
    follows = {job: store.follow(job, await store.load(job), None, 100) for job in (stays, leaves)}
    for follow in follows.values():
        assert [e.id for e in await _next_entries(follow, 1)] == [1]
    log_key = keys.replay_log(leaves).encode()
    assert log_key in reader.following
    assert (await redis.pubsub_numsub(log_key))[0][1] == 1
    await follows[leaves].aclose()  # the client went away
    assert log_key not in reader.following and reader.followers == 1
    async with asyncio.timeout(10):
        while (await redis.pubsub_numsub(log_key))[0][1] or log_key in reader.channels:
            await asyncio.sleep(0.02)
    await _apply(store, _token(stays, 1))  # the one that stayed is still served
    async with asyncio.timeout(10):
        assert [e.id for e in await _next_entries(follows[stays], 1)] == [2]
    await follows[stays].aclose()
    await reader.aclose()


async def test_a_slow_follower_holds_at_most_its_queue_and_misses_nothing_nor_holds_others_back(redis):
    reader = ReplayReader(redis, block_ms=100, queue_size=3)
    store = JobStore(redis, replay=reader)
    job = _id("slow")
    await _apply(store, _token(job, 0))
    record = await store.load(job)
    slow, fast = store.follow(job, record, None, 100), store.follow(job, record, None, 100)
    assert [e.id for e in await _next_entries(slow, 1)] == [1] == [e.id for e in await _next_entries(fast, 1)]
    queues = [f.queue for group in reader._dispatch.followers.values() for f in group]
    most = 0
    fast_reads = asyncio.create_task(_next_entries(fast, 40))  # the fast one reads as entries come
    for seq in range(1, 41):  # the slow one reads nothing meanwhile
        await _apply(store, _token(job, seq))
        most = max([most, *map(len, queues)])
    async with asyncio.timeout(10):
        assert [e.id for e in await fast_reads] == list(range(2, 42))  # not held back by the slow one
    assert most <= 3  # the slow stream holds its queue's bound, not 40 entries
    await _apply(store, Completed(job_id=job, seq=41, source=EventSource.WORKER))
    async with asyncio.timeout(10):
        assert [e.id for e in await _next_entries(slow, 41)] == list(range(2, 43))  # all of it, in order
    for follow in (slow, fast):
        await follow.aclose()
    await reader.aclose()
