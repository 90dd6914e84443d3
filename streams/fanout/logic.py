"""Pure fan-out decisions: how a message on the events topic is read (what an event does to the job
record is infra.redis.jobrecord's)."""

from __future__ import annotations

from dataclasses import dataclass

from infra.kafka.codec import decode_event
from infra.kafka.dlq import decode_or_dead_letter, describe_event_error
from schemas.dlq import DeadLetter
from schemas.events import JobEvent


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
