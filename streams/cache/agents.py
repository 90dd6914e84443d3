"""Wiring of the semantic cache: the process's one `SemanticCache`, the stage over it, and the fill
tap on `genloom.events` (thin; what it does is in fill.py)."""

from __future__ import annotations

import logging

from infra.kafka.consume import Record
from infra.kafka.topics import EVENTS
from infra.redis.client import connect
from infra.redis.semcache import Bounds, SemanticCacheStore
from infra.settings.streams import CacheSettings
from schemas.events import may_be

from infra.fanout.logic import Malformed, read_event
from ..tap import TapHandler, TapSpec
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


class FillTap(TapHandler):
    """The fill tap's handler: the batch's lifecycle events (a token is skipped before any parse);
    what does not parse is the fan-out's to dead-letter."""

    def __init__(self, group: str, cache: SemanticCache) -> None:
        self._group = group
        self._filler = CacheFiller(cache)

    async def handle(self, records: list[Record[bytes]]) -> None:
        events = []
        for r in records:  # hot loop: most of the topic is tokens
            if not may_be(r.value, FILLER_READS):
                continue  # a token (most of the topic): not worth a parse
            event = read_event(topic=r.tp.topic, partition=r.tp.partition, offset=r.offset, key=r.key, value=r.value,
                               consumer=self._group)
            if not isinstance(event, Malformed):
                events.append(event)
        await self._filler.handle(events)


def fill_spec(cache: SemanticCache, batch_max: int = 256) -> TapSpec:
    """The fill tap: answers of jobs that missed go into the cache as their `completed` events pass."""
    return TapSpec("cache-fill", [EVENTS], lambda group: FillTap(group, cache), batch_max=batch_max)
