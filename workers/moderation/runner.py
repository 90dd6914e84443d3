"""The moderation gate's Kafka loop: `genloom.events.raw` in, `genloom.events` out."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import Hashable
from typing import Any

from infra.blob.base import BlobStore, artifact_key_of
from infra.fanout.handler import RawMessage
from infra.fanout.logic import Malformed
from infra.fanout.writer import ReplayWriter
from infra.kafka.codec import decode_event, encode
from infra.kafka.consume import COMMIT_GAP_S, ConsumeLoop, FlushOnRevoke, Record
from infra.kafka.dlq import describe_event_error, send_dead_letter
from infra.kafka.topics import CONTROL, EVENTS, EVENTS_RAW
from infra.moderation.image import BadImage
from infra.moderation.policy import Decision
from infra.tracing import TRACEPARENT
from schemas.control import CancelJob
from schemas.events import Artifact, JobEvent

from .gate import GateOutput, ModerationGate

GROUP = "genloom-moderation"
#: trace contexts kept for jobs in flight (the oldest go first past it)
_MAX_TRACES = 50_000

log = logging.getLogger(__name__)


class GateRunner:
    """Runs `ModerationGate` on `genloom.events.raw`. `consumer` (in GROUP, subscribed here to `source`)
    and `producer` are built at the edge (`workers.wiring`) and started here.

    What the gate settled (published, or dropped for good) is committed off the loop's path, at most
    every `commit_gap_s` (0: each batch, before the next poll). A commit per batch was a broker round trip
    between one decode step's tokens and the next's; a gate that dies now replays at most about the
    gap's events, which it releases again with the same (source, attempt, seq) and the fan-out drops as
    duplicates. Positions noted are sent before its partitions go to another gate, and at stop.

    With `replay` (an `infra.fanout.writer.ReplayWriter`), what a poll released is also written into the
    jobs' replay logs here, while the broker acknowledges it (its positions settle once both are done),
    and goes out marked so the fan-out passes it by: the client has it a Kafka hop sooner. Only a job's end
    among those records rings genloom.events' doorbell: the consumers of that topic in the streams process
    (the fan-out, which passes them by; the memory writer and the cache filler, which want the end) fetch
    the tokens with it, instead of being woken by every decode step."""

    def __init__(self, gate: ModerationGate, *, consumer: Any, producer: Any, group: str = GROUP,
                 blobs: BlobStore | None = None, video_frames: int = 8, source: str = EVENTS_RAW,
                 commit_gap_s: float = COMMIT_GAP_S, replay: ReplayWriter | None = None) -> None:
        self._gate = gate
        self._replay = replay
        self._blobs = blobs
        self._video_frames = video_frames
        self._consumer = consumer
        self._producer = producer
        #: each gated job's trace context, from its raw events' headers, passed on with what is released
        self._traces: OrderedDict[str, bytes] = OrderedDict()
        self._source = source
        self._loop = ConsumeLoop(consumer, decode=decode_event, expected="JobEvent", group=group,
                                 on_poll=self._pass, dead_letters=producer, describe=describe_event_error,
                                 commit_behind=commit_gap_s > 0, commit_gap_s=commit_gap_s)

    async def start(self) -> None:
        if self._blobs is not None:
            await self._blobs.start()
        await self._producer.start()
        self._consumer.subscribe([self._source], listener=FlushOnRevoke(self._loop))
        await self._consumer.start()

    async def stop(self) -> None:
        self._loop.stop()
        await self._loop.flush()
        await self._consumer.stop()
        await self._producer.stop()
        if self._replay is not None:
            await self._replay.aclose()
        if self._blobs is not None:
            await self._blobs.stop()

    async def run(self, *, burst: bool = False) -> None:
        """Serve until stop() is called; with `burst`, return once the raw events are drained (and what
        they settled is committed)."""
        await self._loop.run(burst=burst)
        await self._loop.flush()

    async def _pass(self, records: list[Record[JobEvent]]) -> None:
        """What one poll brought, from every partition (each in order): one classifier call for its windows, its
        releases sent, one write into the replay logs while their acknowledgements come, then its positions settled."""
        pending: list = []
        released: list = []  # with `replay`: (send future, event, key, value, headers) per record released
        settled: dict[Hashable, list[int]] = {}
        self._gate.prefetch([record.value for record in records])  # one classifier call for the batch's windows
        await self._send(self._gate.expire(), pending, settled, released)  # jobs gone quiet: released or blocked
        for record in records:  # hot loop: one pass, sends pipelined, acks awaited per batch
            event, position = record.value, (record.tp, record.offset)
            if record.headers:
                self._keep_trace(event.job_id, record.headers)
            if self._gate.reviews(event):  # rare (one per image or clip): read and classify it here
                out = self._gate.on_artifact(event, await self._review(event), position)
            else:
                out = self._gate.on_event(event, position)
            await self._send(out, pending, settled, released)
        # the replay logs are written while the broker acknowledges what they get (a client reads each token
        # that much sooner); the positions settle only once both are done, so a gate that dies in between
        # leaves its successor to release and write the same events again (the log drops what it has)
        letters = await self._write_replay(released) if released else []
        if pending:
            await asyncio.gather(*pending)
        for i, bad in letters:  # what Redis would not take, to the DLQ with its record's position, now known
            meta = released[i][0].result()
            await send_dead_letter(self._producer, bad.letter.model_copy(
                update={"partition": meta.partition, "offset": meta.offset}))
        # only what was published or dropped for good: a token held in a window keeps its offset (and
        # every later one of its partition) uncommitted, so a gate that dies loses none of it
        for where, offsets in settled.items():
            await self._loop.done(where, *offsets)

    async def _send(self, out: GateOutput, pending: list, settled: dict[Hashable, list[int]],
                    written: list) -> None:
        """Queue what one gate decision publishes, cancels and deletes; note the positions it settled and,
        with `replay`, what it released (for `_write_replay`)."""
        for uri in out.delete:
            await self._delete(uri)
        for released in out.publish:
            trace = (self._traces.pop if released.type.terminal else self._traces.get)(released.job_id, None)
            headers = [(TRACEPARENT, trace)] if trace else []
            if self._replay is not None:
                headers.append(self._replay.HEADER)
            value, key = encode(released), released.job_id.encode()
            # written here, only a job's end is awaited on genloom.events: nothing else rings it
            sent = await self._producer.send(EVENTS, value, key=key, headers=headers or None,
                                             ring=self._replay is None or released.type.terminal)
            pending.append(sent)
            if self._replay is not None:
                written.append((sent, released, key, value, headers))
        for job_id in out.cancel:
            cancel = CancelJob(job_id=job_id, tenant="moderation", reason="content_filter")
            pending.append(await self._producer.send(CONTROL, encode(cancel), key=job_id.encode()))
        for where, offset in out.settled:
            settled.setdefault(where, []).append(offset)

    async def _write_replay(self, released: list) -> list[tuple[int, Malformed]]:
        """What the batch released into the jobs' replay logs, in order, as the records the fan-out would
        have read, before the broker has acknowledged them (their positions are not known yet: 0 until
        then); what Redis would not take comes back as (index, dead letter), to be sent once acknowledged."""
        return await self._replay.write([(RawMessage(EVENTS, 0, 0, key, value, tuple(headers)), event)
                                         for _, event, key, value, headers in released])

    def _keep_trace(self, job_id: str, headers) -> None:
        value = next((v for k, v in headers if k == TRACEPARENT), None)
        if value is None:
            return
        self._traces[job_id] = value
        self._traces.move_to_end(job_id)
        while len(self._traces) > _MAX_TRACES:  # jobs whose end this gate never saw (taken over elsewhere)
            self._traces.popitem(last=False)

    async def _review(self, event: Artifact) -> Decision:
        """The decision on an artifact: read from the blob store and classified under its tenant's
        policy (the tenant is in its key). A file that cannot be read or decoded is never released."""
        moderator = self._gate.moderator
        key = artifact_key_of(event.uri)
        tenant = key.split("/")[1] if key else None
        if key is None or self._blobs is None:
            return moderator.policies.of(tenant).on_failure("the gate cannot read this artifact's store")
        try:
            data = await self._blobs.get(key)
        except Exception as exc:  # store down or file gone: the tenant's policy decides, and says so
            return moderator.policies.of(tenant).on_failure(f"blob store: {type(exc).__name__}")
        try:
            return await moderator.check_artifact_async(tenant, event.mime_type, data, frames=self._video_frames)
        except BadImage as exc:
            return Decision(False, [], {}, f"the artifact could not be checked ({exc}): withheld")

    async def _delete(self, uri: str) -> None:
        key = artifact_key_of(uri)
        if key is None or self._blobs is None:
            log.error("a blocked artifact could not be deleted (no store for %s): the blob TTL sweep removes it",
                      uri.rsplit("/", 1)[-1])
            return
        try:
            await self._blobs.delete(key)
        except Exception as exc:  # its event is never published: no client has its URL
            log.error("deleting a blocked artifact failed (%s); the blob TTL sweep removes it", type(exc).__name__)
