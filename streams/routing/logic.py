"""Pure routing decisions: a raw message from `genloom.requests` in, a route or a rejection out."""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from infra.kafka.codec import decode_request, encode
from infra.kafka.dlq import dead_letter_for
from infra.kafka.topics import jobs_topic
from schemas import AnyRequest
from schemas.dlq import DeadLetter
from schemas.enums import ErrorCode
from schemas.errors import describe_validation_error


@dataclass(frozen=True)
class Routed:
    topic: str
    key: bytes
    value: bytes
    request: AnyRequest


@dataclass(frozen=True)
class Rejected:
    letter: DeadLetter
    code: ErrorCode
    message: str

    @property
    def job_id(self) -> str | None:
        return self.letter.job_id


def route(
    *,
    topic: str,
    partition: int,
    offset: int,
    key: bytes | None,
    value: bytes | None,
    max_bytes: int,
    consumer: str,
) -> Routed | Rejected:
    """Decide where one request goes. Never raises for bad input."""

    def reject(code: ErrorCode, message: str) -> Rejected:
        letter = dead_letter_for(
            topic=topic, partition=partition, offset=offset, key=key, value=value,
            consumer=consumer, code=code, error=message,
        )
        return Rejected(letter, code, message)

    if value is None or len(value) == 0:
        return reject(ErrorCode.MALFORMED_MESSAGE, "empty message: a GenerationRequest JSON was expected")
    if len(value) > max_bytes:
        return reject(
            ErrorCode.MESSAGE_TOO_LARGE,
            f"request is {len(value)} bytes, the limit is {max_bytes}: shorten the prompt or messages",
        )
    try:
        request = decode_request(value)
    except ValidationError as exc:
        code, message = describe_validation_error(exc)
        return reject(code, message)
    except (UnicodeDecodeError, ValueError) as exc:
        return reject(ErrorCode.INVALID_JSON, f"not JSON: {exc}")
    return Routed(jobs_topic(request.modality), request.key.encode(), encode(request), request)
