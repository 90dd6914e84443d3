"""Filling the semantic cache: the answers of jobs that missed, taken from `genloom.events` in batches.

A job that missed left a marker (its scope and vector, `SemanticCache.remember_misses`); when its
`completed` event comes by, the marker is taken and the answer stored under it. The answer is the
worker's text as released by moderation: after redaction the model saw placeholders, so the cache
holds none of the user's personal data (the gateway restores values per job). The model that
answered is taken from the job's `started` event, remembered for the jobs still running.
"""

from __future__ import annotations

import time
from collections import OrderedDict

from schemas.enums import EventSource, EventType
from schemas.events import Cancelled, Completed, Failed, JobEvent, ModelInfo, Started

from .logic import STORABLE, Answer
from .tiers import SemanticCache

#: the events the filler reads; the agent parses no other
READS = frozenset({EventType.STARTED, EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED})
#: started events remembered for jobs still running (one ModelInfo each; the oldest are forgotten)
_MAX_STARTED = 20_000


class CacheFiller:
    def __init__(self, cache: SemanticCache) -> None:
        self._cache = cache
        self._models: OrderedDict[str, ModelInfo] = OrderedDict()

    async def handle(self, events: list[JobEvent]) -> int:
        """Store the answers these events complete; the number stored."""
        finished: dict[str, Completed | None] = {}
        for event in events:  # hot loop: one pass over the batch
            match event:
                case Started(cache=None) if event.source is not EventSource.STREAMS:
                    self._models[event.job_id] = event.model
                    self._models.move_to_end(event.job_id)
                case Completed(cache=None) if event.text is not None and event.finish_reason in STORABLE:
                    finished[event.job_id] = event
                case Completed() | Failed() | Cancelled():
                    finished.setdefault(event.job_id, None)  # the marker goes; nothing is stored
        while len(self._models) > _MAX_STARTED:
            self._models.popitem(last=False)
        if not finished:
            return 0
        misses = await self._cache.claim(list(finished))
        now = time.time()
        answers = []
        models = {job_id: self._models.pop(job_id, None) for job_id in finished}
        for job_id, miss in misses.items():
            completed = finished[job_id]
            model = models[job_id]
            if completed is None:
                continue
            if model is None:  # its started event was read by another instance or before a restart
                model = ModelInfo(id="unknown", device="unknown", dtype="unknown")
            answers.append((miss, Answer(job_id, completed.text or "", completed.finish_reason, model, now,
                                          client_job_id=miss.client_job_id)))
        await self._cache.store_answers(answers)
        return len(answers)
