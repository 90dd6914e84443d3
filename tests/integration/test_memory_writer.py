"""The memory writer against real backends (redis-server, the SQLite store, the on-disk vector index,
the local blob store, the semantic cache's Redis tier) and the real embedder: remembering a completed
job, replays, a store that fails and recovers, erasure of everything of a user, and the retention sweep."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest

from infra.blob import LocalBlobStore
from infra.blob.base import artifact_key
from infra.memory.base import Interaction, Profile
from infra.models.embedder import load_embedder
from infra.redis import keys
from infra.redis.client import connect
from infra.redis.jobrecord import JobRecord
from infra.redis.semcache import NewEntry, SemanticCacheStore
from infra.settings.memory import MemorySettings
from schemas.enums import JobStatus, Modality
from schemas.memory import EraseUser, MemoryFeedback
from schemas.requests import scoped_user_id
from streams.cache.logic import LocalTier
from streams.cache.tiers import SemanticCache
from streams.memory.agents import MemoryWriter, until_done
from streams.memory.backends import MemoryBackends

pytestmark = pytest.mark.integration

T = "t-writer"


@pytest.fixture(scope="module")
def embedder():
    return load_embedder()


@pytest.fixture
async def writer(tmp_path, redis_url, embedder):
    settings = MemorySettings(sqlite_path=str(tmp_path / "memory.db"), vector_path=str(tmp_path / "vectors"))
    backends = MemoryBackends(settings, tmp_path, redis_url)
    blobs = LocalBlobStore(tmp_path / "blobs")
    await blobs.start()
    cache_redis = connect(redis_url)
    cache = SemanticCache(LocalTier(max_entries=64, max_bytes=1 << 20, ttl_s=3600), SemanticCacheStore(cache_redis),
                          threshold=0.9, ttl_s=3600)
    w = MemoryWriter(backends, embed=lambda texts: embedder.encode(texts), analyze=None, blobs=blobs, cache=cache)
    yield w
    await backends.aclose()
    await cache_redis.aclose()


def _job(job_id: str, user: str, text: str, session: str | None = "s1") -> bytes:
    return json.dumps({"job_id": job_id, "modality": "text", "tenant": T, "user": user, "session": session,
                       "params": {"messages": [{"role": "user", "content": text}]}}).encode()


def _completed(job_id: str, text: str) -> bytes:
    return json.dumps({"type": "completed", "job_id": job_id, "seq": 3, "source": "worker", "text": text}).encode()


async def _remember(w: MemoryWriter, job_id: str, user: str, text: str, answer: str = "Noted.") -> None:
    await w.handle("genloom.jobs.text", _job(job_id, user, text))
    await w.handle("genloom.events", _completed(job_id, answer))


async def test_a_completed_job_is_remembered_once_with_its_facts_and_session_turns(writer):
    user = scoped_user_id(T, "ann")
    await _remember(writer, "j-ann-1", user, "My favourite colour is teal.")
    store = writer.backends.store
    [kept] = await store.get_interactions(T, user, ["j-ann-1"])
    assert (kept.prompt, kept.answer) == ("My favourite colour is teal.", "Noted.")
    facts = await store.facts(T, user)
    assert [f.object for f in facts] == ["teal"]
    assert await writer.backends.index.count(T, user) >= 2  # the interaction and the fact
    turns = await writer.backends.sessions.recent(T, user, "s1")
    assert [(t.role, t.text) for t in turns] == [("user", "My favourite colour is teal."), ("assistant", "Noted.")]
    # the same completed event again (a replay after a crash) writes nothing new
    await writer.handle("genloom.events", _completed("j-ann-1", "Noted."))
    await writer.handle("genloom.jobs.text", _job("j-ann-1", user, "My favourite colour is teal."))
    await writer.handle("genloom.events", _completed("j-ann-1", "Noted."))
    assert len(await store.facts(T, user)) == 1 and len(await store.recent_interactions(T, user, 10)) == 1
    # tokens, other events, junk and jobs without a user are passed over
    for topic, value in (("genloom.events", b'{"type":"token","job_id":"j","text":"x"}'),
                         ("genloom.events", b"\xff not json"), ("genloom.jobs.text", b"{}"),
                         ("genloom.memory", b'{"type":"nope"}')):
        await writer.handle(topic, value)


async def test_a_completion_read_before_its_request_is_remembered_when_the_request_comes(writer):
    """The writer's tap fetches the events and the job topics together, once per fetch gap: a job's
    `completed` may be handled first. It waits in Redis for its request, which then remembers the job."""
    user = scoped_user_id(T, "cy")
    redis = writer.backends.redis
    assert not await writer.on_completed("j-cy-1", "Noted, cy.")  # nothing to remember yet: left for the request
    assert 0 < await redis.ttl(keys.memory_early("j-cy-1")) <= keys.MEMORY_EARLY_TTL_S
    await writer.handle("genloom.jobs.text", _job("j-cy-1", user, "I live in Lisbon."))
    store = writer.backends.store
    [kept] = await store.get_interactions(T, user, ["j-cy-1"])
    assert (kept.prompt, kept.answer) == ("I live in Lisbon.", "Noted, cy.")
    turns = await writer.backends.sessions.recent(T, user, "s1")
    assert [(t.role, t.text) for t in turns] == [("user", "I live in Lisbon."), ("assistant", "Noted, cy.")]
    assert not await redis.exists(keys.memory_early("j-cy-1"), keys.memory_pending("j-cy-1"))
    # a completion whose request never asks for memory leaves only its expiring wait behind
    await writer.handle("genloom.events", _completed("j-none", "Hello."))
    anonymous = json.dumps({"job_id": "j-none", "modality": "text", "tenant": T,
                            "params": {"messages": [{"role": "user", "content": "hi"}]}}).encode()
    await writer.handle("genloom.jobs.text", anonymous)
    assert await redis.ttl(keys.memory_early("j-none")) > 0
    assert await store.get_interactions(T, user, ["j-none"]) == []


async def test_a_failing_store_is_retried_until_it_answers_and_nothing_is_lost(writer, monkeypatch):
    user = scoped_user_id(T, "bo")
    await writer.backends.start()
    store = writer.backends.store
    real, failures = store.put_interaction, []

    async def flaky(item):
        if len(failures) < 2:
            failures.append(item.id)
            raise OSError("disk unavailable")
        return await real(item)

    monkeypatch.setattr(store, "put_interaction", flaky)
    monkeypatch.setattr("streams.memory.agents.RETRY_FIRST_S", 0.01)
    await writer.handle("genloom.jobs.text", _job("j-bo-1", user, "I am allergic to shellfish."))
    await until_done("a completed event", lambda: writer.handle("genloom.events", _completed("j-bo-1", "Ok.")))
    assert failures == ["j-bo-1", "j-bo-1"]
    assert [i.id for i in await store.get_interactions(T, user, ["j-bo-1"])] == ["j-bo-1"]
    assert any(f.object == "shellfish" for f in await store.facts(T, user))


async def test_consent_off_keeps_nothing_and_feedback_is_redacted_as_a_preference(writer):
    user = scoped_user_id(T, "cy")
    await writer.backends.start()
    await writer.backends.store.put_profile(Profile(tenant=T, user=user, memory_enabled=False))
    await _remember(writer, "j-cy-1", user, "My favourite food is ramen.")
    assert await writer.backends.store.recent_interactions(T, user, 10) == []
    other = scoped_user_id(T, "dee")
    await _remember(writer, "j-dee-1", other, "Tell me a joke.")
    await writer.handle("genloom.memory", MemoryFeedback(tenant=T, user=other, job_id="j-dee-1", rating=1,
                                                         preference="Please keep answers short.")
                        .model_dump_json().encode())
    kept = await writer.backends.store.feedback(T, other)
    assert kept and kept[0].rating == 1 and "short" in kept[0].preference


async def test_erasing_a_user_removes_every_trace_counts_it_and_a_second_time_nothing(writer, tmp_path):
    user, bystander = scoped_user_id(T, "eve"), scoped_user_id(T, "fay")
    await _remember(writer, "j-eve-1", user, "My favourite colour is teal.")
    await _remember(writer, "j-fay-1", bystander, "My favourite colour is red.")
    redis, blobs = writer.backends.redis, writer._blobs
    # an ended job of eve's with a record, a replay log, an artifact and a cached answer; one still running
    for job_id, status in (("j-eve-1", JobStatus.COMPLETED), ("j-eve-2", JobStatus.RUNNING)):
        await redis.hset(keys.job_record(job_id), mapping=JobRecord(
            status=status, tenant=T, user=user, modality=Modality.TEXT).to_fields())
        await redis.xadd(keys.replay_log(job_id), {"e": b"{}"})
        await redis.sadd(keys.user_jobs(T, user), job_id)
    await blobs.put(artifact_key(T, "j-eve-1", "image-0.png"), b"png", "image/png")
    vector = np.ones(384, dtype="<f2").tobytes()
    await writer._cache.store.put_many([NewEntry(scope="sc", entry_id="j-eve-1", f16=vector, answer=b"{}",
                                                 made_at=time.time(), nbytes=100)], time.time())
    report = await writer.on_erase(EraseUser(tenant=T, user=user))
    c = report.counts
    assert c["memory_interactions"] == 1 and c["memory_facts"] == 1 and c["vectors"] >= 2
    assert c["session_turns"] == 2 and c["jobs"] == 1 and c["jobs_running"] == 1
    assert c["artifacts"] == 1 and c["cache_entries"] == 1
    assert await redis.exists(keys.job_record("j-eve-1"), keys.replay_log("j-eve-1")) == 0
    assert await redis.exists(keys.job_record("j-eve-2")) == 1  # running: left for the next erasure
    assert not await blobs.exists(artifact_key(T, "j-eve-1", "image-0.png"))
    assert (await writer._cache.store.vectors(["sc"]))["sc"] == []
    assert await writer.backends.index.count(T, user) == 0
    assert [a.counts for a in await writer.backends.store.audits(T, user)] == [c]
    stored = json.loads(await redis.get(keys.erasure(report.id)))
    assert stored["status"] == "erased" and stored["counts"] == c
    # the bystander keeps everything; erasing eve again finds only the job still running
    assert await writer.backends.store.recent_interactions(T, bystander, 10)
    await redis.hset(keys.job_record("j-eve-2"), "status", "completed")
    again = await writer.on_erase(EraseUser(tenant=T, user=user))
    assert again.counts["jobs"] == 1 and again.counts["jobs_running"] == 0
    third = await writer.on_erase(EraseUser(tenant=T, user=user))
    assert not any(third.counts.values()), third.counts
    nobody = await writer.on_erase(EraseUser(tenant=T, user=scoped_user_id(T, "never-seen")))
    assert not any(nobody.counts.values())


async def test_the_sweep_deletes_what_outlived_its_retention_and_audits_the_counts(writer):
    user = scoped_user_id(T, "gus")
    await writer.backends.start()
    old = time.time() - 10
    await writer.backends.store.put_interaction(Interaction(
        id="j-gus-old", tenant=T, user=user, session=None, modality="text", prompt="an old question",
        answer="an old answer", created_at=old - 100, expires_at=old))
    await _remember(writer, "j-gus-new", user, "a new question")
    counts = await writer.sweep()
    assert counts["memory_interactions"] == 1
    assert [i.id for i in await writer.backends.store.recent_interactions(T, user, 10)] == ["j-gus-new"]
    assert any(a.action == "retention" for a in await writer.backends.store.audits("*"))
    assert not any((await writer.sweep()).values())  # nothing more to sweep




def test_the_tap_passes_tokens_over_and_hands_on_completions_requests_and_commands():
    from schemas.enums import EventSource
    from schemas.events import Completed, TokenDelta, Usage

    token = TokenDelta(job_id="j", seq=1, attempt=1, source=EventSource.WORKER, text="hi", tokens=1)
    done = Completed(job_id="j", seq=2, attempt=1, source=EventSource.WORKER, usage=Usage(completion_tokens=1), text="hi")
    assert not MemoryWriter.wants("genloom.events", token.model_dump_json().encode())
    assert MemoryWriter.wants("genloom.events", done.model_dump_json().encode())
    assert MemoryWriter.wants("genloom.jobs.text", b'{"job_id": "j"}')  # parsed (or passed over) by the writer
    assert MemoryWriter.wants("genloom.memory", b'{"type": "nope"}')
    assert not MemoryWriter.wants("genloom.memory", b"") and not MemoryWriter.wants("genloom.events", None)
