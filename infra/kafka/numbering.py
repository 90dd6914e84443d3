"""Per-(job, attempt) event numbering, pure.

A stage numbers its own events per (job, attempt) from 0, so a stage that re-runs a job after a
crash emits the same numbers again and the fan-out drops the repeats.
"""

from __future__ import annotations

from typing import Any

from schemas.enums import EventSource
from schemas.events import JobEvent, is_terminal


class EventNumbering:
    """Builds one stage's events with their next sequence number; forgets a job at its terminal."""

    def __init__(self, source: EventSource) -> None:
        self._source = source
        self._next_seq: dict[tuple[str, int], int] = {}

    def build(self, event_type: type[JobEvent], job_id: str, attempt: int = 0, **fields: Any) -> JobEvent:
        """The next event of this stage for the job."""
        slot = (job_id, attempt)
        seq = self._next_seq.get(slot, 0)
        event = event_type(job_id=job_id, seq=seq, attempt=attempt, source=self._source, **fields)
        if is_terminal(event):
            self._next_seq.pop(slot, None)
        else:
            self._next_seq[slot] = seq + 1
        return event
