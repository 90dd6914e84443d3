"""The interface between the shared runner and one modality's engine."""

from __future__ import annotations

from typing import Protocol

from schemas import AnyRequest
from schemas.enums import Modality
from schemas.events import ModelInfo

from .context import JobContext


class Handler(Protocol):
    """A modality's engine adapter. The runner owns Kafka; the handler owns the model."""

    modality: Modality
    #: most jobs the runner hands over at once (the engine's batch capacity)
    max_concurrency: int

    @property
    def model_info(self) -> ModelInfo: ...

    async def start(self) -> None:
        """Load the model once and warm it up."""

    async def stop(self) -> None:
        """Release the model and any background loop."""

    def check(self, request: AnyRequest) -> None:
        """Model-specific validation; raise workers.errors.JobError with a stable code."""

    async def run(self, ctx: JobContext) -> None:
        """Generate, emitting through ctx, and end with ctx.completed (or raise).

        Raise JobError for a failure with a code, JobCancelled when ctx.checkpoint() fires.
        """
