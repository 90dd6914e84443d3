"""Wiring of the semantic cache: the process's one `SemanticCache`, the stage over it, and the fill
agent on `genloom.events` (thin; what it does is in fill.py)."""

from __future__ import annotations

import logging

import faust

from infra.redis.client import connect
from infra.redis.semcache import Bounds, SemanticCacheStore
from infra.settings.streams import CacheSettings
from schemas.events import may_be

from ..app import Topics
from ..batches import natural_batches
from ..fanout.logic import Malformed, read_event
from .fill import READS as FILLER_READS, CacheFiller
from .logic import LocalTier, TenantPolicy
from .stage import CacheStage
from .tiers import SemanticCache

log = logging.getLogger(__name__)


def build_cache(settings: CacheSettings, redis_url: str | None) -> SemanticCache:
    """The process's cache: the in-process tier, and the shared one when Redis is configured. The
    Redis client has the cache's own short timeouts (a slow Redis must not hold a job)."""
    store = None
    if settings.shared and redis_url:
        redis = connect(redis_url, socket_timeout_s=settings.redis_timeout_s,
                        connect_timeout_s=settings.redis_timeout_s)
        store = SemanticCacheStore(redis, Bounds(
            max_entries=settings.shared_max_entries, max_bytes=settings.shared_max_bytes,
            scope_max_entries=settings.scope_max_entries, ttl_s=settings.ttl_s))
    local = LocalTier(max_entries=settings.local_max_entries, max_bytes=settings.local_max_bytes,
                      ttl_s=settings.ttl_s)
    return SemanticCache(local, store, threshold=settings.threshold, ttl_s=settings.ttl_s, retry_s=settings.retry_s)


def build_stage(cache: SemanticCache, settings: CacheSettings, embedding_model: str) -> CacheStage:
    return CacheStage(cache, TenantPolicy(opt_in=settings.opt_in, off=settings.off, only=settings.only), embedding_model)


def register_fill(app: faust.App, topics: Topics, cache: SemanticCache, batch_max: int = 256) -> None:
    """The fill agent: answers of jobs that missed go into the cache as their `completed` events pass."""
    filler = CacheFiller(cache)

    @app.agent(topics.events, name="genloom.cache.fill")
    async def fill(stream):
        async for batch in natural_batches(stream, batch_max):
            events = []
            for message in (e.message for e in batch):
                if not may_be(message.value, FILLER_READS):
                    continue  # a token (most of the topic): not worth a parse
                event = read_event(topic=message.topic, partition=message.partition, offset=message.offset,
                                   key=message.key, value=message.value, consumer=app.conf.id)
                if not isinstance(event, Malformed):  # the fan-out dead-letters it; nothing to store
                    events.append(event)
            await filler.handle(events)
