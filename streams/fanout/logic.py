"""Pure fan-out decisions: what an event does to the job record, and how a message is read."""

from __future__ import annotations

import json
from dataclasses import dataclass

from infra.kafka.codec import decode_event
from infra.kafka.dlq import decode_or_dead_letter, describe_event_error
from schemas.dlq import DeadLetter
from schemas.enums import JobStatus
from schemas.events import (
    Accepted,
    Artifact,
    Cancelled,
    Completed,
    Failed,
    JobEvent,
    Progress,
    Started,
    is_terminal,
)

#: how far along the lifecycle a status is; the record never moves backwards
STATUS_RANK: dict[JobStatus, int] = {
    JobStatus.QUEUED: 0,
    JobStatus.RUNNING: 1,
    JobStatus.COMPLETED: 2,
    JobStatus.FAILED: 2,
    JobStatus.CANCELLED: 2,
}

_RUNNING_TYPES = frozenset({"started", "token", "progress", "audio", "artifact"})
_TERMINAL_STATUS = {
    "completed": JobStatus.COMPLETED,
    "failed": JobStatus.FAILED,
    "cancelled": JobStatus.CANCELLED,
}


@dataclass(frozen=True)
class RecordUpdate:
    """What one event writes to the job record (all values are strings, as Redis stores them)."""

    status: JobStatus | None
    terminal: bool
    fields: dict[str, str]
    fields_if_absent: dict[str, str]

    @property
    def rank(self) -> int:
        return STATUS_RANK[self.status] if self.status is not None else -1


def status_of(event: JobEvent) -> JobStatus | None:
    """The status an event moves its job to, or None when it says nothing about the lifecycle."""
    if event.type in _TERMINAL_STATUS:
        return _TERMINAL_STATUS[event.type]
    if event.type in _RUNNING_TYPES:
        return JobStatus.RUNNING
    if event.type == "accepted":
        return JobStatus.QUEUED
    return None


def _json(model) -> str:
    return model.model_dump_json()


def record_update(event: JobEvent) -> RecordUpdate:
    """The record fields an event sets (pure)."""
    ts = repr(event.ts)
    fields: dict[str, str] = {}
    if_absent: dict[str, str] = {"created_at": ts}
    match event:
        case Accepted():
            if_absent.update(tenant=event.tenant, modality=event.modality.value, accepted_at=ts)
            if event.model:
                if_absent["model"] = event.model
        case Started():
            fields.update(worker=event.worker, model_info=_json(event.model), started_at=ts)
            if event.queue_s is not None:
                fields["queue_s"] = repr(event.queue_s)
        case Progress():
            fields.update(progress_step=str(event.step), progress_total=str(event.total))
            if event.stage:
                fields["progress_stage"] = event.stage
        case Artifact():
            fields[f"artifact:{event.index}"] = json.dumps(
                {
                    "index": event.index,
                    "uri": event.uri,
                    "mime_type": event.mime_type,
                    "bytes": event.bytes,
                    "sha256": event.sha256,
                    "width": event.width,
                    "height": event.height,
                    "frames": event.frames,
                    "duration_s": event.duration_s,
                }
            )
        case Completed():
            fields.update(
                finish_reason=event.finish_reason.value,
                usage=_json(event.usage),
                timings=_json(event.timings),
            )
            if event.text is not None:
                fields["text"] = event.text
        case Failed():
            fields.update(
                error_code=event.code.value,
                error_message=event.message,
                retryable="1" if event.retryable else "0",
            )
        case Cancelled():
            if event.reason:
                fields["cancel_reason"] = event.reason
        case _:
            pass
    terminal = is_terminal(event)
    if terminal:
        fields["finished_at"] = ts
    return RecordUpdate(status_of(event), terminal, fields, if_absent)


@dataclass(frozen=True)
class Malformed:
    """A message on the events topic that is not a valid event: it goes to the DLQ."""

    letter: DeadLetter


def read_event(
    *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, consumer: str
) -> JobEvent | Malformed:
    """Decode one message from `genloom.events`. Never raises for bad input."""
    event = decode_or_dead_letter(decode_event, expected="JobEvent", describe=describe_event_error, topic=topic,
                                  partition=partition, offset=offset, key=key, value=value, consumer=consumer)
    return Malformed(event) if isinstance(event, DeadLetter) else event
