"""`JobRunner`: the Kafka side of every modality worker.

It consumes `genloom.jobs.<modality>` in a consumer group, hands each job to the modality's
handler (up to its concurrency), follows cancels on `genloom.control`, publishes events to
`genloom.events.raw` (or straight to `genloom.events` when moderation is off), and commits a job's offset only after its terminal event is acknowledged.
It reads up to `read_ahead` jobs beyond its capacity and keeps them in per-tenant queues
(`workers.scheduling.FairQueue`): a free slot goes to the next tenant by weighted round robin, and
within a tenant to the most urgent `priority`, so one tenant's backlog never sits ahead of everyone.
Queued jobs count as pending (their offsets stay uncommitted until they end); a cancelled one ends
at once, and those of a revoked partition are dropped uncommitted.
A worker that dies leaves its jobs uncommitted; the group gives them to another worker, which
runs them as a new attempt (downstream, the attempt that started last supersedes the others).
A job whose terminal event the broker never acknowledged has not ended either: its offset stays
uncommitted and it runs again here as a new attempt after a pause (or on the partition's next owner).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping, Sequence
from typing import Any

from aiokafka import ConsumerRebalanceListener, TopicPartition

from infra.kafka.codec import decode_control, decode_request
from infra.kafka.consume import ConsumeLoop, Record
from infra.kafka.emitter import EventEmitter
from infra.kafka.signing import refusal
from infra.kafka.topics import CONTROL, EVENTS_RAW, jobs_topic
from schemas import AnyRequest
from schemas.control import CancelJob
from schemas.dlq import DeadLetter
from schemas.enums import ErrorCode, EventSource, Modality
from schemas.events import Failed, ModelInfo

from .context import TERMINAL_RETRY_S, JobContext, TerminalNotAcknowledged
from .errors import JobCancelled, JobError
from .handler import Handler
from .scheduling import FairQueue

log = logging.getLogger(__name__)

#: cancels remembered for jobs this worker has not picked up (yet); oldest forgotten first
CANCEL_MEMORY = 100_000
#: the pause before running again a job whose terminal event was not acknowledged (s)
RERUN_AFTER_S = 5.0
#: jobs read beyond the runner's capacity and queued per tenant (WorkerSettings.read_ahead)
READ_AHEAD = 64


def default_worker_id(modality: str) -> str:
    return f"{modality}-{socket.gethostname()}-{os.getpid()}"


def jobs_group(modality: Modality) -> str:
    """The consumer group of a modality's workers."""
    return f"genloom-workers-{modality.value}"


def new_attempt(clock: Callable[[], float] = time.time, after: int = 0) -> int:
    """A fresh attempt number: this worker's clock in ms, and above `after` (its previous one).

    Attempts only have to be distinct: the fan-out takes the attempt whose `started` it recorded
    last as the current one (see infra.redis.jobstore), so a worker whose clock is behind a dead
    one's still supersedes it. The clock keeps numbers of different workers apart and readable.
    """
    return max(int(clock() * 1000), after + 1)


class _Revoked(ConsumerRebalanceListener):
    def __init__(self, runner: JobRunner) -> None:
        self._runner = runner

    async def on_partitions_revoked(self, revoked) -> None:
        await self._runner._drop_partitions(revoked)

    async def on_partitions_assigned(self, assigned) -> None:
        log.info("assigned %s", sorted((tp.topic, tp.partition) for tp in assigned))


