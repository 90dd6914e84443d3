"""The memory writer: thin. One tap (a consumer group of its own, streams/tap.py) reads the workers'
topics (jobs, already redacted), the released events (for `completed`) and `genloom.memory`
(feedback, erasure), and does what streams/memory/writer.py decides, in order per message. A store
that fails is retried until it answers: the message's offset is committed only after it, so a
completed interaction is never lost (and replays write nothing twice: every write is keyed). A timer
sweeps what outlived its retention.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from functools import cached_property

import faust
from pydantic import ValidationError

from infra.blob.base import BlobStore
from infra.kafka.consume import Record
from infra.kafka.topics import EVENTS, MEMORY, jobs_topic
from infra.memory.base import AuditRecord, Feedback
from infra.redis import keys
from infra.redis.sessions import Turn
from schemas.enums import EventType, Modality
from schemas.events import parse_event
from schemas.memory import EraseUser, ErasureReport, MemoryFeedback, parse_memory_command
from schemas.requests import parse_request

from ..tap import TapHandler, TapSpec
from ..cache.tiers import SemanticCache
from ..privacy.logic import redact_texts
from .backends import MemoryBackends
from .erase import ErasureTargets, erase_user
from .ingest import apply_feedback, remember
from .writer import PendingJob, is_completed, pending_job

log = logging.getLogger(__name__)

#: first and longest wait between retries of a failing store (the writer never skips a message)
RETRY_FIRST_S, RETRY_MAX_S = 0.5, 30.0

# A job's request and its `completed` reach the writer on different topics of one spaced fetch (or of
# two processes of the group), so either may come first. Each side runs one of these scripts, atomic in
# Redis: the completion takes the request's note, or leaves itself for the request to find; exactly one
# of the two then remembers the job.
_CLAIM = """
local note = redis.call('GET', KEYS[1])
if note then return note end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return false
"""
_NOTE = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
local early = redis.call('GET', KEYS[2])
if early then redis.call('DEL', KEYS[2]) end
return early
"""


class MemoryWriter:
    """What the tap does with each message (async, no Kafka): testable against real backends."""

    def __init__(self, backends: MemoryBackends, *, embed: Callable, analyze: Callable | None,
                 blobs: BlobStore | None, cache: SemanticCache | None) -> None:
        self.backends = backends
        self.settings = backends.settings
        self._embed = embed
        self._analyze = analyze
        self._blobs = blobs
        self._cache = cache

    async def on_job(self, value: bytes) -> None:
        try:
            request = parse_request(value)
        except ValidationError:
            return  # the workers dead-letter it
        now = time.time()
        note = pending_job(request, self.settings, now)
        if note is None or not await self._consents(note.tenant, note.user):
            return
        # only a note until the job completes: a job that fails or is cancelled leaves nothing in memory
        job_id = request.job_id
        early = await self._note(keys=[keys.memory_pending(job_id), keys.memory_early(job_id)],
                                 args=[note.dumps(), keys.MEMORY_PENDING_TTL_S])
        if note.session and self.backends.sessions is not None:
            await self.backends.sessions.append(note.tenant, note.user, note.session,
                                                Turn("user", note.prompt, job_id, now))
        if early:  # the job's completion came first and left itself for this request
            await self.on_completed(job_id, json.loads(early)["text"])

    async def on_completed(self, job_id: str, text: str | None) -> bool:
        """Remember a completed job of a remembered user; False when it is none of those (or when its
        request has not been read yet: the request remembers it then, see on_job)."""
        redis = self.backends.redis
        raw = await self._claim(keys=[keys.memory_pending(job_id), keys.memory_early(job_id)],
                                args=[json.dumps({"text": text}), keys.MEMORY_EARLY_TTL_S])
        note = PendingJob.loads(raw) if raw else None
        if note is None:
            return False
        retention_s = self.settings.retention_s_for(note.tenant)
        interaction = note.interaction(job_id, text, retention_s=retention_s)
        await self.backends.start()
        store, index = self.backends.store, self.backends.index
        await remember(store, index, self._embed, interaction, now=time.time(), retention_s=retention_s)
        if note.session and text and self.backends.sessions is not None:
            await self.backends.sessions.append(note.tenant, note.user, note.session,
                                                Turn("assistant", interaction.answer or "", job_id, time.time()))
        await redis.delete(keys.memory_pending(job_id))
        return True

    @cached_property
    def _claim(self):
        return self.backends.redis.register_script(_CLAIM)

    @cached_property
    def _note(self):
        return self.backends.redis.register_script(_NOTE)

    async def on_feedback(self, cmd: MemoryFeedback) -> None:
        texts = [cmd.correction or "", cmd.preference or ""]
        if self._analyze is not None and any(t.strip() for t in texts):
            texts = await asyncio.to_thread(redact_texts, texts, self._analyze)
        now = time.time()
        feedback = Feedback(id=cmd.id, tenant=cmd.tenant, user=cmd.user, job_id=cmd.job_id, rating=cmd.rating,
                            correction=texts[0] or None, preference=texts[1] or None, created_at=cmd.ts,
                            expires_at=now + self.settings.retention_s_for(cmd.tenant))
        await self.backends.start()
        store, index = self.backends.store, self.backends.index
        await apply_feedback(store, index, self._embed, feedback, now=now,
                             retention_s=self.settings.retention_s_for(cmd.tenant))

    async def on_erase(self, cmd: EraseUser) -> ErasureReport:
        await self.backends.start()
        store, index = self.backends.store, self.backends.index
        targets = ErasureTargets(store=store, index=index, redis=self.backends.redis,
                                 sessions=self.backends.sessions, blobs=self._blobs, cache=self._cache)
        counts = await erase_user(cmd.tenant, cmd.user, targets)
        at = time.time()
        await store.put_audit(AuditRecord(id=cmd.id, tenant=cmd.tenant, user=cmd.user, action="erase",
                                          counts=counts, at=at))
        report = ErasureReport(id=cmd.id, user=cmd.user, status="erased", counts=counts, at=at)
        await self.backends.redis.set(keys.erasure(cmd.id), report.model_dump_json(), ex=keys.ERASURE_TTL_S)
        log.info("erased user data of tenant %s: %s", cmd.tenant, counts)
        return report

    async def sweep(self) -> dict[str, int]:
        """Delete what outlived its retention; an audit record says how much (when anything went)."""
        now = time.time()
        await self.backends.start()
        store, index = self.backends.store, self.backends.index
        counts = {f"memory_{k}": v for k, v in (await store.sweep(now)).items()}
        counts["vectors"] = await index.sweep(now)
        if any(counts.values()):
            await store.put_audit(AuditRecord(id=f"sweep_{uuid.uuid4().hex}", tenant="*", user=None,
                                              action="retention", counts=counts, at=now))
        return counts

    async def _consents(self, tenant: str, user: str) -> bool:
        await self.backends.start()
        profile = await self.backends.store.get_profile(tenant, user)
        return profile is None or profile.memory_enabled

    @staticmethod
    def wants(topic: str, value: bytes | None) -> bool:
        """Whether a message is any of the writer's business: of the events, only `completed` (the
        rest, tokens mostly, are passed over without a parse)."""
        return bool(value) and (topic != EVENTS or is_completed(value))

    async def handle(self, topic: str, value: bytes | None) -> None:
        """One message of any of the tap's topics."""
        if not self.wants(topic, value):
            return
        if topic == EVENTS:
            try:
                event = parse_event(value)
            except ValidationError:
                return  # the fan-out dead-letters it
            if event.type is EventType.COMPLETED:
                await self.on_completed(event.job_id, getattr(event, "text", None))
        elif topic == MEMORY:
            try:
                cmd = parse_memory_command(value)
            except ValidationError as exc:
                log.warning("dropping a malformed memory command (%s)", exc.errors()[0]["msg"])
                return
            if isinstance(cmd, EraseUser):
                await self.on_erase(cmd)
            else:
                await self.on_feedback(cmd)
        else:
            await self.on_job(value)


