"""The cache stage and the fill over the in-process tier alone (no Redis configured): what is looked
up, what is remembered as a miss, what a completed, failed or filtered job leaves in the cache."""

from __future__ import annotations

import numpy as np

from schemas import parse_request
from schemas.enums import EventSource, FinishReason
from schemas.events import Completed, Failed, ModelInfo, Started
from schemas.enums import ErrorCode
from streams.cache.fill import CacheFiller
from streams.cache.logic import LocalTier, TenantPolicy
from streams.cache.stage import CacheStage
from streams.cache.tiers import SemanticCache
from streams.stages import Answered, Item

MODEL = ModelInfo(id="smol", device="cpu", dtype="float32")


def request(job_id: str, prompt: str = "What is the capital of France?", **params):
    return parse_request({"job_id": job_id, "tenant": "t", "modality": "text",
                          "params": {"messages": [{"role": "user", "content": prompt}], "temperature": 0, **params}})


def vec(seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=384).astype(np.float32)
    return v / np.linalg.norm(v)


def local_cache() -> SemanticCache:
    return SemanticCache(LocalTier(max_entries=100, max_bytes=1 << 20, ttl_s=60), None, threshold=0.9, ttl_s=60)


def worker_events(job_id: str, text: str, finish: FinishReason = FinishReason.STOP):
    return [Started(job_id=job_id, seq=0, source=EventSource.WORKER, worker="w", model=MODEL),
            Completed(job_id=job_id, seq=1, source=EventSource.WORKER, text=text, finish_reason=finish)]


async def test_a_completed_miss_answers_the_next_same_prompt():
    cache = local_cache()
    stage, filler = CacheStage(cache, TenantPolicy(), "e"), CacheFiller(cache)
    first = Item(request("j1"), b"k", embedding=vec(1))
    await stage.run([first])
    assert first.pending and first.degraded == []  # no shared tier configured: nothing degraded
    assert await filler.handle(worker_events("j1", "Paris.")) == 1
    again = Item(request("j2"), b"k", embedding=vec(1))
    await stage.run([again])
    assert isinstance(again.end, Answered)
    assert again.end.events[0].model == MODEL and again.end.events[-1].text == "Paris."


async def test_failed_and_filtered_jobs_and_hits_are_not_stored():
    cache = local_cache()
    stage, filler = CacheStage(cache, TenantPolicy(), "e"), CacheFiller(cache)
    items = [Item(request(f"f{i}", f"question number {i}"), b"k", embedding=vec(10 + i)) for i in range(2)]
    await stage.run(items)
    stored = await filler.handle([
        Failed(job_id="f0", seq=0, source=EventSource.WORKER, code=ErrorCode.GENERATION_ERROR, message="x"),
        *worker_events("f1", "cut", FinishReason.CONTENT_FILTER)])
    assert stored == 0 and len(cache.local) == 0
    assert await cache.claim(["f0", "f1"]) == {}  # the markers went with the terminal events


async def test_sampled_and_ended_jobs_are_not_looked_up_nor_remembered():
    cache = local_cache()
    stage, filler = CacheStage(cache, TenantPolicy(), "e"), CacheFiller(cache)
    sampled = Item(request("s1", temperature=0.8), b"k", embedding=vec(3))
    no_vector = Item(request("s2"), b"k")
    await stage.run([sampled, no_vector])
    assert await filler.handle(worker_events("s1", "x") + worker_events("s2", "y")) == 0


async def test_one_batch_answers_its_hits_and_remembers_its_misses():
    cache = local_cache()
    stage, filler = CacheStage(cache, TenantPolicy(), "e"), CacheFiller(cache)
    await stage.run([Item(request("b0"), b"k", embedding=vec(5))])
    await filler.handle(worker_events("b0", "Paris."))
    batch = [Item(request("b1"), b"k", embedding=vec(5)), Item(request("b2", "Other?"), b"k", embedding=vec(6))]
    await stage.run(batch)
    assert isinstance(batch[0].end, Answered) and batch[1].pending
    assert list(await cache.claim(["b1", "b2"])) == ["b2"]


async def test_a_hit_names_its_source_by_the_tenant_s_own_id():
    """Workers, Redis and the cache know a job by its scoped id; the tenant sees the id it gave."""
    from schemas.requests import qualified

    cache = local_cache()
    stage, filler = CacheStage(cache, TenantPolicy(), "e"), CacheFiller(cache)
    source = qualified(request("my-first-question"))
    assert source.job_id != "my-first-question"
    await stage.run([Item(source, b"k", embedding=vec(7))])
    await filler.handle(worker_events(source.job_id, "Paris."))
    hit = Item(qualified(request("my-second-question")), b"k", embedding=vec(7))
    await stage.run([hit])
    started, completed = hit.end.events[0], hit.end.events[-1]
    assert started.cache.source_job == completed.cache.source_job == "my-first-question"
