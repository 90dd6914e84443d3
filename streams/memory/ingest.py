"""Writing what a user said into memory: the interaction (stored and embedded) and the facts it states
(into the knowledge graph, replacing what they contradict). Thin async glue over the stores; what is
found and what it replaces is decided in facts.py.

Idempotent: an interaction is stored by its job id and a fact by an id made from (tenant, user,
relation, object, job); a fact that already exists is not written again, and only the marks it
should have made and has not (a run that stopped half way) are made, so replaying a completed event
(the writer reads Kafka at least once) changes nothing that was done.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from infra.memory.base import Fact, Feedback, Interaction, MemoryStore
from infra.vectors.base import VectorIndex, VectorRecord

from .facts import Found, fact_id, find_facts, search_text, supersedes

#: texts -> float32 rows, L2-normalised (infra.models.embedder.Embedder.encode)
Embed = Callable[[list[str]], np.ndarray]

#: importance of an interaction after a rating: a liked answer is worth recalling, a disliked one less
RATED_IMPORTANCE = {1: 0.8, 0: 0.5, -1: 0.2}
#: characters of an interaction that are embedded (the embedder reads 256 word pieces anyway)
EMBED_CHARS = 2_000


@dataclass
class Remembered:
    """What one `remember` or `apply_feedback` wrote (ids only)."""

    interaction: str | None = None
    facts: list[str] = field(default_factory=list)
    superseded: list[str] = field(default_factory=list)
    #: why nothing was written ("memory off" for a user who said no), else None
    skipped: str | None = None


def embed_text(item: Interaction) -> str:
    """What an interaction is found by: the question first, then the answer."""
    text = item.prompt if not item.answer else f"{item.prompt}\n{item.answer}"
    return text[:EMBED_CHARS]


async def _enabled(store: MemoryStore, tenant: str, user: str) -> bool:
    profile = await store.get_profile(tenant, user)
    return profile is None or profile.memory_enabled


async def remember(store: MemoryStore, index: VectorIndex, embed: Embed, interaction: Interaction, *,
                   now: float, retention_s: float) -> Remembered:
    """Store the (redacted) interaction, embed it, and write the facts the user's prompt states."""
    if not await _enabled(store, interaction.tenant, interaction.user):
        return Remembered(skipped="memory off")
    expires = now + retention_s
    item = replace(interaction, created_at=interaction.created_at or now, expires_at=expires)
    await store.put_interaction(item)
    found = find_facts(item.prompt)
    facts, superseded = await _new_facts(store, item.tenant, item.user, found, source="chat", job=item.id,
                                         origin=item.id, now=now, expires=expires)
    texts = [embed_text(item)] + [search_text(f.relation, f.text) for f in facts]
    vectors = await asyncio.to_thread(embed, texts)
    records = [VectorRecord(item.id, np.asarray(vectors[0], dtype=np.float32), "interaction", item.created_at,
                            expires)]
    records += [VectorRecord(f.id, np.asarray(v, dtype=np.float32), "fact", f.created_at, expires)
                for f, v in zip(facts, vectors[1:])]
    await index.upsert(item.tenant, item.user, records)
    await _write_facts(store, item.tenant, item.user, facts, superseded, now)
    return Remembered(interaction=item.id, facts=[f.id for f in facts],
                      superseded=[i for ids in superseded.values() for i in ids])


async def _new_facts(store: MemoryStore, tenant: str, user: str, found: list[Found], *, source: str,
                     job: str | None, origin: str | None, now: float,
                     expires: float) -> tuple[list[Fact], dict[str, list[str]]]:
    """The facts of `found` not yet stored, and the current facts each of them (or a stored one of the
    same id) replaces. `origin` is what the ids are made from: the job, or the feedback that stated them."""
    if not found:
        return [], {}
    facts = [Fact(id=fact_id(tenant, user, f.relation, f.object, origin), tenant=tenant, user=user, subject="user",
                  relation=f.relation, object=f.object, text=f.text, kind=f.kind, source=source, source_job=job,
                  created_at=now, importance=f.importance, expires_at=expires) for f in found]
    existing = {f.id: f for f in await store.get_facts(tenant, user, [f.id for f in facts])}
    current = await store.facts(tenant, user, current_only=True)
    marks: dict[str, list[str]] = {}
    for fact in facts:
        # a fact already stored (a replay) still marks what it replaces, in case an earlier run stopped
        # between writing it and marking: only older facts, and only while it is itself current
        stored = existing.get(fact.id, fact)
        if stored.superseded_by is not None:
            continue
        older = {f.id for f in current if f.created_at <= stored.created_at}
        ids = [i for i in supersedes(stored, current) if i in older]
        if ids:
            marks[stored.id] = ids
    return [f for f in facts if f.id not in existing], marks


async def _write_facts(store: MemoryStore, tenant: str, user: str, facts: list[Fact], marks: dict[str, list[str]],
                       now: float) -> None:
    """The new facts first, then the marks on what they replace: a crash in between leaves marks that
    a replay makes (`_new_facts`), never a mark naming a fact that was not written."""
    for fact in facts:
        await store.put_fact(fact)
    for by, ids in marks.items():
        await store.supersede(tenant, user, ids, by=by, at=now)


async def apply_feedback(store: MemoryStore, index: VectorIndex, embed: Embed, feedback: Feedback, *,
                         now: float, retention_s: float) -> Remembered:
    """POST /v1/feedback: the feedback is kept; a correction or a preference becomes facts through the
    same finder (source "feedback"); a rating moves the rated interaction's importance."""
    if not await _enabled(store, feedback.tenant, feedback.user):
        return Remembered(skipped="memory off")
    expires = now + retention_s
    await store.put_feedback(replace(feedback, created_at=feedback.created_at or now, expires_at=expires))
    found = [f for text in (feedback.correction, feedback.preference) if text for f in find_facts(text)]
    facts, superseded = await _new_facts(store, feedback.tenant, feedback.user, found, source="feedback",
                                         job=feedback.job_id, origin=f"feedback:{feedback.id}", now=now, expires=expires)
    if facts:
        vectors = await asyncio.to_thread(embed, [search_text(f.relation, f.text) for f in facts])
        await index.upsert(feedback.tenant, feedback.user,
                           [VectorRecord(f.id, np.asarray(v, dtype=np.float32), "fact", f.created_at, expires)
                            for f, v in zip(facts, vectors)])
    await _write_facts(store, feedback.tenant, feedback.user, facts, superseded, now)
    rated = None
    if feedback.rating is not None:
        found_items = await store.get_interactions(feedback.tenant, feedback.user, [feedback.job_id])
        if found_items:
            importance = RATED_IMPORTANCE[max(-1, min(1, feedback.rating))]
            await store.put_interaction(replace(found_items[0], importance=importance))
            rated = found_items[0].id
    return Remembered(interaction=rated, facts=[f.id for f in facts],
                      superseded=[i for ids in superseded.values() for i in ids])
