"""The retrieval engine: for one job, ask the stores for the user's memories, then let logic.py decide.

Every read is scoped by the job's (tenant, user): the vector query, the facts, the interactions and
the session's turns are the user's own, so nothing of one user reaches another's prompt. The reads
that do not depend on each other run at once (profile, vector query, facts, session turns), then
the hit interactions are fetched: two round trips per job.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from infra.memory.base import MemoryStore
from infra.settings.memory import MemorySettings
from infra.vectors.base import VectorIndex
from schemas import AnyRequest, TextRequest

from infra.redis.sessions import Turn

from .logic import WEIGHTS, Enriched, Hit, Weights, candidates, enrich

#: vector hits asked for per memory that may go in: duplicates and superseded facts fall out
HITS_PER_SLOT = 3


class SessionTurns(Protocol):
    """The session store (infra/redis/sessions.py SessionStore): a session's recent turns, oldest first."""

    async def recent(self, tenant: str, user: str, session: str, limit: int | None = None) -> list[Turn]: ...


class MemoryOff(Exception):
    """The user turned memory off: nothing is retrieved (not a degradation)."""


@dataclass(frozen=True)
class Retrieved:
    enriched: Enriched
    #: candidates considered (for metrics and the bench)
    considered: int


class Retriever:
    def __init__(self, store: MemoryStore, index: VectorIndex, sessions: SessionTurns | None,
                 settings: MemorySettings, *, weights: Weights = WEIGHTS, voices: frozenset[str] = frozenset(),
                 clock: Callable[[], float] = time.time) -> None:
        self._store = store
        self._index = index
        self._sessions = sessions
        self._settings = settings
        self._weights = weights
        self._voices = voices
        self._clock = clock

    async def retrieve(self, request: AnyRequest, embedding: np.ndarray,
                       shared: dict[tuple[str, str, str], asyncio.Future] | None = None) -> Retrieved:
        """The request with the user's memories in it. Raises MemoryOff for a user without consent,
        and whatever a store raises (the stage degrades on it). Jobs of one batch pass the same
        `shared` dict: a user's profile and facts are then read once for all of that user's jobs
        (the fact read is most of a long history's cost)."""
        tenant, user = request.tenant, request.user
        if user is None:
            raise MemoryOff(user)
        k = self._settings.top_k * HITS_PER_SLOT
        profile, hits, facts, turns = await asyncio.gather(
            _once(shared, ("profile", tenant, user), lambda: self._store.get_profile(tenant, user)),
            self._index.query(tenant, user, np.asarray(embedding, dtype=np.float32), k),
            _once(shared, ("facts", tenant, user), lambda: self._store.facts(tenant, user, current_only=False)),
            self._turns(request),
        )
        if profile is not None and not profile.memory_enabled:
            raise MemoryOff(user)
        wanted = [h.id for h in hits if h.kind == "interaction"]
        interactions = await self._store.get_interactions(tenant, user, wanted) if wanted else []
        own = [m.content for m in request.params.messages] if isinstance(request, TextRequest) else []
        found = candidates([Hit(h.id, h.kind, h.score, h.created_at) for h in hits], facts, interactions,
                           modality=request.modality.value, turns=turns,
                           preferences=profile.preferences if profile is not None else None,
                           profile_at=profile.updated_at if profile is not None else 0.0, exclude_texts=own)
        enriched = enrich(request, found, now=self._clock(), top_k=self._settings.top_k,
                          budget_tokens=self._settings.budget_tokens, weights=self._weights, voices=self._voices)
        return Retrieved(enriched, len(found))

    async def _turns(self, request: AnyRequest) -> list[Turn]:
        if self._sessions is None or request.session is None or self._settings.session_turns == 0:
            return []
        return await self._sessions.recent(request.tenant, request.user, request.session,
                                           self._settings.session_turns)


def _once(shared: dict | None, key: tuple[str, str, str], read: Callable) -> asyncio.Future:
    """One read per key and batch: later jobs of the batch await the first job's read."""
    if shared is None:
        return asyncio.ensure_future(read())
    found = shared.get(key)
    if found is None:
        found = shared[key] = asyncio.ensure_future(read())
    return asyncio.shield(found)  # one job giving up must not cancel the read the others wait on
