"""Dead letters: messages a consumer could not process, kept with the reason."""

from __future__ import annotations

import time

from pydantic import Field

from ._base import Contract
from .enums import ErrorCode


class DeadLetter(Contract):
    """A poison message and why it was rejected, as written to `genloom.dlq`."""

    topic: str = Field(description="Topic the message was read from.")
    partition: int = Field(ge=0)
    offset: int = Field(ge=0)
    key: str | None = Field(default=None, description="Message key, UTF-8 with replacement.")
    consumer: str = Field(description="Consumer group or component that rejected it.")
    code: ErrorCode
    error: str = Field(description="Why it was rejected.")
    job_id: str | None = Field(default=None, description="The job id, when it could be read.")
    payload: str = Field(description="The original value, UTF-8 with replacement, truncated.")
    payload_bytes: int = Field(ge=0, description="Size of the original value.")
    ts: float = Field(default_factory=time.time)
