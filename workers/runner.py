"""`JobRunner`: the Kafka side of every modality worker.

It consumes `genloom.jobs.<modality>` in a consumer group, hands each job to the modality's
handler (up to its concurrency), follows cancels on `genloom.control`, publishes events to
`genloom.events.raw` (or straight to `genloom.events` when moderation is off), and commits a job's offset only after its terminal event is acknowledged.
A worker that dies leaves its jobs uncommitted; the group gives them to another worker, which
runs them as a new attempt (a larger `attempt` supersedes the old one downstream).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import OrderedDict

from aiokafka import ConsumerRebalanceListener, TopicPartition
from pydantic import ValidationError

from infra.kafka import clients
from infra.kafka.codec import decode_control, decode_request
from infra.kafka.dlq import dead_letter_for, send_dead_letter
from infra.kafka.emitter import EventEmitter
from infra.kafka.topics import CONTROL, EVENTS_RAW, jobs_topic
from schemas.enums import ErrorCode, EventSource
from schemas.errors import describe_validation_error
from schemas.events import Failed

from .context import JobContext
from .errors import JobCancelled, JobError
from .handler import Handler
from .offsets import OffsetTracker

log = logging.getLogger(__name__)

#: cancels remembered for jobs this worker has not picked up (yet); oldest forgotten first
CANCEL_MEMORY = 100_000


def default_worker_id(modality: str) -> str:
    return f"{modality}-{socket.gethostname()}-{os.getpid()}"


class _Revoked(ConsumerRebalanceListener):
    def __init__(self, runner: JobRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked) -> None:
        await self._runner._drop_partitions(revoked)

    async def on_partitions_assigned(self, assigned) -> None:
        log.info("assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))


class JobRunner:
    def __init__(
        self,
        handler: Handler,
        *,
        bootstrap: str,
        worker_id: str | None = None,
        max_concurrency: int | None = None,
        fetch_max_wait_ms: int = 10,
        session_timeout_ms: int = 6000,
        heartbeat_interval_ms: int = 1000,
        max_message_bytes: int = 8 * 1024 * 1024,
        cancel_lookback_s: float = 3600.0,
        events_topic: str = EVENTS_RAW,
    ) -> None:
        self.handler = handler
        self._bootstrap = bootstrap
        self.worker_id = worker_id or default_worker_id(handler.modality.value)
        self._capacity = max_concurrency or handler.max_concurrency
        self._consumer_kwargs = dict(
            fetch_max_wait_ms=fetch_max_wait_ms,
            session_timeout_ms=session_timeout_ms,
            heartbeat_interval_ms=heartbeat_interval_ms,
            max_message_bytes=max_message_bytes,
        )
        self._max_message_bytes = max_message_bytes
        self._cancel_lookback_s = cancel_lookback_s
        self._events_topic = events_topic
        self._group = f"genloom-workers-{handler.modality.value}"
        self._tracker = OffsetTracker()
        self._inflight: dict[str, tuple[JobContext, asyncio.Task, TopicPartition]] = {}
        self._cancelled: OrderedDict[str, str | None] = OrderedDict()
        self._slots = asyncio.Semaphore(self._capacity)
        self._stopping = asyncio.Event()
        self._producer = None
        self._jobs = None
        self._control = None
        self.emitter: EventEmitter | None = None

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        self._producer = clients.producer(self._bootstrap, client_id=self.worker_id,
                                          max_message_bytes=self._max_message_bytes)
        await clients.start_client(self._producer, self._bootstrap)
        self.emitter = EventEmitter(self._producer, self._events_topic, EventSource.WORKER)
        await self.handler.start()
        self._control = clients.consumer(self._bootstrap, group_id=None,
                                         client_id=f"{self.worker_id}-control",
                                         **self._consumer_kwargs)
        await clients.start_client(self._control, self._bootstrap)
        await self._seek_control()
        self._jobs = clients.consumer(self._bootstrap, group_id=self._group,
                                      client_id=self.worker_id,
                                      max_poll_records=self._capacity,
                                      **self._consumer_kwargs)
        self._jobs.subscribe([jobs_topic(self.handler.modality)], listener=_Revoked(self))
        await clients.start_client(self._jobs, self._bootstrap)

    async def _seek_control(self) -> None:
        partitions = self._control.partitions_for_topic(CONTROL) or {0}
        tps = [TopicPartition(CONTROL, p) for p in sorted(partitions)]
        self._control.assign(tps)
        since_ms = int((time.time() - self._cancel_lookback_s) * 1000)
        found = await self._control.offsets_for_times({tp: since_ms for tp in tps})
        for tp in tps:
            at = found.get(tp)
            if at is None:
                await self._control.seek_to_beginning(tp)
            else:
                self._control.seek(tp, at.offset)

    async def stop(self) -> None:
        self._stopping.set()
        for ctx, task, _ in list(self._inflight.values()):
            task.cancel()
        if self._inflight:
            await asyncio.gather(*(t for _, t, _ in self._inflight.values()), return_exceptions=True)
        for client in (self._jobs, self._control):
            if client is not None:
                await client.stop()
        await self.handler.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def run(self) -> None:
        """Serve until stop() is called."""
        await asyncio.gather(self._consume_jobs(), self._consume_control())

    # -- jobs ----------------------------------------------------------------------------------

    async def _consume_jobs(self) -> None:
        paused = False
        while not self._stopping.is_set():
            free = self._capacity - len(self._inflight)
            assignment = self._jobs.assignment()
            if free <= 0 and not paused and assignment:
                self._jobs.pause(*assignment)  # keep polling (heartbeats, rebalances) while full
                paused = True
            elif free > 0 and paused:
                self._jobs.resume(*self._jobs.paused())
                paused = False
            try:
                batches = await self._jobs.getmany(timeout_ms=100, max_records=max(free, 1))
            except Exception as exc:  # a broker hiccup must not kill the worker
                log.warning("job poll failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for tp, messages in batches.items():
                for msg in messages:  # hot loop: one pass over the polled batch
                    self._tracker.add(tp, msg.offset)
                    self._spawn(tp, msg)

    def _spawn(self, tp: TopicPartition, msg) -> None:
        task = asyncio.create_task(self._process(tp, msg))
        task.add_done_callback(lambda t: t.exception() if not t.cancelled() else None)

    async def _process(self, tp: TopicPartition, msg) -> None:
        """Run one job. Its offset is marked done only once the job ended here (a terminal
        event was acknowledged, or the message was dead-lettered); a job interrupted by a
        shutdown or a rebalance stays uncommitted, so its next owner runs it again."""
        ctx: JobContext | None = None
        ended = False
        try:
            try:
                request = decode_request(msg.value)
            except (ValidationError, ValueError) as exc:
                await self._reject(tp, msg, exc)
                ended = True
                return
            ctx = JobContext(request, self.emitter, attempt=time.time_ns() // 1_000_000,
                             worker_id=self.worker_id, model=self.handler.model_info)
            if request.job_id in self._inflight:  # redelivered while it runs here: that run ends it
                ctx = None
                ended = True
                return
            self._inflight[request.job_id] = (ctx, asyncio.current_task(), tp)
            await self._run_job(ctx)
            ended = True
        except asyncio.CancelledError:
            raise
        except Exception:  # never lose the worker over one job
            log.exception("job handling crashed")
            if ctx is not None:
                await ctx.failed(ErrorCode.INTERNAL_ERROR,
                                 "the worker hit an unexpected error; retry, and report it if it repeats")
                ended = True
        finally:
            if ctx is not None and self._inflight.get(ctx.job_id, (None,))[0] is ctx:
                del self._inflight[ctx.job_id]
            if ended:
                await self._commit(tp, msg.offset)

    async def _run_job(self, ctx: JobContext) -> None:
        request = ctx.request
        if request.job_id in self._cancelled:
            await ctx.cancelled_event(self._cancelled[request.job_id])
            return
        if request.deadline is not None and request.deadline.timestamp() < time.time():
            await ctx.failed(ErrorCode.DEADLINE_EXCEEDED,
                             f"the job's deadline {request.deadline.isoformat()} passed while it was queued")
            return
        try:
            self.handler.check(request)
        except JobError as exc:
            await ctx.failed(exc.code, exc.message)
            return
        async with self._slots:
            try:
                await ctx.started()
                await self.handler.run(ctx)
                if not ctx.terminal:
                    await ctx.failed(ErrorCode.INTERNAL_ERROR, "the handler ended without a result")
            except JobCancelled as exc:
                await ctx.cancelled_event(str(exc) or None)
            except JobError as exc:
                await ctx.failed(exc.code, exc.message, retryable=exc.retryable)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("job %s failed", ctx.job_id)
                await ctx.failed(ErrorCode.GENERATION_ERROR, f"generation failed: {type(exc).__name__}: {exc}",
                                 retryable=True)

    async def _reject(self, tp: TopicPartition, msg, exc: Exception) -> None:
        if isinstance(exc, ValidationError):
            code, message = describe_validation_error(exc)
        else:
            code, message = ErrorCode.MALFORMED_MESSAGE, str(exc)
        letter = dead_letter_for(topic=tp.topic, partition=tp.partition, offset=msg.offset,
                                 key=msg.key, value=msg.value, consumer=self._group,
                                 code=code, error=message)
        await send_dead_letter(self._producer, letter)
        if letter.job_id:
            await self.emitter.publish(Failed(job_id=letter.job_id, seq=0,
                                              attempt=time.time_ns() // 1_000_000,
                                              source=EventSource.WORKER, code=code, message=message))

    async def _commit(self, tp: TopicPartition, offset: int) -> None:
        position = self._tracker.done(tp, offset)
        if position is None or self._jobs is None or tp not in self._jobs.assignment():
            return
        try:
            await self._jobs.commit({tp: position})
        except Exception as exc:  # a lost commit only means a re-run, which is deduplicated
            log.warning("commit of %s@%d failed: %s", tp, position, exc)

    async def _drop_partitions(self, revoked) -> None:
        """Partitions moved to another worker: stop their jobs here without a terminal event."""
        revoked = set(revoked)
        victims = [(jid, task) for jid, (_, task, tp) in self._inflight.items() if tp in revoked]
        for jid, task in victims:
            log.info("job %s moves to another worker", jid)
            task.cancel()
        if victims:
            await asyncio.gather(*(t for _, t in victims), return_exceptions=True)
        for tp in revoked:
            self._tracker.forget(tp)

    # -- control -------------------------------------------------------------------------------

    async def _consume_control(self) -> None:
        while not self._stopping.is_set():
            try:
                batches = await self._control.getmany(timeout_ms=100)
            except Exception as exc:
                log.warning("control poll failed: %s", exc)
                await asyncio.sleep(0.5)
                continue
            for messages in batches.values():
                for msg in messages:
                    try:
                        cancel = decode_control(msg.value)
                    except (ValidationError, ValueError) as exc:
                        log.warning("ignoring malformed control message at %d: %s", msg.offset, exc)
                        continue
                    self._apply_cancel(cancel.job_id, cancel.reason)

    def _apply_cancel(self, job_id: str, reason: str | None) -> None:
        self._cancelled[job_id] = reason
        self._cancelled.move_to_end(job_id)
        while len(self._cancelled) > CANCEL_MEMORY:
            self._cancelled.popitem(last=False)
        running = self._inflight.get(job_id)
        if running is not None:
            running[0].cancel(reason)

    @property
    def in_flight(self) -> int:
        return len(self._inflight)
