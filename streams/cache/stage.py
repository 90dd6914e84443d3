"""`CacheStage`: answer the eligible jobs of a batch from the semantic cache; note the others' misses
so their answers are stored when they complete (streams/cache/fill.py)."""

from __future__ import annotations

import numpy as np

from ..stages import Answered, Item
from .logic import TenantPolicy, eligible, hit_events, scope_of
from .tiers import Miss, SemanticCache


class CacheStage:
    name = "cache"

    def __init__(self, cache: SemanticCache, policy: TenantPolicy, embedding_model: str) -> None:
        self._cache = cache
        self._policy = policy
        self._embedding_model = embedding_model

    async def run(self, items: list[Item]) -> None:
        candidates = [item for item in items
                      if item.pending and item.embedding is not None and eligible(item.request, self._policy)]
        if not candidates:
            return
        queries = [(scope_of(item.request, self._embedding_model), np.asarray(item.embedding, dtype=np.float32))
                   for item in candidates]
        hits, degraded = await self._cache.lookup(queries)
        misses: list[tuple[str, Miss]] = []
        for item, (scope, vector), hit in zip(candidates, queries, hits):  # hot loop: one pass
            if hit is not None:
                item.end = Answered(events=hit_events(item.request, hit))
            else:
                misses.append((item.request.job_id, Miss(scope, vector, item.request.client_job_id)))
        if misses and not await self._cache.remember_misses(misses):
            degraded = True
        if degraded:
            for item in candidates:
                if self.name not in item.degraded:
                    item.degraded.append(self.name)
