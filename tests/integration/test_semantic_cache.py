"""The semantic cache against a real redis-server: the shared tier seen by two stage instances, its
bounds and expiry in the Lua script, degrading when Redis is stopped or paused, and the fill agent of
the real streams process fed from the real broker."""

from __future__ import annotations

import asyncio
import os
import signal
import time

import numpy as np
import pytest

from infra.redis import keys
from infra.redis.client import connect
from infra.redis.semcache import Bounds, NewEntry, SemanticCacheStore
from infra.redis.server import LocalRedis
from schemas import TextRequest, parse_request
from schemas.enums import EventType, FinishReason
from schemas.events import Completed, ModelInfo, Started, TokenDelta, Usage
from streams.cache.logic import Answer, LocalTier, TenantPolicy
from streams.cache.stage import CacheStage
from streams.cache.tiers import SemanticCache
from streams.stages import Answered, Item
from tests.edge_helpers import wait_for

pytestmark = pytest.mark.integration

MODEL = ModelInfo(id="HuggingFaceTB/SmolLM2-135M-Instruct", device="cpu", dtype="float32")


def unit(seed: int, near: np.ndarray | None = None, noise: float = 0.05) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.normal(size=384).astype(np.float32)
    if near is not None:
        v = near + noise * v / np.linalg.norm(v)
    return (v / np.linalg.norm(v)).astype(np.float32)


def chat(job_id: str, prompt: str = "q", tenant: str = "t-sc") -> TextRequest:
    return parse_request({"job_id": job_id, "tenant": tenant, "modality": "text", "model": "smol",
                          "params": {"messages": [{"role": "user", "content": prompt}], "temperature": 0}})


def cache_over(redis, *, bounds: Bounds | None = None, threshold: float = 0.9, retry_s: float = 1.0) -> SemanticCache:
    store = SemanticCacheStore(redis, bounds) if redis is not None else None
    return SemanticCache(LocalTier(max_entries=100, max_bytes=1 << 20, ttl_s=60), store, threshold=threshold,
                         ttl_s=(bounds or Bounds()).ttl_s, retry_s=retry_s)


def stage(cache: SemanticCache) -> CacheStage:
    return CacheStage(cache, TenantPolicy(), "e")


@pytest.fixture
async def redis(redis_url):
    client = connect(redis_url, socket_timeout_s=0.5, connect_timeout_s=0.5)
    yield client
    await client.aclose()


async def test_an_answer_stored_by_one_instance_answers_another(redis):
    one, two = cache_over(redis), cache_over(redis)
    vector = unit(1)
    first = Item(chat("sc-src-1", "What is the capital of France?"), b"k", embedding=vector)
    await stage(one).run([first])
    assert first.pending and first.degraded == []
    # the fill (here called directly) finds the miss the stage recorded in Redis
    claimed = await two.claim(["sc-src-1"])
    assert list(claimed) == ["sc-src-1"]
    await two.store_answers([(claimed["sc-src-1"], Answer("sc-src-1", "Paris.", FinishReason.STOP, MODEL,
                                                           time.time()))])
    three = cache_over(redis)  # a third instance: its in-process tier is empty, so this comes from Redis
    paraphrase = Item(chat("sc-hit-1", "Which city is the capital of France?"), b"k", embedding=unit(2, vector))
    other_tenant = Item(chat("sc-hit-2", "What is the capital of France?", tenant="t-other"), b"k", embedding=vector)
    far = Item(chat("sc-miss-1", "How tall is Everest?"), b"k", embedding=unit(3))
    await stage(three).run([paraphrase, other_tenant, far])
    assert other_tenant.pending and far.pending
    assert isinstance(paraphrase.end, Answered)
    started, token, completed = paraphrase.end.events
    assert started.cache.source_job == "sc-src-1" and started.model == MODEL
    assert token.text == "Paris." and completed.cache.similarity > 0.9
    assert len(three.local) == 1  # read through: the next repeat is answered in-process


