"""Messages in, their effect on Redis out (webhooks owed go to the outbox in the same script call).
The agent around it is a loop."""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter
from dataclasses import dataclass

from infra.metrics import EVENTS_FANNED_OUT, moderation_decided
from infra.tracing import start_span
from infra.kafka.dlq import dead_letter_for
from infra.redis.audit import AuditEntry, ModerationAudit
from infra.redis.jobstore import APPLY_CHUNK, Appended, Dropped, JobStore
from schemas.enums import ErrorCode, EventType
from schemas.events import JobEvent, ModerationVerdict

from .logic import Malformed, read_event, transient

log = logging.getLogger(__name__)

#: waits between Redis retries while it is unreachable or refusing (events are delayed, never dropped)
_REDIS_RETRY_S = (0.1, 0.2, 0.5, 1.0, 2.0, 5.0)

Outcome = Appended | Dropped | Malformed


@dataclass(frozen=True)
class RawMessage:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    #: the message's Kafka headers (a worker's events carry their job's trace context)
    headers: tuple[tuple[str, bytes], ...] = ()


#: the events the fan-out traces (one span each, in the job's trace): a job's start and its end
_TRACED = frozenset({EventType.STARTED, EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED})


class FanoutHandler:
    def __init__(self, store: JobStore, consumer: str, audit: ModerationAudit | None = None, *,
                 chunk: int = APPLY_CHUNK) -> None:
        self._store = store
        self._consumer = consumer
        self._audit = audit
        self._chunk = chunk

    async def handle_batch(self, messages: list[RawMessage]) -> list[Outcome]:
        """Outcomes in message order; malformed messages (and failed script calls) come back as
        dead letters for the agent to publish.

        The batch is applied `chunk` messages at a time, in order, each slice decoded and written
        before the next is read: what a poll brought at once (a decode step of a wide batch) reaches
        its streams slice by slice, the first while the rest are still being applied, instead of all
        of it after the last. A slice that Redis refuses holds the ones after it (`_apply`)."""
        return await self._sliced(messages, self._decoded)

    async def handle_events(self, released: list[tuple[RawMessage, JobEvent]]) -> list[Outcome]:
        """`handle_batch` for messages whose events the caller has already (the moderation gate, which
        built them): each event, with the message it went out as, applied without decoding it again."""
        return await self._sliced(released, lambda part: (
            [m for m, _ in part], [None] * len(part), [(i, e, m.value or b"") for i, (m, e) in enumerate(part)]))

    async def _sliced(self, batch: list, read) -> list[Outcome]:
        outcomes: list[Outcome] = []
        for first in range(0, len(batch), self._chunk):
            outcomes += await self._handle_slice(*read(batch[first:first + self._chunk]))
        return outcomes

    def _decoded(self, messages: list[RawMessage]):
        outcomes: list[Outcome | None] = [None] * len(messages)
        valid: list[tuple[int, JobEvent, bytes]] = []
        for i, m in enumerate(messages):  # hot loop: decode each message once
            item = read_event(
                topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value,
                consumer=self._consumer,
            )
            if isinstance(item, Malformed):
                outcomes[i] = item
            else:
                valid.append((i, item, m.value or b""))
        return messages, outcomes, valid

    async def _handle_slice(self, messages: list[RawMessage], outcomes: list[Outcome | None],
                            valid: list[tuple[int, JobEvent, bytes]]) -> list[Outcome]:
        if valid:
            began = time.time()
            results = await self._apply([(event, payload) for _, event, payload in valid])
            _trace(messages, valid, results, began)
            fanned: Counter[EventType] = Counter()
            for (i, event, payload), result in zip(valid, results):
                if isinstance(result, Exception):
                    outcomes[i] = self._failed(messages[i], result)
                    continue
                outcomes[i] = result
                if isinstance(result, Appended):
                    fanned[event.type] += 1
            for etype, count in fanned.items():  # one update per type, not per event
                EVENTS_FANNED_OUT.labels(etype).inc(count)
            verdicts = [e for (_, e, _), r in zip(valid, results) if isinstance(e, ModerationVerdict)
                        and isinstance(r, Appended)]
            for v in verdicts:
                action = AuditEntry.action_of(v.allowed, v.reason is not None and not v.categories)
                moderation_decided(v.target, action, v.categories)
            if verdicts and self._audit is not None:
                await self._record(verdicts)
        return outcomes  # type: ignore[return-value]

    async def _record(self, verdicts: list[ModerationVerdict]) -> None:
        """The gate's decisions into their tenants' moderation audit (the fan-out knows each job's tenant)."""
        entries = []
        try:
            for v in verdicts:  # rare: only jobs the gate blocked, or released unchecked
                record = await self._store.load(v.job_id)
                if record is None or record.tenant is None:
                    continue
                unchecked = v.reason is not None and not v.categories
                entries.append(AuditEntry(
                    tenant=record.tenant, job_id=record.client_id or v.job_id, stage=v.target,
                    action=AuditEntry.action_of(v.allowed, unchecked), categories=list(v.categories),
                    scores=dict(v.scores), model=v.model, reason=v.reason, content_sha256=v.content_sha256, ts=v.ts))
            await self._audit.record(entries)
        except Exception as exc:  # the verdict itself is in the job's replay log either way
            log.error("fan-out: %d moderation decision(s) not audited (%s)", len(verdicts), type(exc).__name__)

    async def _apply(self, items) -> list[Appended | Dropped | Exception]:
        """Every item's outcome; only errors about the message itself come back as exceptions.

        A transient error (Redis down, OOM, READONLY, BUSY, ...) holds the batch: it is retried
        from the first item that hit one, in order, with backoff, for as long as it takes, so
        nothing is dead-lettered or acknowledged meanwhile. Repeating an applied event is safe (it
        comes back as a duplicate; its first outcome is kept).
        """
        outcomes: list[Appended | Dropped | Exception] = []
        appended: dict[int, Appended] = {}  # applied by an earlier try, past the item that held the batch
        tries = 0
        while len(outcomes) < len(items):
            done = len(outcomes)
            try:
                results = await self._store.apply_batch(items[done:], time.time())
            except Exception as exc:
                if not transient(exc):
                    raise
                results = [exc] * (len(items) - done)
            results = [appended.get(done + i, r) if isinstance(r, Dropped) else r for i, r in enumerate(results)]
            first = next((i for i, r in enumerate(results) if isinstance(r, Exception) and transient(r)), None)
            if first is None:
                outcomes.extend(results)
                break
            outcomes.extend(results[:first])
            appended.update({done + i: r for i, r in enumerate(results) if isinstance(r, Appended)})
            wait = _REDIS_RETRY_S[min(tries, len(_REDIS_RETRY_S) - 1)]
            tries += 1
            log.warning("fan-out: Redis refused (%s); retrying %d event(s) in %.1fs", results[first],
                        len(items) - done - first, wait)
            await asyncio.sleep(wait)
        return outcomes

    def _failed(self, m: RawMessage, exc: Exception) -> Malformed:
        log.error("fan-out script failed for %s[%d]@%d: %s", m.topic, m.partition, m.offset, exc)
        return Malformed(
            dead_letter_for(
                topic=m.topic, partition=m.partition, offset=m.offset, key=m.key, value=m.value,
                consumer=self._consumer, code=ErrorCode.INTERNAL_ERROR, error=f"fan-out script failed: {exc}",
            )
        )


def _trace(messages: list[RawMessage], valid, results, began: float) -> None:
    """A span per traced event recorded, under the trace its message carries (none when not traced)."""
    now = time.time()
    for (i, event, _), result in zip(valid, results):
        if event.type in _TRACED and isinstance(result, Appended) and messages[i].headers:
            span = start_span(f"fanout {event.type}", messages[i].headers, start_s=began,
                              attributes={"genloom.job_id": event.job_id, "genloom.replay_entry": result.event_id})
            span.end(end_time=int(now * 1e9))