class JobRunner:
    """Runs one modality's jobs from Kafka through its handler.

    `producer`, `jobs` (a consumer in the modality's group, not yet subscribed) and `control` (a
    consumer without a group) are built at the edge (`workers.wiring`) and started here, in order:
    the handler loads its model before the jobs consumer joins the group.
    """

    def __init__(
        self,
        handler: Handler,
        *,
        producer: Any,
        jobs: Any,
        control: Any,
        worker_id: str | None = None,
        max_concurrency: int | None = None,
        cancel_lookback_s: float = 3600.0,
        events_topic: str = EVENTS_RAW,
        clock: Callable[[], float] = time.time,
        terminal_retry_s: Sequence[float] = TERMINAL_RETRY_S,
        rerun_after_s: float = RERUN_AFTER_S,
        read_ahead: int = READ_AHEAD,
        tenant_weights: Mapping[str, int] | None = None,
        signing_key: bytes | None = None,
        started_hold_s: float = 0.0,
    ) -> None:
        self.handler = handler
        #: how long a job's `started` may wait for its first output (JobContext)
        self._started_hold_s = started_hold_s
        self.worker_id = worker_id or default_worker_id(handler.modality.value)
        self._capacity = max_concurrency or handler.max_concurrency
        self._cancel_lookback_s = cancel_lookback_s
        self._group = jobs_group(handler.modality)
        self._producer = producer
        self._jobs = jobs
        self._control = control
        self._clock = clock
        self._last_attempt = 0
        self._terminal_retry_s = tuple(terminal_retry_s)
        self._rerun_after_s = rerun_after_s
        self._signing_key = signing_key
        self.emitter = EventEmitter(producer, events_topic, EventSource.WORKER)
        self._inflight: dict[str, tuple[JobContext, asyncio.Task, Hashable]] = {}
        self._tasks: set[asyncio.Task] = set()
        self._cancelled: OrderedDict[str, str | None] = OrderedDict()
        self._slots = asyncio.Semaphore(self._capacity)
        self._read_ahead = read_ahead
        self._queued: FairQueue[Record[AnyRequest]] = FairQueue(tenant_weights)
        self._queued_ids: set[str] = set()  #: job ids read ahead (a cancel looks here first)
        self._job_loop = ConsumeLoop(
            jobs, decode=decode_request, expected="GenerationRequest", group=self._group,
            on_batch=self._spawn, dead_letters=producer, on_rejected=self._reject,
            capacity=self._room,
        )
        self._control_loop = ConsumeLoop(
            control, decode=decode_control, expected="ControlMessage", group=f"{self.worker_id}-control",
            on_batch=self._apply_cancels, commit=False,
        )

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._producer.start()
        await self.handler.start()
        await self._control.start()
        await self._seek_control()
        self._jobs.subscribe([jobs_topic(self.handler.modality)], listener=_Revoked(self))
        await self._jobs.start()

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
        self._job_loop.stop()
        self._control_loop.stop()
        self._queued.remove(lambda record: True)  # left uncommitted: the next owner runs them
        self._queued_ids.clear()
        for task in list(self._tasks):
            task.cancel()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        for client in (self._jobs, self._control):
            await client.stop()
        await self.handler.stop()
        await self._producer.stop()

    async def run(self, *, burst: bool = False) -> None:
        """Serve until stop() is called; with `burst`, run what is queued now and return.

        In burst mode the cancels already on `genloom.control` are read first, then the job topic
        is drained and every job it held ends before this returns.
        """
        if not burst:
            await asyncio.gather(self._job_loop.run(), self._control_loop.run())
            return
        await self._control_loop.run(burst=True)
        control = asyncio.create_task(self._control_loop.run())
        try:
            await self._job_loop.run(burst=True)
            while self._tasks or self._queued:
                self._dispatch()
                await asyncio.gather(*self._tasks, return_exceptions=True)
        finally:
            control.cancel()
            await asyncio.gather(control, return_exceptions=True)

    # -- jobs ----------------------------------------------------------------------------------

    def _room(self) -> int:
        """How many more job messages to read: free slots plus free read-ahead (0 pauses)."""
        return self._capacity + self._read_ahead - len(self._tasks) - len(self._queued)

    async def _spawn(self, tp: Hashable, records: list[Record[AnyRequest]]) -> None:
        for record in records:  # hot loop: one pass over the polled batch
            request = record.value
            if request.job_id in self._cancelled:  # ends at once, without a slot
                self._start(record)
            else:
                self._queued.push(request.tenant, request.priority, record)
                self._queued_ids.add(request.job_id)
        self._dispatch()

    def _dispatch(self) -> None:
        """Hand free slots to queued jobs, fairly across tenants."""
        while len(self._tasks) < self._capacity:
            record = self._queued.pop()
            if record is None:
                return
            self._queued_ids.discard(record.value.job_id)
            self._start(record)

    def _start(self, record: Record[AnyRequest]) -> None:
        task = asyncio.create_task(self._process(record))
        self._tasks.add(task)
        task.add_done_callback(self._task_ended)

    def _task_ended(self, task: asyncio.Task) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("job task crashed", exc_info=task.exception())
        self._dispatch()

    def _new_attempt(self) -> int:
        self._last_attempt = new_attempt(self._clock, self._last_attempt)
        return self._last_attempt

    async def _process(self, record: Record[AnyRequest]) -> None:
        """Run one job. Its offset is marked done only once the job ended here (a terminal
        event was acknowledged); a job interrupted by a shutdown or a rebalance stays
        uncommitted, so its next owner runs it again. A job whose terminal event could not be
        acknowledged runs again here, as a new attempt, until one is (or its partition moves)."""
        request = record.value
        if request.job_id in self._inflight:  # redelivered while it runs here: that run ends it
            await self._job_loop.done(record.tp, record.offset)
            return
        task = asyncio.current_task()
        refused = refusal(self._signing_key, request, record.headers)
        ctx: JobContext | None = None
        try:
            while True:
                ctx = JobContext(request, self.emitter, attempt=self._new_attempt(), worker_id=self.worker_id,
                                 model=self._model_info(), terminal_retry_s=self._terminal_retry_s,
                                 headers=record.headers, started_hold_s=self._started_hold_s)
                self._inflight[request.job_id] = (ctx, task, record.tp)
                if await self._attempt(ctx, refused):
                    break
                log.error("job %s: its terminal event was not acknowledged; its offset stays uncommitted and it"
                          " runs again in %.1fs as a new attempt", ctx.job_id, self._rerun_after_s)
                await asyncio.sleep(self._rerun_after_s)
        finally:
            if ctx is not None:  # ended here, or moved on without an end: nothing of it goes out later
                ctx.discard_held_start()
            if self._inflight.get(request.job_id, (None, None))[1] is task:
                del self._inflight[request.job_id]
        await self._job_loop.done(record.tp, record.offset)

    def _model_info(self) -> ModelInfo:
        """The handler's model info, or one that says it is unknown where reading it fails: a job is never
        lost over how its model is described (it would end with no terminal event)."""
        try:
            return self.handler.model_info
        except Exception:
            log.exception("the handler's model info could not be read; the job goes on without it")
            return ModelInfo(id="unknown", device="unknown", dtype="unknown")

    async def _attempt(self, ctx: JobContext, refused: str | None = None) -> bool:
        """Run the job once; True when it ended (its terminal event acknowledged)."""
        try:
            await self._run_job(ctx, refused)
            return True
        except TerminalNotAcknowledged as exc:
            log.error("%s", exc)
            return False
        except asyncio.CancelledError:
            raise
        except Exception:  # never lose the worker over one job
            log.exception("job handling crashed")
            try:
                await ctx.failed(ErrorCode.INTERNAL_ERROR,
                                 "the worker hit an unexpected error; retry, and report it if it repeats")
            except TerminalNotAcknowledged as exc:
                log.error("%s", exc)
                return False
            return True

    async def _run_job(self, ctx: JobContext, refused: str | None = None) -> None:
        request = ctx.request
        if refused is not None:  # not vouched for by the gateway: its tenant cannot be trusted
            await ctx.failed(ErrorCode.INVALID_SIGNATURE, refused)
            return
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
            except TerminalNotAcknowledged:
                raise
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

    async def _reject(self, letter: DeadLetter) -> None:
        """A job that does not decode fails (when its id can be read) once it is dead-lettered."""
        if letter.job_id:
            await self.emitter.publish(Failed(job_id=letter.job_id, seq=0, attempt=self._new_attempt(),
                                              source=EventSource.WORKER, code=letter.code, message=letter.error))

    async def _drop_partitions(self, revoked) -> None:
        """Partitions moved to another worker: stop their jobs here without a terminal event."""
        revoked = set(revoked)
        dropped = self._queued.remove(lambda record: record.tp in revoked)
        self._queued_ids.difference_update(record.value.job_id for record in dropped)
        if dropped:
            log.info("%d queued jobs move to another worker", len(dropped))
        victims = [(jid, task) for jid, (_, task, tp) in self._inflight.items() if tp in revoked]
        for jid, task in victims:
            log.info("job %s moves to another worker", jid)
            task.cancel()
        if victims:
            await asyncio.gather(*(t for _, t in victims), return_exceptions=True)
        self._job_loop.forget(revoked)

    # -- control -------------------------------------------------------------------------------

    async def _apply_cancels(self, tp: Hashable, records: list[Record[CancelJob]]) -> None:
        for record in records:
            self._apply_cancel(record.value.job_id, record.value.reason)

    def _apply_cancel(self, job_id: str, reason: str | None) -> None:
        self._cancelled[job_id] = reason
        self._cancelled.move_to_end(job_id)
        while len(self._cancelled) > CANCEL_MEMORY:
            self._cancelled.popitem(last=False)
        running = self._inflight.get(job_id)
        if running is not None:
            running[0].cancel(reason)
        if job_id in self._queued_ids:  # a queued job ends at once, as one cancelled before it is read
            self._queued_ids.discard(job_id)
            for record in self._queued.remove(lambda record: record.value.job_id == job_id):
                self._start(record)

    def knows_cancel(self, job_id: str) -> bool:
        """A cancel for `job_id` has been read (it ends the job whenever it runs here)."""
        return job_id in self._cancelled

    @property
    def in_flight(self) -> int:
        return len(self._inflight)

    @property
    def queued(self) -> int:
        """Jobs read ahead and waiting for a slot."""
        return len(self._queued)