async def test_the_put_script_bounds_entries_per_scope_in_all_and_in_bytes(redis):
    await redis.delete(keys.cache_lru(), keys.cache_sizes(), keys.cache_bytes())
    store = SemanticCacheStore(redis, Bounds(max_entries=5, max_bytes=10_000, scope_max_entries=2, ttl_s=60))
    now = time.time()

    def entry(scope: str, i: int, size: int = 1000) -> NewEntry:
        return NewEntry(scope=scope, entry_id=f"job-{scope}-{i}", f16=unit(i).astype("<f2").tobytes(),
                        answer=b'{"x":1}', made_at=now, nbytes=size)

    await store.put_many([entry("a", i) for i in range(3)], now)  # scope bound 2: the oldest goes
    assert sorted(v.entry_id for v in (await store.vectors(["a"]))["a"]) == ["job-a-1", "job-a-2"]
    await store.put_many([entry(s, 0) for s in "bcde"], now + 1)  # 6 entries > 5: the least recently used goes
    entries, total = await store.stats()
    assert entries == 5 and total == 5000
    assert [v.entry_id for v in (await store.vectors(["a"]))["a"]] == ["job-a-2"]
    await store.put_many([entry("f", 0, size=8000)], now + 2)  # bytes: 13000 > 10000 evicts until it fits
    entries, total = await store.stats()
    assert total == 10_000 and entries == 3  # three of the 1000-byte entries went
    assert (await store.vectors(["f"]))["f"][0].entry_id == "job-f-0"


async def test_entries_past_their_ttl_do_not_answer(redis):
    cache = cache_over(redis, bounds=Bounds(ttl_s=60))
    old = Answer("sc-old", "stale", FinishReason.STOP, MODEL, time.time() - 120)
    scope_vector = unit(7)
    items = [Item(chat("sc-ttl-src", "ttl question"), b"k", embedding=scope_vector)]
    await stage(cache).run(items)
    miss = (await cache.claim(["sc-ttl-src"]))["sc-ttl-src"]
    await cache.store_answers([(miss, old)])  # made two minutes ago: past its 60 s
    fresh_cache = cache_over(redis, bounds=Bounds(ttl_s=60))
    again = Item(chat("sc-ttl-again", "ttl question"), b"k", embedding=scope_vector)
    await stage(fresh_cache).run([again])
    assert again.pending


async def test_the_shared_tier_says_which_lookups_need_a_vector_and_reuses_what_it_read(redis):
    """A scope another instance stored an answer in needs the vector before the lookup (and the lookup uses
    the vectors read for that answer); a scope that holds nothing in either tier does not (a number of its
    own is a key term: another scope)."""
    one, two = cache_over(redis), cache_over(redis)
    vector = unit(31)
    await stage(one).run([Item(chat("sc-probe-src", "Name a red fruit.", "t-probe"), b"k", embedding=vector)])
    claimed = await one.claim(["sc-probe-src"])
    await one.store_answers([(claimed["sc-probe-src"], Answer("sc-probe-src", "A cherry.", FinishReason.STOP,
                                                               MODEL, time.time()))])
    probe = stage(two)  # its in-process tier is empty: only Redis knows the first scope
    stored = Item(chat("sc-probe-hit", "Name a red fruit.", "t-probe"), b"k")
    empty = Item(chat("sc-probe-new", "Name 3 red fruits.", "t-probe"), b"k")
    assert await probe.needs_embedding_now([stored, empty]) == [True, False]
    stored.embedding, empty.embedding_later = vector, True
    reads = []
    real = two.store.vectors

    async def counted(scopes):
        reads.append(scopes)
        return await real(scopes)

    two.store.vectors = counted
    await probe.run([stored, empty])
    assert isinstance(stored.end, Answered) and empty.pending and empty.degraded == []
    assert reads == []  # the lookup used the vectors the probe read


@pytest.fixture
def own_redis():
    with LocalRedis() as server:
        yield server


