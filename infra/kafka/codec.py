"""The one JSON codec for every topic, shared by aiokafka clients and faust agents. No pickle."""

from __future__ import annotations

import json

from pydantic import BaseModel, ValidationError

from schemas.control import CancelJob, parse_control
from schemas.events import JobEvent, parse_event
from schemas.requests import is_valid_id, parse_request

__all__ = [
    "DecodeError",
    "encode",
    "decode_request",
    "decode_event",
    "decode_control",
    "peek_job_id",
    "ValidationError",
]


class DecodeError(ValueError):
    """A message value that is not JSON, or not the expected contract."""


def encode(message: BaseModel) -> bytes:
    """A contract as compact UTF-8 JSON."""
    return message.model_dump_json(exclude_none=False).encode()


def decode_request(value: bytes):
    """A `GenerationRequest` (raises pydantic.ValidationError)."""
    return parse_request(value)


def decode_event(value: bytes) -> JobEvent:
    return parse_event(value)


def decode_control(value: bytes) -> CancelJob:
    return parse_control(value)


def peek_job_id(value: bytes | None) -> str | None:
    """The job id of a message that failed validation, when one can be read at all."""
    if not value:
        return None
    try:
        data = json.loads(value)
    except (ValueError, UnicodeDecodeError):
        return None
    job_id = data.get("job_id") if isinstance(data, dict) else None
    if isinstance(job_id, str) and 0 < len(job_id) <= 128:
        return job_id if is_valid_id(job_id) else None
    return None
