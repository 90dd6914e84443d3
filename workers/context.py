"""`JobContext`: what a modality handler sees of one job, and the only way it emits events.

It guarantees one terminal event per attempt, stamps timings, and turns a cancel into
`JobCancelled` at the next `checkpoint()`. A job has ended only once the broker acknowledged its
terminal event: that send is retried (the same event, so a copy that did land is dropped as a
duplicate downstream), and when it still cannot be acknowledged `TerminalNotAcknowledged` tells
the runner the job has not ended here (its offset must not be committed).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Sequence
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
from opentelemetry.trace import SpanKind

from infra.metrics import JobMetrics
from infra.tracing import record_span, start_span, with_traceparent

from .errors import JobCancelled

log = logging.getLogger(__name__)

#: waits before each re-send of a terminal event the broker did not acknowledge (s); after the
#: last one the job counts as not ended (a send itself waits up to the producer's request timeout)
TERMINAL_RETRY_S = (0.5, 1.0, 2.0, 4.0)


class TerminalNotAcknowledged(Exception):
    """The broker never acknowledged the job's terminal event: the job has not ended on this worker."""


class JobContext:
    def __init__(
        self,
        request: AnyRequest,
        emitter: EventEmitter,
        *,
        attempt: int,
        worker_id: str,
        model: ModelInfo,
        terminal_retry_s: Sequence[float] = TERMINAL_RETRY_S,
        headers: Sequence[tuple[str, bytes]] = (),
        started_hold_s: float = 0.0,
    ) -> None:
        self.request = request
        self.attempt = attempt
        self._emitter = emitter
        self._worker_id = worker_id
        self._model = model
        self._terminal_retry_s = tuple(terminal_retry_s)
        self._cancel = asyncio.Event()
        self._cancel_reason: str | None = None
        #: the terminal event the broker acknowledged (None until then)
        self.terminal: str | None = None
        self._in_flight: list[asyncio.Future] = []
        #: `started` goes out with the job's first output when that comes within this long (one wake-up of
        #: every stage downstream instead of two, and none of them during the prompt's prefill), else then
        self._started_hold_s = started_hold_s
        self._held_start: Started | None = None
        self._start_timer: asyncio.TimerHandle | None = None
        self._releasing: asyncio.Task | None = None
        self.picked_at = time.time()
        self.started_at: float | None = None
        self.first_output_at: float | None = None
        self.metrics = JobMetrics(request.modality.value, request.model or model.id, request.submitted_at)
        #: this attempt's span, under the job message's trace (a no-op span when tracing is off)
        self.span = start_span(f"{request.modality.value} job", headers, start_s=self.picked_at,
                               kind=SpanKind.CONSUMER, attributes={
                                   "genloom.job_id": request.job_id, "genloom.modality": request.modality.value,
                                   "genloom.model": request.model or model.id, "genloom.attempt": attempt})
        #: the header this attempt's events carry, so the gate and the fan-out join the trace
        self._trace_headers = with_traceparent((), self.span) or None

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
        await self._release_start()
        event = self._emitter.build(event_type, self.job_id, self.attempt, **fields)
        self._in_flight.append(await self._emitter.send(event, self._trace_headers))
        return event

    async def _release_start(self) -> None:
        """Send the held `started` (once) before any event after it: with the first output or the end,
        or by its timer; an event emitted while the timer's send is under way waits for it."""
        if self._releasing is not None and not self._releasing.done():
            await asyncio.shield(self._releasing)
        if self._held_start is not None:
            await self._send_held()

    async def _send_held(self) -> None:
        event, self._held_start = self._held_start, None
        self._stop_start_timer()
        if event is not None:
            self._in_flight.append(await self._emitter.send(event, self._trace_headers))

    def _start_due(self) -> None:
        self._start_timer = None
        if self._held_start is not None:
            self._releasing = asyncio.ensure_future(self._send_held_logged())

    async def _send_held_logged(self) -> None:
        try:
            await self._send_held()
        except Exception as exc:  # not even queued: lost, as any non-terminal event whose send fails
            log.warning("job %s: its started event could not be sent (%s: %s)", self.job_id, type(exc).__name__, exc)

    def discard_held_start(self) -> None:
        """The attempt stops here without an end (its partition moved, the worker is stopping): a
        `started` still held is never sent, so it cannot reach the replay log after the next owner's."""
        self._held_start = None
        self._stop_start_timer()

    def _stop_start_timer(self) -> None:
        if self._start_timer is not None:
            self._start_timer.cancel()
            self._start_timer = None

    async def _end(self, event_type, **fields: Any):
        """The terminal event, acknowledged together with everything sent before it.

        Only the terminal event is sent again when it is not acknowledged: an earlier event that
        was lost stays lost (its successors are recorded), but the job still ends exactly once.
        """
        await self._release_start()
        event = self._emitter.build(event_type, self.job_id, self.attempt, **fields)
        pending, self._in_flight = self._in_flight, []
        error: BaseException | None = None
        try:
            pending.append(await self._emitter.send(event, self._trace_headers))
        except Exception as exc:  # not even queued (no broker metadata, buffer full): retried below
            error = exc
        outcomes = await asyncio.gather(*pending, return_exceptions=True)
        lost = [o for o in outcomes[:-1 if error is None else None] if isinstance(o, BaseException)]
        if lost:
            log.warning("job %s: %d event(s) before its %s were not acknowledged: %s", self.job_id, len(lost),
                        event.type, lost[0])
        if error is None and isinstance(outcomes[-1], BaseException):
            error = outcomes[-1]
        for wait in self._terminal_retry_s:
            if error is None:
                return event
            log.warning("job %s: %s not acknowledged (%s: %s); sending it again in %.1fs", self.job_id, event.type,
                        type(error).__name__, error, wait)
            await asyncio.sleep(wait)
            try:
                await (await self._emitter.send(event, self._trace_headers))
                error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                error = exc
        if error is not None:
            raise TerminalNotAcknowledged(
                f"job {self.job_id}: the broker did not acknowledge its {event.type} event after"
                f" {len(self._terminal_retry_s) + 1} sends ({type(error).__name__}: {error})"
            ) from error
        return event

    async def started(self) -> None:
        """The attempt began: its `started` is sent now, or, with a hold, together with its first output
        (or its end) when that comes within the hold, else when the hold ends. Its time and numbering
        are taken now either way."""
        self.started_at = time.time()
        self.metrics.started(self.started_at)
        fields = dict(worker=self._worker_id, model=self._model,
                      queue_s=max(0.0, self.started_at - self.request.submitted_at), tenant=self.request.tenant)
        if self._started_hold_s <= 0:
            await self._emit(Started, **fields)
            return
        self._held_start = self._emitter.build(Started, self.job_id, self.attempt, **fields)
        self._start_timer = asyncio.get_running_loop().call_later(self._started_hold_s, self._start_due)

    def _mark_output(self) -> float:
        now = time.time()
        if self.first_output_at is None:
            self.first_output_at = now
            self.metrics.output(now, first=True)
        return now

    async def token(self, text: str, tokens: int, logprobs: list | None = None) -> None:
        self.metrics.tokens(self._mark_output(), tokens)
        if logprobs:
            await self._emit(TokenDelta, text=text, tokens=tokens, logprobs=logprobs)
        else:
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
        tool_calls: list | None = None,
    ) -> None:
        if self.terminal:
            return
        try:
            await self._end(
                Completed,
                usage=usage,
                finish_reason=finish_reason,
                text=text,
                timings=timings or self.timings(usage.completion_tokens),
                **({"tool_calls": tool_calls} if tool_calls else {}),
            )
        finally:
            self._ended(reason=finish_reason.value, prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens)
        self.terminal = "completed"

    def _ended(self, **outcome) -> None:
        """The job's metrics and span, closed once whatever ended it."""
        now = time.time()
        self.metrics.ended(now, **outcome)
        if self.span.is_recording():
            if self.started_at is not None and self.first_output_at is not None:
                record_span("prefill", self.span, self.started_at, self.first_output_at)
                record_span("decode", self.span, self.first_output_at, now)
            self.span.set_attribute("genloom.outcome", outcome.get("code") or outcome.get("reason") or "stop")
            self.span.end(end_time=int(now * 1e9))

    async def failed(self, code: ErrorCode, message: str, *, retryable: bool = False) -> None:
        if self.terminal:
            return
        try:
            await self._end(Failed, code=code, message=message, retryable=retryable)
        finally:
            self._ended(code=code.value)
        self.terminal = "failed"

    async def cancelled_event(self, reason: str | None = None) -> None:
        if self.terminal:
            return
        try:
            await self._end(Cancelled, reason=reason or self._cancel_reason)
        finally:
            self._ended(code="cancelled")
        self.terminal = "cancelled"
