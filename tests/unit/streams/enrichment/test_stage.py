"""The enrichment stage and memory ingest over the real embedded stores (SQLite and the on-disk vector
index, in a temporary folder): what is remembered, what a later job gets, scoping, supersede, replay,
consent, and degrading when a store raises or hangs.

Vectors come from a small deterministic bag-of-words embedding (hashed words, L2-normalised), so the
nearest memories are the ones sharing words with the question, without loading a model."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
from types import SimpleNamespace

import numpy as np
import pytest

from infra.memory import open_store
from infra.memory.base import Feedback, Interaction, Profile
from infra.settings.memory import MemorySettings
from infra.vectors import open_index
from schemas import parse_request
from schemas.enums import Role
from streams.enrichment.stage import EnrichmentStage
from streams.memory.ingest import apply_feedback, remember
from streams.prepare.chain import StageContext, _MemoryOff, build_enrichment
from streams.stages import Item

DIMS = 64
YEAR = 365 * 86400.0


def embed(texts: list[str]) -> np.ndarray:
    out = np.zeros((len(texts), DIMS), dtype=np.float32)
    for row, text in enumerate(texts):
        for word in re.findall(r"\w+", text.lower()):
            out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIMS] += 1.0
        norm = np.linalg.norm(out[row])
        out[row] = out[row] / norm if norm else out[row]
    return out


@pytest.fixture
async def stores(tmp_path):
    settings = MemorySettings(sqlite_path=str(tmp_path / "memory.db"), vector_path=str(tmp_path / "vectors"))
    store, index = open_store(settings, tmp_path), open_index(settings, tmp_path, DIMS)
    await store.start()
    await index.start()
    yield store, index
    await index.close()
    await store.close()


def said(job: str, text: str, *, user: str = "u", tenant: str = "t", at: float | None = None) -> Interaction:
    return Interaction(id=job, tenant=tenant, user=user, session=None, modality="text", prompt=text, answer="Noted.",
                       created_at=at or time.time())


def chat_item(text: str, *, user: str | None = "u", tenant: str = "t", embedding: bool = True) -> Item:
    request = parse_request({"tenant": tenant, "user": user, "modality": "text",
                             "params": {"messages": [{"role": "system", "content": "Be kind."},
                                                     {"role": "user", "content": text}]}})
    return Item(request=request, key=b"k", embedding=embed([text])[0] if embedding else None)


def stage(store, index, **settings) -> EnrichmentStage:
    return EnrichmentStage(store, index, None, MemorySettings(**{"timeout_ms": 5000, **settings}))


async def test_a_remembered_fact_reaches_a_later_prompt_of_the_same_user_only(stores):
    store, index = stores
    now = time.time()
    done = await remember(store, index, embed, said("j1", "I'm allergic to shellfish, remember that."), now=now,
                          retention_s=YEAR)
    assert done.interaction == "j1" and len(done.facts) == 1
    mine, other_user, other_tenant = (chat_item("Am I allergic to shellfish?"),
                                      chat_item("Am I allergic to shellfish?", user="v"),
                                      chat_item("Am I allergic to shellfish?", tenant="t2"))
    await stage(store, index).run([mine, other_user, other_tenant])
    messages = mine.request.params.messages
    assert [m.role for m in messages] == [Role.SYSTEM, Role.SYSTEM, Role.USER]
    assert messages[0].content == "Be kind." and "The user is allergic to shellfish." in messages[1].content
    assert [m.id for m in mine.memories] == done.facts and mine.degraded == []
    for item in (other_user, other_tenant):
        assert len(item.request.params.messages) == 2 and item.memories == [] and item.degraded == []


async def test_a_newer_fact_supersedes_the_older_one_in_the_store_and_the_prompt(stores):
    store, index = stores
    now = time.time()
    old = await remember(store, index, embed, said("j1", "My favourite colour is red."), now=now - 100,
                         retention_s=YEAR)
    new = await remember(store, index, embed, said("j2", "My favourite colour is teal now."), now=now,
                         retention_s=YEAR)
    assert new.superseded == old.facts
    [current] = await store.facts("t", "u")
    assert current.object == "teal"
    item = chat_item("Which favourite colour should my red bike be?")
    await stage(store, index).run([item])
    # both interactions stand for their facts: the old one is stale, the new one is the teal fact itself
    assert [(m.id, m.supersedes) for m in item.memories] == [(new.facts[0], old.facts)]
    prompt = item.request.params.messages[1].content
    assert "teal" in prompt and "is red" not in prompt


async def test_replaying_the_same_interaction_writes_nothing_new(stores):
    store, index = stores
    now = time.time()
    first = await remember(store, index, embed, said("j1", "I'm vegetarian."), now=now, retention_s=YEAR)
    await remember(store, index, embed, said("j2", "I'm no longer vegetarian."), now=now + 1, retention_s=YEAR)
    again = await remember(store, index, embed, said("j1", "I'm vegetarian."), now=now + 2, retention_s=YEAR)
    assert again.facts == [] and again.superseded == []
    facts = await store.facts("t", "u", current_only=False)
    assert len(facts) == 2 and [f.object for f in facts if f.superseded_by is None] == ["not vegetarian"]
    assert first.facts[0] in {f.id for f in facts if f.superseded_by is not None}
    assert await index.count("t", "u") == 4  # two interactions, two facts


async def test_placeholders_are_never_remembered_as_facts(stores):
    store, index = stores
    done = await remember(store, index, embed, said("j1", "My favourite singer is <PERSON_1>."), now=time.time(),
                          retention_s=YEAR)
    assert done.facts == [] and await store.facts("t", "u") == []


async def test_a_user_without_consent_is_neither_remembered_nor_enriched(stores):
    store, index = stores
    now = time.time()
    await remember(store, index, embed, said("j1", "I'm allergic to peanuts."), now=now, retention_s=YEAR)
    await store.put_profile(Profile(tenant="t", user="u", memory_enabled=False, created_at=now, updated_at=now))
    skipped = await remember(store, index, embed, said("j2", "I'm vegan."), now=now, retention_s=YEAR)
    assert skipped.skipped == "memory off" and len(await store.facts("t", "u")) == 1
    item = chat_item("Am I allergic to peanuts?")
    await stage(store, index).run([item])
    assert item.memories == [] and item.degraded == [] and len(item.request.params.messages) == 2


async def test_a_tenant_that_does_not_remember_and_jobs_without_a_user_are_left_alone(stores):
    store, index = stores
    await remember(store, index, embed, said("j1", "I'm allergic to peanuts."), now=time.time(), retention_s=YEAR)
    off, anonymous = chat_item("Am I allergic to peanuts?"), chat_item("Am I allergic to peanuts?", user=None)
    await stage(store, index, off_tenants="t").run([off, anonymous])
    assert off.memories == anonymous.memories == [] and off.degraded == anonymous.degraded == []


async def test_feedback_correction_becomes_a_fact_and_a_rating_moves_importance(stores):
    store, index = stores
    now = time.time()
    first = await remember(store, index, embed, said("j1", "My favourite colour is red."), now=now, retention_s=YEAR)
    done = await apply_feedback(store, index, embed, Feedback(id="fb1", tenant="t", user="u", job_id="j1", rating=1,
                                                              correction="No, my favourite colour is green."),
                                now=now + 1, retention_s=YEAR)
    assert done.superseded == first.facts and done.interaction == "j1"
    [current] = await store.facts("t", "u")
    assert (current.object, current.source, current.source_job) == ("green", "feedback", "j1")
    [rated] = await store.get_interactions("t", "u", ["j1"])
    assert rated.importance == 0.8


class Raising:
    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def get_profile(self, tenant, user):
        raise ConnectionError("store down")

    async def facts(self, tenant, user, *, current_only=True):
        raise ConnectionError("store down")


class Hanging(Raising):
    async def get_profile(self, tenant, user):
        await asyncio.sleep(3600)

    async def facts(self, tenant, user, *, current_only=True):
        await asyncio.sleep(3600)


@pytest.mark.parametrize("broken", [Raising, Hanging])
async def test_a_store_that_fails_or_hangs_lets_the_job_go_on_without_memory(stores, broken):
    _, index = stores
    items = [chat_item("Am I allergic to peanuts?"), chat_item("hello", user="v")]
    before = [i.request for i in items]
    enrichment = EnrichmentStage(broken(), index, None, MemorySettings(timeout_ms=50))
    await asyncio.wait_for(enrichment.run(items), 10)  # bounded by timeout_ms; the wait only guards the test
    for item, request in zip(items, before):
        assert item.request is request and item.memories == [] and item.degraded == ["memory"]


async def test_a_job_without_an_embedding_is_degraded(stores):
    store, index = stores
    item = chat_item("Am I allergic to peanuts?", embedding=False)
    await stage(store, index).run([item])
    assert item.degraded == ["memory"] and item.memories == []


async def test_stores_that_cannot_start_degrade_the_batch_and_are_tried_again(stores):
    store, index = stores
    await remember(store, index, embed, said("j1", "I'm allergic to peanuts."), now=time.time(), retention_s=YEAR)
    calls = []

    async def ready() -> None:
        calls.append(1)
        if len(calls) == 1:
            raise ConnectionError("not yet")

    enrichment = EnrichmentStage(store, index, None, MemorySettings(timeout_ms=5000), ready=ready)
    first, second = chat_item("Am I allergic to peanuts?"), chat_item("Am I allergic to peanuts?")
    await enrichment.run([first])
    await enrichment.run([second])
    assert first.degraded == ["memory"] and first.memories == []
    assert second.degraded == [] and [m.text for m in second.memories] == ["The user is allergic to peanuts."]
    assert len(calls) == 2


async def test_the_chain_builds_the_stage_over_the_process_backends(stores):
    store, index = stores
    started = []

    async def start() -> None:
        started.append(1)

    backends = SimpleNamespace(settings=MemorySettings(timeout_ms=5000), store=store, index=index, sessions=None,
                               start=start)
    assert isinstance(build_enrichment(StageContext()), _MemoryOff)
    built = build_enrichment(StageContext(memory=backends))
    await remember(store, index, embed, said("j1", "I'm vegan."), now=time.time(), retention_s=YEAR)
    item = chat_item("Am I vegan?")
    await built.run([item])
    assert built.name == "enrichment" and started == [1] and [m.text for m in item.memories] == ["The user is vegan."]


class StopsBeforeMarking:
    """The real store, except that the first `supersede` fails (a writer that dies half way)."""

    def __init__(self, store) -> None:
        self._store = store
        self.failed = False

    def __getattr__(self, name):
        return getattr(self._store, name)

    async def supersede(self, *args, **kwargs):
        if not self.failed:
            self.failed = True
            raise ConnectionError("gone")
        return await self._store.supersede(*args, **kwargs)


async def test_a_replay_after_a_run_that_stopped_before_marking_makes_the_mark(stores):
    store, index = stores
    now = time.time()
    old = await remember(store, index, embed, said("j1", "My favourite colour is red."), now=now, retention_s=YEAR)
    flaky = StopsBeforeMarking(store)
    with pytest.raises(ConnectionError):
        await remember(flaky, index, embed, said("j2", "My favourite colour is teal."), now=now + 1, retention_s=YEAR)
    assert len(await store.facts("t", "u")) == 2  # both current: the mark was never made
    replay = await remember(flaky, index, embed, said("j2", "My favourite colour is teal."), now=now + 2,
                            retention_s=YEAR)
    assert replay.facts == [] and replay.superseded == old.facts
    [current] = await store.facts("t", "u")
    assert current.object == "teal"
    again = await remember(flaky, index, embed, said("j2", "My favourite colour is teal."), now=now + 3,
                           retention_s=YEAR)
    assert again.facts == again.superseded == []


async def test_a_users_facts_are_read_once_for_all_of_their_jobs_in_a_batch(stores, monkeypatch):
    store, index = stores
    await remember(store, index, embed, said("j1", "I'm allergic to shellfish."), now=time.time(), retention_s=YEAR)
    reads: list[str] = []
    real = store.facts

    async def counted(tenant, user, **kw):
        reads.append(user)
        return await real(tenant, user, **kw)

    monkeypatch.setattr(store, "facts", counted)
    batch = [chat_item("Am I allergic to shellfish?") for _ in range(4)] + [chat_item("Any allergies?", user="v")]
    await stage(store, index).run(batch)
    assert sorted(reads) == ["u", "v"]
    assert all("shellfish" in i.request.params.messages[1].content for i in batch[:4])
