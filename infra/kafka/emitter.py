"""Publishing job events, numbered per (job, attempt) by `EventNumbering`."""

from __future__ import annotations

from typing import Any

from schemas.enums import EventSource
from schemas.events import JobEvent

from .codec import encode
from .numbering import EventNumbering


class EventEmitter:
    """Numbers and publishes the events one stage emits, keyed by job id."""

    def __init__(self, producer, topic: str, source: EventSource) -> None:
        self._producer = producer
        self._topic = topic
        self._numbering = EventNumbering(source)

    def build(self, event_type: type[JobEvent], job_id: str, attempt: int = 0, **fields: Any) -> JobEvent:
        """The next event of this stage for the job (not sent)."""
        return self._numbering.build(event_type, job_id, attempt, **fields)

    async def emit(self, event_type: type[JobEvent], job_id: str, attempt: int = 0, **fields: Any) -> JobEvent:
        event = self.build(event_type, job_id, attempt, **fields)
        await self.publish(event)
        return event

    async def publish(self, event: JobEvent) -> None:
        """Send an already-built event and wait for the broker's acknowledgement."""
        await self._producer.send_and_wait(self._topic, encode(event), key=event.job_id.encode())

    async def send(self, event: JobEvent, headers: list[tuple[str, bytes]] | None = None):
        """Send without waiting; returns the delivery future (for coalesced hot paths). `headers`: the
        trace context the event carries on (`infra.tracing`)."""
        return await self._producer.send(self._topic, encode(event), key=event.job_id.encode(), headers=headers)
