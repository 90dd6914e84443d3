"""Long-term memory on the wire: the commands on `genloom.memory` (feedback, erasure) and what the
gateway's user-data endpoints answer (export, erasure reports, consent)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, model_validator

from ._base import Contract

#: the longest correction or preference a caller may send as feedback
MAX_FEEDBACK_CHARS = 4096


class FeedbackIn(Contract):
    """`POST /v1/feedback`: about one of the caller's own jobs."""

    job_id: str = Field(max_length=128, description="The job (as you know it; a chat completion's id names it).")
    rating: Literal[-1, 0, 1] | None = Field(default=None, description="-1 bad, 0 neutral, 1 good.")
    correction: str | None = Field(
        default=None, max_length=MAX_FEEDBACK_CHARS, description="What the right answer or fact is."
    )
    preference: str | None = Field(
        default=None, max_length=MAX_FEEDBACK_CHARS, description="How you want answers, e.g. 'keep answers short'."
    )

    @model_validator(mode="after")
    def _says_something(self) -> FeedbackIn:
        if self.rating is None and not (self.correction or "").strip() and not (self.preference or "").strip():
            raise ValueError("send a rating, a correction or a preference")
        return self


class FeedbackAccepted(Contract):
    id: str = Field(description="The feedback's id.")
    object: Literal["feedback"] = "feedback"
    job_id: str
    status: Literal["accepted"] = "accepted"


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class MemoryFeedback(Contract):
    """Feedback on a job, for the memory writer. Its text is redacted there before anything keeps it."""

    type: Literal["feedback"] = "feedback"
    id: str = Field(default_factory=lambda: _new_id("fb"), max_length=128)
    tenant: str = Field(max_length=128)
    user: str = Field(max_length=128, description="scoped_user_id of the job's user.")
    job_id: str = Field(max_length=128, description="The job's internal id.")
    rating: Literal[-1, 0, 1] | None = None
    correction: str | None = Field(default=None, max_length=MAX_FEEDBACK_CHARS)
    preference: str | None = Field(default=None, max_length=MAX_FEEDBACK_CHARS)
    ts: float = Field(default_factory=time.time)


class EraseUser(Contract):
    """Erase everything kept about a user: memory stores, vector index, sessions, cache, replay logs, artifacts."""

    type: Literal["erase"] = "erase"
    id: str = Field(default_factory=lambda: _new_id("erase"), max_length=128)
    tenant: str = Field(max_length=128)
    user: str = Field(max_length=128, description="scoped_user_id of the user.")
    ts: float = Field(default_factory=time.time)


MemoryCommand = Annotated[Union[MemoryFeedback, EraseUser], Field(discriminator="type")]
MEMORY_COMMAND_ADAPTER: TypeAdapter[MemoryCommand] = TypeAdapter(MemoryCommand)


def parse_memory_command(data: bytes | str) -> MemoryFeedback | EraseUser:
    return MEMORY_COMMAND_ADAPTER.validate_json(data)


class ErasureReport(Contract):
    """What erasing a user removed: counts per store, never content. Erasing again removes nothing."""

    id: str = Field(description="The erasure's id.")
    object: Literal["erasure"] = "erasure"
    user: str = Field(description="The user as you named them.")
    status: Literal["pending", "erased"] = Field(
        description="`erased`: done; `pending`: still running (GET the Location to follow it)."
    )
    counts: dict[str, int] = Field(default_factory=dict, description="Items deleted per store.")
    at: float | None = Field(default=None, description="When it finished.")


class MemoryConsent(Contract):
    """`PUT /v1/users/{id}/memory`: whether genloom remembers this user."""

    enabled: bool = Field(description="false: nothing of the user is stored or retrieved from now on.")


class MemoryStatus(Contract):
    object: Literal["memory"] = "memory"
    user: str
    enabled: bool
    retention_days: float = Field(description="Days a memory is kept before it is deleted.")


class UserData(Contract):
    """`GET /v1/users/{id}/data`: everything genloom keeps about the user (redacted text: personal data never
    reached memory)."""

    object: Literal["user_data"] = "user_data"
    user: str = Field(description="The user as you named them.")
    exported_at: float
    profile: dict[str, Any] | None = None
    interactions: list[dict[str, Any]] = Field(default_factory=list)
    facts: list[dict[str, Any]] = Field(default_factory=list, description="Current and superseded facts.")
    feedback: list[dict[str, Any]] = Field(default_factory=list)
    sessions: list[dict[str, Any]] = Field(default_factory=list, description="Recent turns kept per session.")
    jobs: list[str] = Field(default_factory=list, description="Ids of the user's jobs whose records still exist.")
    erasures: list[dict[str, Any]] = Field(default_factory=list, description="Audit records (counts only).")
