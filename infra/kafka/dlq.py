"""Dead-letter helper: park a poison message on `genloom.dlq` with the reason, then move on."""

from __future__ import annotations

import logging
from infra.metrics import DEAD_LETTERS
from collections.abc import Callable
from typing import TypeVar

from pydantic import ValidationError

from schemas.dlq import DeadLetter
from schemas.enums import ErrorCode
from schemas.errors import describe_validation_error

from .codec import encode, peek_job_id
from .topics import DLQ

log = logging.getLogger(__name__)

#: how much of a poison message is kept in the dead letter (the rest is counted, not stored)
MAX_PAYLOAD_CHARS = 64 * 1024

T = TypeVar("T")
Describe = Callable[[ValidationError], tuple[ErrorCode, str]]


def dead_letter_for(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    consumer: str,
    code: ErrorCode,
    error: str,
) -> DeadLetter:
    """The dead letter for one rejected message (pure)."""
    raw = value or b""
    return DeadLetter(
        topic=topic,
        partition=partition,
        offset=offset,
        key=key.decode("utf-8", "replace") if key is not None else None,
        consumer=consumer,
        code=code,
        error=error[:4096],
        job_id=peek_job_id(raw),
        payload=raw[:MAX_PAYLOAD_CHARS].decode("utf-8", "replace"),
        payload_bytes=len(raw),
    )


def describe_event_error(exc: ValidationError) -> tuple[ErrorCode, str]:
    """Like `describe_validation_error`, but every problem other than bad JSON is MALFORMED_MESSAGE
    (the request codes, such as UNKNOWN_MODALITY, say nothing about an event or a control message)."""
    code, message = describe_validation_error(exc)
    return (code if code is ErrorCode.INVALID_JSON else ErrorCode.MALFORMED_MESSAGE), message


def decode_or_dead_letter(
    decode: Callable[[bytes], T],
    *,
    expected: str,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    consumer: str,
    describe: Describe = describe_validation_error,
) -> T | DeadLetter:
    """Decode one message with `decode`, or return the dead letter that says why it cannot be.

    Never raises for bad input. `expected` names the contract (for the empty-message error);
    `describe` turns a validation error into its code and message.
    """

    def letter(code: ErrorCode, message: str) -> DeadLetter:
        return dead_letter_for(topic=topic, partition=partition, offset=offset, key=key, value=value,
                               consumer=consumer, code=code, error=message)

    if not value:
        return letter(ErrorCode.MALFORMED_MESSAGE, f"empty message: a {expected} JSON was expected")
    try:
        return decode(value)
    except ValidationError as exc:
        return letter(*describe(exc))
    except (UnicodeDecodeError, ValueError) as exc:
        return letter(ErrorCode.INVALID_JSON, f"not JSON: {exc}")


async def send_dead_letter(producer, letter: DeadLetter) -> None:
    """Publish a dead letter, keyed like the original message."""
    log.warning(
        "dead letter from %s[%d]@%d: %s %s", letter.topic, letter.partition, letter.offset,
        letter.code.value, letter.error,
    )
    DEAD_LETTERS.labels(letter.topic, letter.code.value).inc()
    await producer.send_and_wait(
        DLQ, encode(letter), key=letter.key.encode() if letter.key is not None else None
    )
