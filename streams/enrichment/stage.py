"""`EnrichmentStage`: the user's memories into each job's prompt, within a time budget.

Thin: it picks the jobs that may be enriched (a user, a tenant that remembers, a vector from the
embedding stage), runs one retrieval per job at once, and waits at most `timeout_ms` for all of
them. A job whose retrieval failed or did not finish in time goes on without memory, and
`degraded` says so ("memory"): a slow or dead store never holds a job back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable

from infra.memory.base import MemoryStore
from infra.settings.memory import MemorySettings
from infra.vectors.base import VectorIndex

from ..stages import Item
from .engine import MemoryOff, Retriever, SessionTurns
from .logic import WEIGHTS, Weights

log = logging.getLogger(__name__)


class EnrichmentStage:
    name = "enrichment"

    def __init__(self, store: MemoryStore, index: VectorIndex, sessions: SessionTurns | None,
                 settings: MemorySettings, *, weights: Weights = WEIGHTS, voices: frozenset[str] = frozenset(),
                 clock: Callable[[], float] = time.time, ready: Callable[[], Awaitable[None]] | None = None) -> None:
        """`ready` makes sure the stores are started (the shared backends' idempotent `start`); None: the
        caller started them."""
        self._settings = settings
        self._retriever = Retriever(store, index, sessions, settings, weights=weights, voices=voices, clock=clock)
        self._ready = ready
        self._started = ready is None

    async def _start(self) -> None:
        """Before the first reads (builders run in a thread, before the loop serves jobs); a failure is
        tried again on the next batch."""
        if not self._started:
            await self._ready()
            self._started = True

    def uses_embedding(self, item: Item) -> bool:
        """The vector searches a remembered user's memories."""
        request = item.request
        return request.user is not None and self._settings.remembers(request.tenant)

    def _wanted(self, item: Item) -> bool:
        return item.pending and self.uses_embedding(item)

    async def run(self, items: list[Item]) -> None:
        todo = [i for i in items if self._wanted(i)]
        if not todo:
            return
        ready = [i for i in todo if i.embedding is not None]
        for item in todo:
            if item.embedding is None:  # no vector to search with (the embedding stage degraded or is off)
                self._degrade(item)
        if not ready:
            return
        budget = self._settings.timeout_ms / 1000
        deadline = time.monotonic() + budget  # one budget for starting the stores and reading them
        try:
            await asyncio.wait_for(self._start(), budget)
        except Exception as exc:
            log.warning("memory stores unavailable (%s): %d jobs go on without memory", type(exc).__name__, len(ready))
            for item in ready:
                self._degrade(item)
            return
        shared: dict = {}  # a user's profile and facts, read once for all of their jobs in this batch
        tasks = [asyncio.ensure_future(self._retriever.retrieve(i.request, i.embedding, shared)) for i in ready]
        done, late = await asyncio.wait(tasks, timeout=max(0.0, deadline - time.monotonic()))
        for task in late:
            task.cancel()
        failed: list[str] = []
        for item, task in zip(ready, tasks):  # hot loop: one pass over the batch
            if task not in done:
                self._degrade(item)
                continue
            exc = task.exception()
            if isinstance(exc, MemoryOff):
                continue
            if exc is not None:
                failed.append(type(exc).__name__)
                self._degrade(item)
                continue
            result = task.result()
            item.request = result.enriched.request
            item.memories = result.enriched.memories
        if late or failed:
            log.warning("enrichment: %d jobs past %.0f ms, %d failed (%s); they go on without memory", len(late),
                        self._settings.timeout_ms, len(failed), ", ".join(sorted(set(failed))) or "-")

    def _degrade(self, item: Item) -> None:
        if "memory" not in item.degraded:
            item.degraded.append("memory")
