"""Erasing a user: every store that may hold something of theirs, counted (never shown).

What is erased, and where it is found:
- memory (profile, interactions, facts, feedback) and the vector index: by (tenant, user);
- session turns in Redis: by (tenant, user);
- the user's jobs: their ids come from the gateway's per-user index and from the interactions kept;
  each ended job's record, replay log, dedupe and cancel state, placeholder mapping, artifacts, and the
  semantic cache's answers that came from it. A job still running is left alone (erasing its record
  under a live worker would leave a half-made one behind) and counted as `jobs_running`: erase again
  once it has ended.
The audit record keeps the counts; erasing twice finds nothing the second time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import redis.asyncio as aioredis

from infra.blob.base import ARTIFACT_PREFIX, BlobStore
from infra.memory.base import MemoryStore
from infra.redis import keys
from infra.redis.jobrecord import JobRecord
from infra.redis.sessions import SessionStore
from infra.vectors.base import VectorIndex
from schemas.enums import JobStatus

from ..cache.tiers import SemanticCache


@dataclass
class ErasureTargets:
    store: MemoryStore
    index: VectorIndex
    redis: aioredis.Redis
    sessions: SessionStore | None
    blobs: BlobStore | None
    cache: SemanticCache | None


async def erase_user(tenant: str, user: str, t: ErasureTargets) -> dict[str, int]:
    """Delete everything of the user; how many items of each kind went."""
    kept = await t.store.export(tenant, user)
    job_ids = {i["id"] for i in kept.get("interactions", []) if i.get("id")}
    job_ids |= {m.decode() for m in await t.redis.smembers(keys.user_jobs(tenant, user))}
    counts: dict[str, int] = {}
    for kind, n in (await t.store.erase(tenant, user)).items():
        counts[f"memory_{kind}"] = n
    counts["vectors"] = await t.index.erase(tenant, user)
    sessions = await t.sessions.erase_user(tenant, user) if t.sessions is not None else {}
    counts["session_turns"] = sessions.get("session_turns", 0)
    ended, running = await _ended_jobs(t.redis, sorted(job_ids))
    counts["jobs"] = await _erase_jobs(t.redis, ended)
    counts["jobs_running"] = len(running)
    counts["artifacts"] = 0
    if t.blobs is not None:
        for job_id in ended:
            counts["artifacts"] += await t.blobs.expire(f"{ARTIFACT_PREFIX}/{tenant}/{job_id}", math.inf)
    counts["cache_entries"] = await t.cache.forget(ended) if t.cache is not None and ended else 0
    if not running:
        await t.redis.delete(keys.user_jobs(tenant, user))
    elif ended:  # the running ones stay indexed for the next erasure
        await t.redis.srem(keys.user_jobs(tenant, user), *ended)
    return counts


async def _ended_jobs(redis: aioredis.Redis, job_ids: list[str]) -> tuple[list[str], list[str]]:
    """The jobs split into ended (or gone) and still running."""
    if not job_ids:
        return [], []
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hgetall(keys.job_record(job_id))
        raw = await pipe.execute()
    ended, running = [], []
    for job_id, fields in zip(job_ids, raw):
        status = JobRecord.from_fields(fields).status if fields else None
        (running if status in (JobStatus.QUEUED, JobStatus.RUNNING) else ended).append(job_id)
    return ended, running


async def _erase_jobs(redis: aioredis.Redis, job_ids: list[str]) -> int:
    """Delete the Redis state of ended jobs; how many had a record or a replay log."""
    if not job_ids:
        return 0
    async with redis.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.delete(keys.job_record(job_id), keys.replay_log(job_id))
            pipe.delete(keys.dedupe(job_id), keys.cancel_flag(job_id), keys.redactions(job_id),
                        keys.webhook_progress_gate(job_id), keys.memory_pending(job_id))
        replies = await pipe.execute()
    return sum(1 for n in replies[0::2] if n)
