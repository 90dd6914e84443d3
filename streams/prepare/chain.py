"""Which stages a processor runs: a registry of builders by name, and the chain that runs them.

A stage is any object with a `name` and `async run(items)` (streams/stages.py). To add one, write
its builder (it gets the `StageContext`, and builds what it needs once per process) and register it::

    STAGE_BUILDERS["embedding"] = build_embedding

`GENLOOM_PREPARE_STAGES=privacy,embedding,cache` then chains them in that order.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property, partial

from infra.metrics import REDACTIONS, STAGE_LATENCY
from infra.redis.audit import ModerationAudit
from infra.redis.client import connect
from infra.redis.jobstore import JobStore, event_store
from infra.redis.redactions import RedactionVault
from infra.settings.moderation import ModerationSettings
from infra.settings.streams import (CacheSettings, EmbeddingSettings, FanoutSettings, PrivacySettings,
                                    WebhookSettings)
from schemas.enums import ErrorCode

from ..stages import Failure, Item, Stage

log = logging.getLogger(__name__)


@dataclass
class StageContext:
    """What stage builders may use: settings read at the edge, and shared clients made on first use."""

    redis_url: str | None = None
    privacy: PrivacySettings = field(default_factory=PrivacySettings)
    embedding: EmbeddingSettings = field(default_factory=EmbeddingSettings)
    cache_settings: CacheSettings = field(default_factory=CacheSettings)
    #: the process's semantic cache, shared with its fill agent (streams/__main__.py); None: the cache is off
    semantic_cache: object | None = None
    #: the process's memory backends (streams/memory/backends.py), shared with the memory writer; None: memory off
    memory: object | None = None
    #: how the fan-out applies events (replay bound, expiry, webhook outbox): a cache hit's answer is
    #: written to the replay log as the fan-out would write it
    fanout: FanoutSettings = field(default_factory=FanoutSettings)
    webhooks: WebhookSettings = field(default_factory=WebhookSettings)
    moderation: ModerationSettings = field(default_factory=ModerationSettings)

    @cached_property
    def redis(self):
        return connect(self.redis_url) if self.redis_url else None

    @cached_property
    def events(self) -> JobStore | None:
        """The store that applies events as the fan-out does; None without Redis."""
        return event_store(self.redis, self.fanout, self.webhooks) if self.redis is not None else None

    async def aclose(self) -> None:
        if self.redis_url and "redis" in self.__dict__:
            await self.redis.aclose()


def build_privacy(ctx: StageContext) -> Stage:
    from ..privacy.engine import shared_analyzer
    from ..privacy.stage import PrivacyStage

    key = ctx.privacy.key_bytes()
    vault = RedactionVault(ctx.redis, key) if key and ctx.redis is not None else None
    return PrivacyStage(shared_analyzer(ctx.privacy.score_threshold, ctx.privacy.ner_max_chars), vault, ctx.privacy)


def build_embedding(ctx: StageContext) -> Stage:
    from ..embedding.stage import build_stage

    return build_stage(ctx.embedding)


class _CacheOff:
    """The cache stage when GENLOOM_SEMANTIC_CACHE_ENABLED=false: it looks nothing up."""

    name = "cache"

    async def run(self, items: list[Item]) -> None:
        return None

    def uses_embedding(self, item: Item) -> bool:
        return False


def build_cache(ctx: StageContext) -> Stage:
    from infra.models.embedder import embedder_for

    from ..cache.agents import build_stage

    if ctx.semantic_cache is None:
        return _CacheOff()
    # the embedding stage's model (loaded once per process and device, so this is the same object)
    embedder = embedder_for(ctx.embedding)
    return build_stage(ctx.semantic_cache, ctx.cache_settings, embedder.name)


class _MemoryOff:
    """The enrichment stage when the process has no memory backends (GENLOOM_MEMORY_ENABLED=false)."""

    name = "enrichment"

    async def run(self, items: list[Item]) -> None:
        return None

    def uses_embedding(self, item: Item) -> bool:
        return False


def build_enrichment(ctx: StageContext) -> Stage:
    """The stage over the process's memory backends (`ctx.memory`: its `settings`, `store`, `index`,
    `sessions` and an idempotent async `start()`, which the stage awaits before its first reads; the
    backends' owner closes them)."""
    from ..enrichment.stage import EnrichmentStage

    backends = ctx.memory
    if backends is None:
        return _MemoryOff()
    return EnrichmentStage(backends.store, backends.index, backends.sessions, backends.settings,
                           ready=backends.start)


def build_moderation(ctx: StageContext) -> Stage:
    from infra.moderation.moderator import build_moderator

    from ..moderation.stage import ModerationOff, ModerationStage

    moderator = build_moderator(ctx.moderation)
    if moderator is None:
        return ModerationOff()
    return ModerationStage(moderator, ModerationAudit(ctx.redis) if ctx.redis is not None else None)


