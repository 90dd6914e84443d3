"""Pure decisions of the preparation processor: a polled message in (`decode`), the messages to
publish for a prepared item out (`plan`). The agent only sends what `plan` returns."""

from __future__ import annotations

import json
from dataclasses import dataclass

from infra.tracing import TRACEPARENT
from infra.kafka.codec import encode
from infra.kafka.signing import SIGNATURE_HEADER, header, signature_headers
from infra.kafka.topics import ACCEPTED_HEADER, DLQ, EVENTS, EVENTS_RAW, jobs_topic
from schemas import AnyRequest
from schemas.enums import EventSource, EventType
from schemas.events import Accepted, Failed, JobEvent, MemoryUse, Prepared

from ..routing.logic import Rejected, route
from ..stages import Answered, Failure, Item

#: header carrying what earlier split-out processors did, for the last one's `prepared` event
PREPARED_HEADER = "genloom-prepared"
#: where prepared jobs go when this processor is the last one
TO_JOBS = "jobs"

#: seq of the streams source's events of a job: `accepted` (when the gateway did not publish it), then
#: one of `prepared`, `failed`, or the answer's events
_ACCEPTED_SEQ, _NEXT_SEQ = 0, 1


@dataclass(frozen=True)
class Polled:
    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Out:
    topic: str
    key: bytes
    value: bytes
    headers: list[tuple[str, bytes]] | None = None
    #: the event `value` encodes, set where it may also go straight to the job's replay log (a cache
    #: hit's answer: the client need not wait for the fan-out to read it back from Kafka)
    event: JobEvent | None = None


@dataclass
class Decoded:
    item: Item
    #: the request as polled: a stage that replaced it means the job is re-signed
    original: AnyRequest


def decode(msg: Polled, *, max_bytes: int, consumer: str, signing_key: bytes | None) -> Decoded | Rejected:
    """Validate one polled message exactly as routing does (size, contract, signature)."""
    decision = route(topic=msg.topic, partition=msg.partition, offset=msg.offset, key=msg.key, value=msg.value,
                     max_bytes=max_bytes, consumer=consumer, headers=msg.headers, signing_key=signing_key)
    if isinstance(decision, Rejected):
        return decision
    kept = [(k, v) for k, v in msg.headers if k in (ACCEPTED_HEADER, PREPARED_HEADER, TRACEPARENT)]
    item = Item(request=decision.request, key=decision.key, headers=[*kept, *decision.headers])
    return Decoded(item, decision.request)


#: what a dead letter of this processor holds instead of the message, when prompts are redacted here
WITHHELD = "(withheld: a request from before the privacy stage may hold personal data)"


def rejected(decision: Rejected, key: bytes | None, *, withhold: bool) -> list[Out]:
    """The dead letter and `failed` event of a message that cannot be prepared. With `withhold` (the
    privacy stage runs here) the letter keeps the message's size but not its content."""
    letter = decision.letter.model_copy(update={"payload": WITHHELD}) if withhold else decision.letter
    out = [Out(DLQ, key or b"", encode(letter))]
    if decision.job_id:
        failed = Failed(job_id=decision.job_id, seq=0, source=EventSource.STREAMS, code=decision.code,
                        message=decision.message)
        out.append(Out(EVENTS, decision.job_id.encode(), encode(failed)))
    return out


def _memories(rows: tuple[dict, ...]) -> list[MemoryUse]:
    """The memories of a report; one an earlier processor sent malformed is left out, not fatal."""
    out = []
    for row in rows:
        try:
            out.append(MemoryUse.model_validate(row))
        except ValueError:
            continue
    return out


@dataclass(frozen=True)
class Report:
    """What this processor's stages did to one job (merged with what earlier processors did)."""

    stages: list[str]
    degraded: list[str]
    redactions: dict[str, int]
    stage_ms: dict[str, float]
    #: memories the enrichment stage put into the prompt, as MemoryUse dicts (JSON-ready for the header)
    memories: tuple[dict, ...] = ()

    def merged_into(self, earlier: bytes | None) -> Report:
        if not earlier:
            return self
        try:
            e = json.loads(earlier)
            redactions = dict(e.get("redactions", {}))
            for k, v in self.redactions.items():
                redactions[k] = redactions.get(k, 0) + v
            return Report([*e.get("stages", []), *self.stages], [*e.get("degraded", []), *self.degraded],
                          redactions, {**e.get("stage_ms", {}), **self.stage_ms},
                          (*e.get("memories", []), *self.memories))
        except (ValueError, AttributeError, TypeError):
            return self

    def header(self) -> bytes:
        return json.dumps({"stages": self.stages, "degraded": self.degraded, "redactions": self.redactions,
                           "stage_ms": self.stage_ms, "memories": list(self.memories)}, separators=(",", ":")).encode()


