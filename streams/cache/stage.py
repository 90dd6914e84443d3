"""`CacheStage`: answer the eligible jobs of a batch from the semantic cache; note the others' misses
so their answers are stored when they complete (streams/cache/fill.py).

A job whose scope holds nothing in either tier cannot be answered, so its lookup needs no vector:
`needs_embedding_now` says so before the embedding stage runs, the job goes on as a miss at once, and
its miss (scope and vector) is noted in `after_sent`, once the embedding stage computed the vector
after the job was sent. Its answer completes far later than that; should it complete first (a stalled
process), its answer is just not stored."""

from __future__ import annotations

import numpy as np

from infra.metrics import CACHE_LOOKUPS
from ..stages import Answered, Item
from .logic import TenantPolicy, eligible, hit_events, scope_of
from .tiers import Miss, Scopes, SemanticCache


class CacheStage:
    name = "cache"

    def __init__(self, cache: SemanticCache, policy: TenantPolicy, embedding_model: str) -> None:
        self._cache = cache
        self._policy = policy
        self._embedding_model = embedding_model
        #: the shared tier's vectors `needs_embedding_now` read for this batch, for `run`'s lookup
        self._read: Scopes | None = None

    def uses_embedding(self, item: Item) -> bool:
        return eligible(item.request, self._policy)

    async def needs_embedding_now(self, items: list[Item]) -> list[bool]:
        """Per job, whether `run` compares its vector: not when its scope holds nothing in either tier."""
        scopes = [scope_of(i.request, self._embedding_model) if self.uses_embedding(i) else None for i in items]
        self._read = read = await self._cache.read_scopes([s for s in scopes if s is not None])
        return [s is not None and self._cache.may_hit(s, read) for s in scopes]

    async def run(self, items: list[Item]) -> None:
        read, self._read = self._read, None
        candidates = [item for item in items if item.pending and eligible(item.request, self._policy)]
        later = [item for item in candidates if item.embedding is None and item.embedding_later]
        candidates = [item for item in candidates if item.embedding is not None]
        degraded = read is not None and read.degraded and bool(later)
        misses: list[tuple[str, Miss]] = []
        if candidates:
            queries = [(scope_of(item.request, self._embedding_model), np.asarray(item.embedding, dtype=np.float32))
                       for item in candidates]
            hits, degraded_lookup = await self._cache.lookup(queries, read)
            degraded = degraded or degraded_lookup
            for item, (scope, vector), hit in zip(candidates, queries, hits):  # hot loop: one pass
                if hit is not None:
                    item.end = Answered(events=hit_events(item.request, hit))
                else:
                    misses.append((item.request.job_id, Miss(scope, vector, item.request.client_job_id)))
        CACHE_LOOKUPS.labels("hit").inc(len(candidates) - len(misses))
        CACHE_LOOKUPS.labels("miss").inc(len(misses) + len(later))
        if misses and not await self._cache.remember_misses(misses):
            degraded = True
        if degraded:
            for item in [*candidates, *later]:
                if self.name not in item.degraded:
                    item.degraded.append(self.name)

    async def after_sent(self, items: list[Item]) -> None:
        """The misses whose vector the embedding stage computed after they were sent."""
        misses = [(item.request.job_id, Miss(scope_of(item.request, self._embedding_model),
                                             np.asarray(item.embedding, dtype=np.float32), item.request.client_job_id))
                  for item in items if item.pending and item.embedding_later and item.embedding is not None
                  and eligible(item.request, self._policy)]
        if misses:
            await self._cache.remember_misses(misses)