async def until_done(what: str, call: Callable) -> None:
    """Run `call()` until it returns: a store that is down holds this tap, never loses its message."""
    wait = RETRY_FIRST_S
    while True:
        try:
            return await call()
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a store or Redis failure: try again (the log names it, never the content)
            log.warning("memory writer: %s failed (%s: %s); retrying in %.1fs", what, type(exc).__name__,
                        str(exc)[:200], wait)
            await asyncio.sleep(wait)
            wait = min(wait * 2, RETRY_MAX_S)


class MemoryTap(TapHandler):
    """The memory tap's handler: each message in order, each retried until its store answers (the
    workers dead-letter a bad request, the fan-out a bad event; a bad command is logged)."""

    def __init__(self, writer: MemoryWriter) -> None:
        self.writer = writer

    async def handle(self, records: list[Record[bytes]]) -> None:
        for r in records:  # hot loop: the events topic's tokens go by here
            if self.writer.wants(r.tp.topic, r.value):
                await until_done(f"a message of {r.tp.topic}", lambda r=r: self.writer.handle(r.tp.topic, r.value))

    async def close(self) -> None:
        await self.writer.backends.aclose()


def register(app: faust.App, writer: MemoryWriter, *, batch_max: int = 64) -> TapSpec:
    """The writer's tap (to run with the process's others) and its retention sweep (a timer of `app`)."""

    @app.timer(interval=writer.settings.sweep_interval_s)
    async def sweep():
        try:
            await writer.sweep()
        except Exception as exc:
            log.warning("memory retention sweep failed (%s); the next one tries again", type(exc).__name__)

    topics = [*(jobs_topic(m) for m in Modality), EVENTS, MEMORY]
    return TapSpec("memory", topics, lambda group: MemoryTap(writer), batch_max=batch_max)


def build_writer(backends: MemoryBackends, ctx, blobs: BlobStore | None) -> MemoryWriter:
    """The writer over the process's backends, with the preparation's embedder and PII analyzer (both
    loaded on first use and shared with the stages: one copy of each model per process)."""
    from infra.models.embedder import embedder_for

    from ..privacy.engine import shared_analyzer

    def embed(texts: list[str]):
        e = ctx.embedding
        return embedder_for(e).encode(texts, e.batch_size)

    def analyze(texts: list[str]):
        return shared_analyzer(ctx.privacy.score_threshold, ctx.privacy.ner_max_chars).analyze(texts)

    return MemoryWriter(backends, embed=embed, analyze=analyze, blobs=blobs, cache=ctx.semantic_cache)
