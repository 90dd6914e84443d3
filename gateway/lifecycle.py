"""Submit, look up and cancel jobs: Redis for state, Kafka for everything that happens next."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

from aiokafka.errors import KafkaError

from infra.tracing import with_traceparent
from infra.kafka.codec import encode
from infra.kafka.signing import fingerprint, signature_headers
from infra.kafka.topics import ACCEPTED_HEADER, CONTROL, EVENTS, MEMORY, REQUESTS, jobs_topic
from infra.redis.jobrecord import JobRecord
from infra.redis.jobstore import Existing, Full, JobStore
from schemas import AnyRequest
from schemas.api import JobView
from schemas.control import CancelJob
from schemas.enums import ErrorCode, EventSource, JobStatus
from schemas.events import Accepted, Cancelled
from schemas.requests import qualified, scoped_job_id

from .errors import ApiError, not_found

log = logging.getLogger(__name__)

#: the gateway's own events per job: `accepted` is seq 0, a cancel-while-queued is seq 1
_ACCEPTED_SEQ, _CANCELLED_SEQ = 0, 1


class JobService:
    """Jobs as their tenant names them: every method takes and answers the tenant's own job id; the
    record, the topics and the replay log know the job by its internal id, scoped by tenant
    (`schemas.requests.scoped_job_id`), so two tenants may use the same id and neither learns of the other's."""

    def __init__(
        self,
        store: JobStore,
        producer,
        *,
        max_inflight: int,
        retry_after_s: int,
        publish_timeout_s: float,
        route_direct: Callable[[str], bool] = lambda tenant: True,
        signing_key: bytes | None = None,
    ) -> None:
        self.store = store
        self._producer = producer
        self._max_inflight = max_inflight
        self._retry_after = retry_after_s
        self._timeout = publish_timeout_s
        self._route_direct = route_direct
        self._signing_key = signing_key
        self._late: set[asyncio.Task] = set()  # waits for publishes that timed out but may still land

    def destination(self, request: AnyRequest) -> tuple[str, list[tuple[str, bytes]] | None]:
        """The topic an admitted request is published to, and its headers.

        The gateway has validated the request exactly as the preparation processor would, so when
        no preparation stage is on for its tenant (`route_direct(tenant)`) it goes straight to its
        modality's workers. Through `genloom.requests`, a header tells the preparation processor
        that `accepted` is published already.
        With a signing key, the request is signed (`infra.kafka.signing`): workers run nothing else.
        """
        signed = with_traceparent(signature_headers(self._signing_key, request))  # the request's HTTP span
        if self._route_direct(request.tenant):
            return jobs_topic(request.modality), signed or None
        return REQUESTS, [(ACCEPTED_HEADER, b"1"), *signed]

    @staticmethod
    def internal_id(job_id: str, tenant: str) -> str:
        """The internal id of the tenant's job `job_id`."""
        return scoped_job_id(tenant, job_id)

    async def submit(self, request: AnyRequest) -> tuple[JobView, bool]:
        """The job and whether this call created it (False: an idempotent repeat). `request` names the
        job by the tenant's id; it is published qualified (`schemas.requests.qualified`)."""
        request = qualified(request)
        client_id = request.shown_id
        fp = fingerprint(request)
        modality = request.modality.value
        record = JobRecord(
            status=JobStatus.QUEUED, tenant=request.tenant, client_id=client_id, user=request.user,
            modality=request.modality, model=request.model,
            fingerprint=fp, webhook=request.webhook.model_dump_json() if request.webhook else None,
            created_at=time.time(), unacked=True,
        )
        accepted = self._accepted(request)
        outcome = await self.store.admit(request.job_id, record, max_inflight=self._max_inflight, now=record.created_at,
                                         first=accepted)
        if isinstance(outcome, Existing):
            if outcome.fingerprint != fp or outcome.tenant != request.tenant:
                raise ApiError(
                    ErrorCode.IDEMPOTENCY_CONFLICT,
                    f"job_id {client_id!r} was already used for a different request:"
                    " send the same request again, or use a new job_id",
                    param="job_id",
                )
            if outcome.unacked:  # an earlier try was not acknowledged: publish again, unless it ran
                await self._republish(request)
            return await self.get(client_id, request.tenant), False
        if isinstance(outcome, Full):
            raise ApiError(
                ErrorCode.RATE_LIMITED,
                f"tenant has {outcome.held} {modality} jobs in flight, the limit: retry after"
                f" {self._retry_after}s or when one finishes",
                headers={"Retry-After": str(self._retry_after)},
            )
        await self._publish_job(request, accepted)
        return record.view(client_id), True

    async def submit_all(self, requests: list[AnyRequest], reason: str) -> list[tuple[JobView, bool]]:
        """Submit jobs that stand or fall together (the choices of one `n` > 1 completion): when one is
        refused (its tenant's in-flight limit, a conflict, the broker down), the ones this call created
        are cancelled with `reason` before the error is raised, so none of them runs for nobody."""
        submitted: list[tuple[JobView, bool]] = []
        try:
            for request in requests:
                submitted.append(await self.submit(request))
        except BaseException:
            for request, (_, created) in zip(requests, submitted):
                if created:
                    try:
                        await self.cancel(request.job_id, request.tenant, reason)
                    except Exception:  # the error raised below is the one the caller needs
                        log.warning("job %s: not cancelled after its sibling was refused", request.job_id,
                                    exc_info=True)
            raise
        return submitted

    async def _republish(self, request: AnyRequest) -> None:
        """An identical retry of a job whose request was never acknowledged: a job a worker already
        picked up landed after all; any other is published again (a copy that lands twice runs once)."""
        record = await self.store.load(request.job_id)
        if record is not None and record.status != JobStatus.QUEUED:
            await self.store.acknowledged(request.job_id)
            return
        accepted = self._accepted(request)
        await self.store.apply(*accepted, time.time())  # a duplicate (dropped) unless admitted without it
        await self._publish_job(request, accepted)

    @staticmethod
    def _accepted(request: AnyRequest) -> tuple[Accepted, bytes]:
        accepted = Accepted(
            job_id=request.job_id, seq=_ACCEPTED_SEQ, source=EventSource.GATEWAY,
            tenant=request.tenant, client_job_id=request.client_job_id, modality=request.modality,
            model=request.model,
        )
        return accepted, encode(accepted)

    async def _publish_job(self, request: AnyRequest, accepted: tuple[Accepted, bytes]) -> None:
        """Publish the request, then its `accepted` (which its replay log holds already).

        `accepted` goes into the replay log before the request is on any topic (admission applies it with
        the fan-out's own logic, `JobStore.admit(first=...)`, in the same script call), so it is the job's
        first entry whatever acts on the request first: a stream processor that refuses the prompt or
        answers it from the cache, a worker that starts it at once could otherwise get its event applied
        before the `accepted` published after the request, and a terminal event that wins drops it (nothing
        is applied after it). The copy on `genloom.events`, the durable record, is a duplicate to the
        fan-out. (Publishing `accepted` first and the request once the broker acknowledged it would order
        them too, at the cost of an acknowledgement.)

        A publish that fails or times out may still land later (the producer keeps the message
        queued), so the record is kept, marked `unacked`: its owner sees the job, a copy that
        lands runs under its tenant, and the advised retry with the same job_id publishes it again.
        Only once the broker acknowledged the request is the mark cleared. A job whose request never
        lands holds its slot and never starts: the reconciler ends it (`job_lost`).
        """
        topic, headers = self.destination(request)
        payload = accepted[1]

        async def landed_late() -> None:
            log.info("job %s: its request was acknowledged after the submit timed out", request.job_id)
            await self.store.acknowledged(request.job_id)

        try:
            await self._publish((topic, request.key, encode(request), headers), late_ack=landed_late)
        except ApiError:
            log.warning("job %s: its request was not acknowledged; the record is kept for a retry", request.job_id)
            raise
        await self.store.acknowledged(request.job_id)
        try:
            await self._publish((EVENTS, request.job_id, payload, None))
        except ApiError:
            # the job is durable and will run, and its replay log holds `accepted`: only the log's copy is missing
            log.error("job %s is queued but its accepted event could not be published", request.job_id)

    async def get(self, job_id: str, tenant: str) -> JobView:
        return (await self.require(job_id, tenant)).view(job_id)

    async def recent(self, tenant: str, limit: int) -> list[JobView]:
        """The tenant's newest jobs, newest first, each under the id the tenant gave it."""
        return [record.view(record.client_id or job_id) for job_id, record in await self.store.recent_jobs(tenant, limit)
                if record.owned_by(tenant)]

    async def require(self, job_id: str, tenant: str) -> JobRecord:
        """The job's record; 404 when it does not exist or another tenant owns it."""
        record = await self.store.load(self.internal_id(job_id, tenant))
        if record is None or not record.owned_by(tenant):
            raise not_found("job", job_id)
        return record

    async def keep_video_meta(self, job_id: str, tenant: str, meta: dict[str, str | None]) -> None:
        await self.store.keep_video_meta(self.internal_id(job_id, tenant), meta)

    async def cancel(self, job_id: str, tenant: str, reason: str | None = None) -> tuple[JobView, bool]:
        """The job, and whether this call published the cancel (False: terminal or cancelled already)."""
        record = await self.require(job_id, tenant)
        internal = self.internal_id(job_id, tenant)
        status = record.status
        if status.terminal or not await self.store.flag_cancel(internal, tenant):
            return record.view(job_id), False
        messages = [(CONTROL, internal, encode(CancelJob(job_id=internal, tenant=tenant, reason=reason)), None)]
        if status == JobStatus.QUEUED:
            cancelled = Cancelled(
                job_id=internal, seq=_CANCELLED_SEQ, source=EventSource.GATEWAY, reason=reason or "cancelled while queued"
            )
            messages.append((EVENTS, internal, encode(cancelled), None))
        try:
            await self._publish(*messages)
        except ApiError:
            await self.store.clear_cancel(internal)
            raise
        return record.view(job_id), True

    async def publish_memory(self, command, key: str) -> None:
        """A feedback or erasure command for the memory writer (genloom.memory, in order per user)."""
        await self._publish((MEMORY, key, encode(command), None))

    async def _publish(self, *messages: tuple[str, str, bytes, list | None], late_ack=None) -> None:
        """Send all, then wait for every acknowledgement; any failure is one 503.

        The producer keeps what it queued when the wait times out, so it may still be delivered:
        `late_ack()` (if given) is called if every message is acknowledged after all.
        """
        futures: list[asyncio.Future] = []

        async def send_all() -> None:
            for topic, key, value, headers in messages:
                futures.append(await self._producer.send(topic, value, key=key.encode(), headers=headers))
            await asyncio.wait(futures)  # unlike gather, a timeout does not cancel the deliveries
            for future in futures:
                future.result()

        try:
            await asyncio.wait_for(send_all(), self._timeout)
        except (KafkaError, OSError, asyncio.TimeoutError) as exc:
            log.error("publishing to Kafka failed: %s", exc)
            if late_ack is not None and len(futures) == len(messages) and not all(f.done() for f in futures):
                self._on_late_ack(futures, late_ack)
            raise ApiError(
                ErrorCode.BACKEND_UNAVAILABLE,
                f"the event log is unavailable ({type(exc).__name__}): retry with the same job_id",
            ) from None

    def _on_late_ack(self, futures: list[asyncio.Future], late_ack) -> None:
        async def wait() -> None:
            await asyncio.wait(futures)
            if all(not f.cancelled() and f.exception() is None for f in futures):
                await late_ack()

        task = asyncio.ensure_future(wait())
        self._late.add(task)
        task.add_done_callback(self._late_done)

    def _late_done(self, task: asyncio.Task) -> None:
        self._late.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.warning("recording a late acknowledgement failed: %s", task.exception())
