"""Dead-letter helper: park a poison message on `genloom.dlq` with the reason, then move on."""

from __future__ import annotations

import logging

from schemas.dlq import DeadLetter
from schemas.enums import ErrorCode

from .codec import encode, peek_job_id
from .topics import DLQ

log = logging.getLogger(__name__)

#: how much of a poison message is kept in the dead letter (the rest is counted, not stored)
MAX_PAYLOAD_CHARS = 64 * 1024


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


async def send_dead_letter(producer, letter: DeadLetter) -> None:
    """Publish a dead letter, keyed like the original message."""
    log.warning(
        "dead letter from %s[%d]@%d: %s %s", letter.topic, letter.partition, letter.offset,
        letter.code.value, letter.error,
    )
    await producer.send_and_wait(
        DLQ, encode(letter), key=letter.key.encode() if letter.key is not None else None
    )
