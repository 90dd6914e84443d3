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


class Counting:
    """A stand-in embedder: a fixed vector per text, and a record of every call."""

    name, dims, max_chars = "e", 384, 100

    def __init__(self) -> None:
        self.calls: list[list[str]] = []

    def encode(self, texts, batch_size=64):
        self.calls.append(list(texts))
        return np.stack([vec(sum(map(ord, t))) for t in texts])


class MemoryLike:
    """A later stage that reads the vector of a job with a user in its `run` (as enrichment does)."""

    name = "enrichment"

    def __init__(self) -> None:
        self.seen: list[bool] = []

    def uses_embedding(self, item):
        return item.request.user is not None

    async def run(self, items):
        self.seen += [i.embedding is not None for i in items if self.uses_embedding(i)]


async def test_a_job_whose_scope_holds_nothing_is_embedded_after_it_is_sent():
    """Nothing stored in its scope: the lookup cannot hit, so the job leaves without waiting for the model;
    its vector is computed after the send and labels its miss, and its answer then answers a repeat
    (embedded before the lookup this time, since its scope now holds an entry)."""
    from streams.embedding.stage import EmbeddingStage
    from streams.prepare.chain import after_sent, run_chain, wire_embedding

    cache, model, memory = local_cache(), Counting(), MemoryLike()
    filler = CacheFiller(cache)
    stages = wire_embedding([EmbeddingStage(model), memory, CacheStage(cache, TenantPolicy(), "e")])
    first = Item(request("n1"), b"k")
    await run_chain(stages, [first])
    assert first.pending and first.embedding is None and first.embedding_later and model.calls == []
    assert first.request.embedding is None and first.degraded == []
    await after_sent(stages, [first])
    assert model.calls == [["What is the capital of France?"]] and first.embedding is not None
    assert await filler.handle(worker_events("n1", "Paris.")) == 1  # the miss was noted after the send
    again = Item(request("n2"), b"k")
    await run_chain(stages, [again])
    assert isinstance(again.end, Answered) and again.end.events[-1].text == "Paris."
    assert not again.embedding_later and again.request.embedding is not None


async def test_a_vector_a_stage_reads_in_its_run_is_computed_before_it_even_in_an_empty_scope():
    from streams.embedding.stage import EmbeddingStage
    from streams.prepare.chain import after_sent, run_chain, wire_embedding

    cache, model, memory = local_cache(), Counting(), MemoryLike()
    stages = wire_embedding([EmbeddingStage(model), memory, CacheStage(cache, TenantPolicy(), "e")])
    with_user = Item(parse_request({"job_id": "u1", "tenant": "t", "modality": "text", "user": "ann", "params": {
        "messages": [{"role": "user", "content": "What did I say about Paris?"}], "temperature": 0}}), b"k")
    sampled_without_user = Item(request("u2", "Tell me a story.", temperature=0.8), b"k")
    await run_chain(stages, [with_user, sampled_without_user])
    assert memory.seen == [True] and with_user.embedding is not None and not with_user.embedding_later
    assert model.calls == [["What did I say about Paris?"]]  # the sampled chat no stage reads: never
    await after_sent(stages, [with_user, sampled_without_user])
    assert len(model.calls) == 1 and sampled_without_user.embedding is None
    assert list(await cache.claim(["u1", "u2"])) == ["u1"]  # its miss noted in run, with its vector


async def test_a_failed_model_after_the_send_leaves_the_miss_unnoted():
    from streams.embedding.stage import EmbeddingStage
    from streams.prepare.chain import after_sent, run_chain, wire_embedding

    class Broken(Counting):
        def encode(self, texts, batch_size=64):
            raise RuntimeError("out of memory")

    cache = local_cache()
    stages = wire_embedding([EmbeddingStage(Broken()), CacheStage(cache, TenantPolicy(), "e")])
    item = Item(request("x1"), b"k")
    await run_chain(stages, [item])
    await after_sent(stages, [item])
    assert item.pending and item.embedding is None
    assert await cache.claim(["x1"]) == {}


async def test_a_stage_that_raises_when_asked_gets_its_vectors_at_once():
    from streams.embedding.stage import EmbeddingStage
    from streams.prepare.chain import run_chain, wire_embedding

    class Confused(CacheStage):
        async def needs_embedding_now(self, items):
            raise KeyError("bug")

    model = Counting()
    stages = wire_embedding([EmbeddingStage(model), Confused(local_cache(), TenantPolicy(), "e")])
    item = Item(request("c1"), b"k")
    await run_chain(stages, [item])
    assert item.pending and item.embedding is not None and not item.embedding_later and len(model.calls) == 1
