"""A stand-in for the preparation processor, for tests and benchmarks until the real one runs the
stages: the real embedding and cache stages over the requests of some tenants on `genloom.requests`,
a hit's events published to `genloom.events`. Misses go nowhere here (the routing agent of
`python -m streams` forwards every request to its job topic anyway)."""

from __future__ import annotations

import asyncio

from infra.kafka import clients
from infra.kafka.codec import decode_request, encode
from infra.kafka.topics import EVENTS, REQUESTS
from infra.models.embedder import load_embedder
from infra.redis.client import connect
from infra.redis.semcache import SemanticCacheStore
from streams.cache.logic import LocalTier, TenantPolicy
from streams.cache.stage import CacheStage
from streams.cache.tiers import SemanticCache
from streams.embedding.stage import EmbeddingStage
from streams.stages import Answered, Item


async def run_chain(bootstrap: str, redis_url: str, producer, tenants: set[str], *, threshold: float,
                    ready: asyncio.Event | None = None) -> None:
    """Run until cancelled; `ready` is set once the model is loaded and the consumer started."""
    embedder = await asyncio.to_thread(load_embedder)
    redis = connect(redis_url, socket_timeout_s=0.5, connect_timeout_s=0.5)
    cache = SemanticCache(LocalTier(max_entries=1000, max_bytes=1 << 24, ttl_s=600), SemanticCacheStore(redis),
                          threshold=threshold, ttl_s=600)
    stages = [EmbeddingStage(embedder), CacheStage(cache, TenantPolicy(), embedder.name)]
    consumer = clients.consumer(bootstrap, REQUESTS, group_id=None, auto_offset_reset="earliest")
    await clients.start_client(consumer, bootstrap)
    if ready is not None:
        ready.set()
    try:
        while True:  # hot loop: one batch of everything polled at once
            polled = await consumer.getmany(timeout_ms=10)
            items = []
            for message in (m for batch in polled.values() for m in batch):
                try:
                    request = decode_request(message.value)
                except Exception:  # other producers' garbage: the routing agent dead-letters it
                    continue
                if request.tenant in tenants:
                    items.append(Item(request, message.key))
            for stage in stages:
                await stage.run(items)
            sends = [await producer.send(EVENTS, encode(event), key=event.job_id.encode())
                     for item in items if isinstance(item.end, Answered) for event in item.end.events]
            if sends:
                await asyncio.gather(*sends)
    finally:
        await consumer.stop()
        await redis.aclose()
