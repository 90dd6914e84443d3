"""Pure fan-out decisions: how a message on the events topic is read (what an event does to the job
record is infra.redis.jobrecord's)."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from infra.kafka.codec import decode_event
from infra.kafka.dlq import dead_letter_for
from schemas.dlq import DeadLetter
from schemas.enums import ErrorCode
from schemas.errors import describe_validation_error
from schemas.events import JobEvent

@dataclass(frozen=True)
class Malformed:
    """A message on the events topic that is not a valid event: it goes to the DLQ."""

    letter: DeadLetter


def read_event(
    *, topic: str, partition: int, offset: int, key: bytes | None, value: bytes | None, consumer: str
) -> JobEvent | Malformed:
    """Decode one message from `genloom.events`. Never raises for bad input."""

    def reject(code: ErrorCode, message: str) -> Malformed:
        return Malformed(
            dead_letter_for(
                topic=topic, partition=partition, offset=offset, key=key, value=value,
                consumer=consumer, code=code, error=message,
            )
        )

    if not value:
        return reject(ErrorCode.MALFORMED_MESSAGE, "empty message: a JobEvent JSON was expected")
    try:
        return decode_event(value)
    except ValidationError as exc:
        code, message = describe_validation_error(exc)
        return reject(code if code == ErrorCode.INVALID_JSON else ErrorCode.MALFORMED_MESSAGE, message)
    except (UnicodeDecodeError, ValueError) as exc:
        return reject(ErrorCode.INVALID_JSON, f"not JSON: {exc}")
