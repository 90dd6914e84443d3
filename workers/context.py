"""`JobContext`: what a modality handler sees of one job, and the only way it emits events.

It guarantees one terminal event per attempt, stamps timings, and turns a cancel into
`JobCancelled` at the next `checkpoint()`.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

from schemas import AnyRequest
from schemas.enums import ErrorCode, FinishReason
from schemas.events import (
    Artifact,
    AudioChunk,
    Cancelled,
    Completed,
    Failed,
    ModelInfo,
    Progress,
    Started,
    Timings,
    TokenDelta,
    Usage,
)
from infra.kafka.emitter import EventEmitter

from .errors import JobCancelled


class JobContext:
    def __init__(
        self,
        request: AnyRequest,
        emitter: EventEmitter,
        *,
        attempt: int,
        worker_id: str,
        model: ModelInfo,
    ) -> None:
        self.request = request
        self.attempt = attempt
        self._emitter = emitter
        self._worker_id = worker_id
        self._model = model
        self._cancel = asyncio.Event()
        self._cancel_reason: str | None = None
        self.terminal: str | None = None
        self._in_flight: list[asyncio.Future] = []
        self.picked_at = time.time()
        self.started_at: float | None = None
        self.first_output_at: float | None = None

    @property
    def job_id(self) -> str:
        return self.request.job_id

    # -- cancellation -------------------------------------------------------------------------

    def cancel(self, reason: str | None = None) -> None:
        self._cancel_reason = reason
        self._cancel.set()

    @property
    def cancelled(self) -> bool:
        return self._cancel.is_set()

    def checkpoint(self) -> None:
        """Raise JobCancelled if a cancel arrived; call between steps."""
        if self._cancel.is_set():
            raise JobCancelled(self._cancel_reason or "cancelled")

    async def wait_cancelled(self) -> None:
        await self._cancel.wait()

    # -- events --------------------------------------------------------------------------------

    async def _emit(self, event_type, **fields: Any):
        """Send without waiting for the broker: one producer keeps a job's events in order, and
        `_end` waits for every acknowledgement before the terminal event is sent."""
        event = self._emitter.build(event_type, self.job_id, self.attempt, **fields)
        self._in_flight.append(await self._emitter.send(event))
        return event

    async def _end(self, event_type, **fields: Any):
        """The terminal event, acknowledged together with everything sent before it."""
        event = self._emitter.build(event_type, self.job_id, self.attempt, **fields)
        pending, self._in_flight = self._in_flight, []
        pending.append(await self._emitter.send(event))
        await asyncio.gather(*pending)
        return event

    async def started(self) -> None:
        self.started_at = time.time()
        await self._emit(
            Started,
            worker=self._worker_id,
            model=self._model,
            queue_s=max(0.0, self.started_at - self.request.submitted_at),
        )

    def _mark_output(self) -> None:
        if self.first_output_at is None:
            self.first_output_at = time.time()

    async def token(self, text: str, tokens: int) -> None:
        self._mark_output()
        await self._emit(TokenDelta, text=text, tokens=tokens)

    async def progress(self, step: int, total: int, stage: str | None = None) -> None:
        self._mark_output()
        await self._emit(Progress, step=step, total=total, stage=stage)

    async def audio(self, **fields: Any) -> None:
        self._mark_output()
        await self._emit(AudioChunk, **fields)

    async def artifact(self, **fields: Any) -> None:
        self._mark_output()
        await self._emit(Artifact, **fields)

    def timings(self, output_tokens: int | None = None) -> Timings:
        now = time.time()
        started = self.started_at or self.picked_at
        ttft = self.first_output_at - started if self.first_output_at else None
        tpot = None
        if output_tokens and output_tokens > 1 and self.first_output_at:
            tpot = (now - self.first_output_at) / (output_tokens - 1)
        return Timings(
            queue_s=max(0.0, started - self.request.submitted_at),
            ttft_s=ttft,
            tpot_s=tpot,
            generation_s=now - started,
            total_s=max(0.0, now - self.request.submitted_at),
        )

    async def completed(
        self,
        *,
        usage: Usage,
        finish_reason: FinishReason = FinishReason.STOP,
        text: str | None = None,
        timings: Timings | None = None,
    ) -> None:
        if self.terminal:
            return
        self.terminal = "completed"
        await self._end(
            Completed,
            usage=usage,
            finish_reason=finish_reason,
            text=text,
            timings=timings or self.timings(usage.completion_tokens),
        )

    async def failed(self, code: ErrorCode, message: str, *, retryable: bool = False) -> None:
        if self.terminal:
            return
        self.terminal = "failed"
        await self._end(Failed, code=code, message=message, retryable=retryable)

    async def cancelled_event(self, reason: str | None = None) -> None:
        if self.terminal:
            return
        self.terminal = "cancelled"
        await self._end(Cancelled, reason=reason or self._cancel_reason)
