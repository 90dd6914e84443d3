"""Control messages on `genloom.control`."""

from __future__ import annotations

import time
from typing import Annotated, Literal, Union

from pydantic import Field, TypeAdapter

from ._base import Contract


class CancelJob(Contract):
    """Stop a job: a queued one never starts, a running one stops between steps."""

    type: Literal["cancel"] = "cancel"
    job_id: str = Field(max_length=128)
    tenant: str = Field(max_length=128, description="Tenant that asked; must own the job.")
    reason: str | None = Field(default=None, max_length=512)
    ts: float = Field(default_factory=time.time)


ControlMessage = Annotated[Union[CancelJob], Field(discriminator="type")]

CONTROL_ADAPTER: TypeAdapter[ControlMessage] = TypeAdapter(ControlMessage)


def parse_control(data: bytes | str) -> CancelJob:
    return CONTROL_ADAPTER.validate_json(data)
