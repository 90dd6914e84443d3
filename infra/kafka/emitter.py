"""Publishing job events with per-job sequence numbers.

A stage numbers its own events per (job, attempt) from 0, so a stage that re-runs a job after a
crash emits the same numbers again and the fan-out drops the repeats.
"""

from __future__ import annotations

from typing import Any

from schemas.enums import EventSource
from schemas.events import TERMINAL_TYPES, JobEvent

from .codec import encode


class EventEmitter:
    """Numbers and publishes the events one stage emits, keyed by job id."""

    def __init__(self, producer, topic: str, source: EventSource) -> None:
        self._producer = producer
        self._topic = topic
        self._source = source
        self._next_seq: dict[tuple[str, int], int] = {}

    def build(self, event_type: type[JobEvent], job_id: str, attempt: int = 0, **fields: Any) -> JobEvent:
        """The next event of this stage for the job (pure apart from the counter)."""
        slot = (job_id, attempt)
        seq = self._next_seq.get(slot, 0)
        event = event_type(job_id=job_id, seq=seq, attempt=attempt, source=self._source, **fields)
        if event.type in TERMINAL_TYPES:
            self._next_seq.pop(slot, None)
        else:
            self._next_seq[slot] = seq + 1
        return event

    async def emit(self, event_type: type[JobEvent], job_id: str, attempt: int = 0, **fields: Any) -> JobEvent:
        event = self.build(event_type, job_id, attempt, **fields)
        await self.publish(event)
        return event

    async def publish(self, event: JobEvent) -> None:
        """Send an already-built event and wait for the broker's acknowledgement."""
        await self._producer.send_and_wait(self._topic, encode(event), key=event.job_id.encode())

    async def send(self, event: JobEvent):
        """Send without waiting; returns the delivery future (for coalesced hot paths)."""
        return await self._producer.send(self._topic, encode(event), key=event.job_id.encode())