#: stage name -> builder; names are what GENLOOM_PREPARE_STAGES lists
STAGE_BUILDERS: dict[str, Callable[[StageContext], Stage]] = {
    "privacy": build_privacy,
    "moderation": build_moderation,
    "embedding": build_embedding,
    "cache": build_cache,
    "enrichment": build_enrichment,
}


#: the code a job fails with when a stage raises on it; stages not named here fail it with preparation_failed
FAILURE_CODES: dict[str, ErrorCode] = {"privacy": ErrorCode.REDACTION_FAILED}


class UnknownStage(ValueError):
    pass


def build_stages(names: list[str], ctx: StageContext) -> list[Stage]:
    """The stages named, in order (slow: a stage may load a model). Unknown names raise."""
    unknown = [n for n in names if n not in STAGE_BUILDERS]
    if unknown:
        raise UnknownStage(f"unknown preparation stage(s) {', '.join(unknown)} in GENLOOM_PREPARE_STAGES:"
                           f" choose from {', '.join(sorted(STAGE_BUILDERS))}")
    return wire_embedding([STAGE_BUILDERS[n](ctx) for n in names])


def wire_embedding(stages: list[Stage]) -> list[Stage]:
    """Let an embedding stage embed only the jobs a later stage of the chain reads the vector of, when
    every later stage says which (`uses_embedding`), and leave for after the send the vectors no later
    stage's `run` reads (`needs_embedding_now`); with none after it (a split-out processor whose output
    another one reads) it embeds every job at once."""
    for i, stage in enumerate(stages):
        later = stages[i + 1:]
        if hasattr(stage, "wanted") and later and all(hasattr(s, "uses_embedding") for s in later):
            stage.wanted = lambda item, later=later: any(s.uses_embedding(item) for s in later)
            stage.needed_now = partial(_needed_now, later)
    return stages


async def _needed_now(later: list[Stage], items: list[Item]) -> list[bool]:
    """Per job, whether one of the `later` stages uses its vector in its `run` (a stage that raises when
    asked gets every vector it uses at once)."""
    now = [False] * len(items)
    for stage in later:
        uses = [stage.uses_embedding(item) for item in items]
        if not any(uses):
            continue
        early = uses
        ask = getattr(stage, "needs_embedding_now", None)
        if ask is not None:
            try:
                early = await ask(items)
            except Exception as exc:
                log.error("stage %s raised when asked which vectors it reads at once (%s); it gets them all",
                          stage.name, type(exc).__name__)
        now = [n or (u and e) for n, u, e in zip(now, uses, early)]
    return now


async def run_chain(stages: list[Stage], items: list[Item], skip: Callable[[Item], bool] = lambda i: False) -> dict[
        str, float]:
    """Run every stage over the batch, in order; the milliseconds each took.

    Items for which `skip` is true (a tenant with every stage off) are held out of every stage. A
    stage that raises (a bug) is run again job by job, so only the jobs it raises on fail.
    """
    batch = [i for i in items if not skip(i)]
    spent: dict[str, float] = {}
    for stage in stages:
        began = time.perf_counter()
        if any(i.pending for i in batch):
            try:
                await stage.run(batch)
            except Exception as exc:
                log.error("stage %s raised on a batch of %d (%s); running it job by job", stage.name, len(batch),
                          type(exc).__name__)
                await _one_by_one(stage, [i for i in batch if i.pending])
        spent[stage.name] = (time.perf_counter() - began) * 1000
        STAGE_LATENCY.labels(stage.name).observe(spent[stage.name] / 1000)
    for item in batch:
        for entity, count in item.redactions.items():
            REDACTIONS.labels(entity).inc(count)
    return spent


async def after_sent(stages: list[Stage], items: list[Item], skip: Callable[[Item], bool] = lambda i: False) -> None:
    """Each stage's work on the batch once its messages are sent (`after_sent`, where a stage has it), in
    chain order. The jobs are on their way: a stage that raises is logged, and the next goes on."""
    batch = [i for i in items if not skip(i)]
    for stage in stages:
        finish = getattr(stage, "after_sent", None)
        if finish is None:
            continue
        try:
            await finish(batch)
        except Exception as exc:
            log.error("stage %s raised after a batch of %d was sent (%s)", stage.name, len(batch), type(exc).__name__)


async def _one_by_one(stage: Stage, items: list[Item]) -> None:
    for item in items:
        try:
            await stage.run([item])
        except Exception as exc:
            item.end = Failure(FAILURE_CODES.get(stage.name, ErrorCode.PREPARATION_FAILED),
                               f"the {stage.name} stage failed on this job ({type(exc).__name__}): report it if it"
                               " repeats")