async def test_redis_stopped_degrades_to_the_in_process_tier(own_redis):
    client = connect(own_redis.url, socket_timeout_s=0.2, connect_timeout_s=0.2)
    cache = cache_over(client, retry_s=30)
    vector = unit(11)
    try:
        first = Item(chat("sc-down-src", "question"), b"k", embedding=vector)
        await stage(cache).run([first])
        assert first.degraded == []
        own_redis.stop()
        missed = await cache.claim(["sc-down-src"])  # the in-process marker is still there
        await cache.store_answers([(missed["sc-down-src"], Answer("sc-down-src", "A.", FinishReason.STOP, MODEL,
                                                                  time.time()))])
        repeat = Item(chat("sc-down-hit", "question"), b"k", embedding=vector)
        other = Item(chat("sc-down-miss", "another"), b"k", embedding=unit(12))
        # bounded: a dead Redis never holds the stage (a hang fails the test here)
        await asyncio.wait_for(stage(cache).run([repeat, other]), 5)
        assert isinstance(repeat.end, Answered)  # from the in-process tier
        assert other.pending and other.degraded == ["cache"]
        later = Item(chat("sc-down-miss-2", "yet another"), b"k", embedding=unit(13))
        await asyncio.wait_for(stage(cache).run([later]), 5)  # the breaker is open: Redis is not even tried
        assert later.pending and later.degraded == ["cache"]
        unknown, probe = Item(chat("sc-down-new", "question 7"), b"k"), stage(cache)
        assert await probe.needs_embedding_now([unknown]) == [False]  # its scope: nothing in the in-process tier
        unknown.embedding_later = True
        await probe.run([unknown])
        assert unknown.pending and unknown.degraded == ["cache"]  # the shared tier was not asked
    finally:
        await client.aclose()


async def test_redis_paused_times_out_and_the_job_goes_on(own_redis):
    client = connect(own_redis.url, socket_timeout_s=0.2, connect_timeout_s=0.2)
    cache = cache_over(client, retry_s=0.5)
    try:
        await client.ping()
        os.kill(own_redis.pid, signal.SIGSTOP)
        try:
            item = Item(chat("sc-paused", "question"), b"k", embedding=unit(21))
            await asyncio.wait_for(stage(cache).run([item]), timeout=10)
            assert item.pending and item.degraded == ["cache"]
        finally:
            os.kill(own_redis.pid, signal.SIGCONT)
        await asyncio.sleep(0.6)  # the breaker closes again
        back = Item(chat("sc-resumed", "question two"), b"k", embedding=unit(22))
        await stage(cache).run([back])
        assert back.pending and back.degraded == []
    finally:
        await client.aclose()


async def test_the_streams_process_fills_the_cache_from_completed_events(redis, streams_process, worker):
    """The miss is recorded as the stage does it; the real `python -m streams` fill agent reads the
    worker's events from the broker and stores the answer in Redis, where another instance finds it."""
    cache = cache_over(redis)
    vector = unit(31)
    await stage(cache).run([Item(chat("sc-fill-src", "fill question"), b"k", embedding=vector)])
    await worker.emit(Started, "sc-fill-src", worker="w1", model=MODEL)
    await worker.emit(TokenDelta, "sc-fill-src", text="Filled.", tokens=2)
    await worker.emit(Completed, "sc-fill-src", text="Filled.",
                      usage=Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5))
    # a failed job that missed leaves nothing behind
    await stage(cache).run([Item(chat("sc-fill-cut", "cut question"), b"k", embedding=unit(32))])
    await worker.emit(Completed, "sc-fill-cut", text="Filth", finish_reason=FinishReason.CONTENT_FILTER)

    async def answered():
        item = Item(chat("sc-fill-hit", "fill question"), b"k", embedding=vector)
        await stage(cache_over(redis)).run([item])
        return item.end

    end = await wait_for(answered, timeout=60)
    assert [e.type for e in end.events] == [EventType.STARTED, EventType.TOKEN, EventType.COMPLETED]
    assert end.events[-1].text == "Filled." and end.events[0].model == MODEL
    assert end.events[0].cache.source_job == "sc-fill-src"
    assert await redis.exists(keys.cache_pending("sc-fill-src")) == 0
    await wait_for(lambda: _gone(redis, "sc-fill-cut"), timeout=30)
    cut = Item(chat("sc-fill-cut-2", "cut question"), b"k", embedding=unit(32))
    await stage(cache_over(redis)).run([cut])
    assert cut.pending  # a content-filtered answer is never reused


async def _gone(redis, job_id: str) -> bool:
    return await redis.exists(keys.cache_pending(job_id)) == 0