def plan(d: Decoded, *, stages: list[str], stage_ms: dict[str, float], output: str, signing_key: bytes | None,
         moderated: bool, polled_ts: float | None = None) -> list[Out]:
    """The messages one prepared item leads to, in the order they must be sent. `polled_ts`: when
    its batch was polled (the `prepared` event says it, so where a job's time goes can be told)."""
    item, request = d.item, d.item.request
    job = request.job_id.encode()
    headers = dict(item.headers)
    out: list[Out] = []
    accepted: list[JobEvent] = []
    if ACCEPTED_HEADER not in headers:
        accepted.append(Accepted(job_id=request.job_id, seq=_ACCEPTED_SEQ, source=EventSource.STREAMS,
                                 tenant=request.tenant, client_job_id=request.client_job_id,
                                 modality=request.modality, model=request.model))
        out.append(Out(EVENTS, job, encode(accepted[0])))
    end = item.end
    if isinstance(end, Failure):
        failed = Failed(job_id=request.job_id, seq=_NEXT_SEQ, source=EventSource.STREAMS, code=end.code,
                        message=end.message, retryable=end.retryable)
        return [*out, Out(EVENTS, job, encode(failed))]
    if isinstance(end, Answered):
        events = [e.model_copy(update={"seq": _NEXT_SEQ + i}) for i, e in enumerate(end.events)]
        if moderated:  # the moderation gate releases the answer's text: never straight to Redis
            return [*out, *(Out(EVENTS_RAW, job, encode(e)) for e in events)]
        return [Out(EVENTS, job, encode(e), event=e) for e in [*accepted, *events]]
    report = Report(stages, list(item.degraded), dict(item.redactions), stage_ms,
                    tuple(m.model_dump(mode="json") for m in item.memories)).merged_into(
        headers.get(PREPARED_HEADER))
    signed = header(item.headers)
    if request is not d.original or signed is None:
        sig = signature_headers(signing_key, request)  # changed (or never signed, with no key): sign anew
    else:
        sig = [(SIGNATURE_HEADER, signed)]
    if output == TO_JOBS:
        prepared = Prepared(job_id=request.job_id, seq=_NEXT_SEQ, source=EventSource.STREAMS,
                            stages=report.stages, degraded=report.degraded, redactions=report.redactions,
                            stage_ms={k: round(v, 3) for k, v in report.stage_ms.items()},
                            memories=_memories(report.memories), polled_ts=polled_ts)
        out.append(Out(jobs_topic(request.modality), item.key, encode(request), sig or None))
        out.append(Out(EVENTS, job, encode(prepared)))
    else:  # a split-out stage: the next processor reads this topic, and reports for all of them
        out.append(Out(output, item.key, encode(request),
                       [(ACCEPTED_HEADER, b"1"), (PREPARED_HEADER, report.header()), *sig]))
    return out


def awaiting_open(planned: list[list[Out]]) -> list[str]:
    """Jobs whose answer (`Out.event` set) does not start with their `accepted`: the gateway published
    it, and it may not be in the replay log yet."""
    return [outs[0].event.job_id for outs in planned
            if outs and outs[0].event is not None and outs[0].event.type is not EventType.ACCEPTED]


def replay_writes(planned: list[list[Out]], opened: set[str]) -> list[tuple[JobEvent, bytes]]:
    """The answered jobs' events to write straight to their replay logs, in order (the fan-out applies
    the same events from Kafka later, where they are dropped as duplicates).

    A job's are written only when its log already holds its first event or the write starts with it
    (`opened`: `awaiting_open` jobs whose log has an entry). Otherwise the answer would open the log
    and the gateway's `accepted`, still on its way through the fan-out, would be dropped there as
    coming after the terminal event: such a job is left to the fan-out alone."""
    out: list[tuple[JobEvent, bytes]] = []
    for outs in planned:
        events = [(o.event, o.value) for o in outs if o.event is not None]
        if events and (events[0][0].type is EventType.ACCEPTED or events[0][0].job_id in opened):
            out += events
    return out
