"""Pure routing decisions: a raw message from `genloom.requests` in, a route or a rejection out."""

from __future__ import annotations

from dataclasses import dataclass

from infra.kafka.codec import decode_request, encode
from infra.kafka.dlq import dead_letter_for, decode_or_dead_letter
from infra.kafka.signing import SIGNATURE_HEADER, header, refusal, signature_headers
from infra.kafka.topics import jobs_topic
from schemas import AnyRequest
from schemas.dlq import DeadLetter
from schemas.enums import ErrorCode
from schemas.requests import qualified


@dataclass(frozen=True)
class Routed:
    topic: str
    key: bytes
    value: bytes
    request: AnyRequest
    #: headers the job message carries on: the request's signature, when it has one
    headers: list[tuple[str, bytes]]


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
    headers: list[tuple[str, bytes]] | None = None,
    signing_key: bytes | None = None,
) -> Routed | Rejected:
    """Decide where one request goes. Never raises for bad input.

    With `signing_key`, only a request signed with it is forwarded (see `infra.kafka.signing`);
    its signature goes on with it, so the workers check it again.

    A request without `client_job_id` (a producer's own, named by the tenant's id) is qualified as
    the gateway does (`schemas.requests.qualified`), so its tenant finds it through the gateway by
    that id; a signed one is signed again as qualified, the original signature having been checked.
    """

    origin = dict(topic=topic, partition=partition, offset=offset, key=key, value=value, consumer=consumer)
    if value and len(value) > max_bytes:
        message = f"request is {len(value)} bytes, the limit is {max_bytes}: shorten the prompt or messages"
        return Rejected(dead_letter_for(code=ErrorCode.MESSAGE_TOO_LARGE, error=message, **origin),
                        ErrorCode.MESSAGE_TOO_LARGE, message)
    request = decode_or_dead_letter(decode_request, expected="GenerationRequest", **origin)
    if isinstance(request, DeadLetter):
        return Rejected(request, request.code, request.error)
    refused = refusal(signing_key, request, headers)
    if refused is not None:
        letter = dead_letter_for(code=ErrorCode.INVALID_SIGNATURE, error=refused, **origin)
        return Rejected(letter, ErrorCode.INVALID_SIGNATURE, refused)
    signature = header(headers)
    forwarded = [(SIGNATURE_HEADER, signature)] if signature is not None else []
    scoped = qualified(request)
    if scoped is not request and signing_key:
        forwarded = signature_headers(signing_key, scoped)
    return Routed(jobs_topic(scoped.modality), scoped.key.encode(), encode(scoped), scoped, forwarded)
