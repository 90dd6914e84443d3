"""Job events: what workers, stream processors and the gateway say about a job.

Every event names its ``job_id`` and carries a ``seq`` that increases by one per event from the
same ``source`` and ``attempt``. Delivery is at-least-once; the fan-out drops an event whose
(source, attempt, seq) it has already recorded, and keeps only the first terminal event of a job.
"""

from __future__ import annotations

import functools
import time
from typing import Annotated, Literal, Union

from pydantic import Field, TypeAdapter

from ._base import Contract
from .enums import ErrorCode, EventSource, EventType, FinishReason, Modality
from .requests import ToolCall


class _EventBase(Contract):
    job_id: str = Field(max_length=128, description="The job this event belongs to.")
    seq: int = Field(ge=0, description="Per (source, attempt) sequence number, from 0.")
    attempt: int = Field(
        default=0, ge=0, description="Which try of the job emitted this (a worker takeover adds 1)."
    )
    source: EventSource = Field(description="The stage that emitted the event.")
    ts: float = Field(default_factory=time.time, description="Unix time of emission.")


class ModelInfo(Contract):
    """Which model served a job, so results can be traced to weights."""

    id: str = Field(description="Model id or path.")
    revision: str | None = Field(default=None, description="Weights revision, if known.")
    device: str = Field(description="Where it ran: cpu, cuda:0, ...")
    dtype: str = Field(description="Weights dtype: float32, float16, bfloat16.")
    random_weights: bool = Field(
        default=False, description="True for the small randomly initialised test pipelines."
    )


class PromptMatch(Contract):
    """How well a prompt matches what a small trained model knows (the captions it was trained on)."""

    known: bool = Field(description="False when the prompt is outside what the model was trained on (no digit,"
                        " two digits, nonsense): the image is still made, but follows no caption it learnt.")
    confidence: float = Field(ge=-1.0, le=1.0, description="Cosine similarity of the prompt's text embedding to"
                              " its nearest training caption.")
    nearest: str = Field(max_length=200, description="That nearest training caption.")


class Usage(Contract):
    """What a job consumed; fields that do not apply to the modality stay null."""

    prompt_tokens: int | None = Field(default=None, ge=0)
    completion_tokens: int | None = Field(default=None, ge=0)
    total_tokens: int | None = Field(default=None, ge=0)
    cached_tokens: int | None = Field(
        default=None, ge=0, description="Of the prompt tokens, how many the text engine's prefix cache supplied"
        " (null where the engine does not say: an engine server).")
    images: int | None = Field(default=None, ge=0, description="Images generated.")
    frames: int | None = Field(default=None, ge=0, description="Video frames generated.")
    audio_seconds: float | None = Field(default=None, ge=0, description="Seconds of speech.")
    steps: int | None = Field(default=None, ge=0, description="Denoising steps run.")


class Timings(Contract):
    """Where a job's time went, in seconds."""

    queue_s: float | None = Field(default=None, ge=0, description="Accepted until started.")
    ttft_s: float | None = Field(
        default=None, ge=0, description="Started until the first output (token, chunk, step)."
    )
    tpot_s: float | None = Field(default=None, ge=0, description="Mean time per output token.")
    generation_s: float | None = Field(default=None, ge=0, description="Started until done.")
    total_s: float | None = Field(default=None, ge=0, description="Accepted until done.")


class CacheInfo(Contract):
    """Marks a job answered from the semantic cache instead of a worker."""

    status: Literal["hit"] = Field(default="hit", description="`hit`: the answer was reused.")
    similarity: float = Field(ge=-1.0, le=1.0, description="Cosine similarity of this prompt to the cached one.")
    source_job: str = Field(max_length=128, description="The job whose answer was reused.")


class MemoryUse(Contract):
    """One memory the enrichment stage put into a job's prompt (redacted text: placeholders, never values)."""

    id: str = Field(max_length=128, description="The memory's id (an interaction's job id or a fact's id).")
    kind: Literal["interaction", "fact", "preference", "session"] = Field(description="What the memory is.")
    text: str = Field(max_length=4096, description="The text put into the prompt.")
    score: float = Field(description="Retrieval score: similarity weighed by recency and importance.")
    similarity: float | None = Field(default=None, ge=-1.0, le=1.0, description="Cosine similarity to the prompt.")
    supersedes: list[str] = Field(
        default_factory=list, description="Ids of older facts this one replaced (they were left out)."
    )


class Accepted(_EventBase):
    """The job is durable on the request topic and will end in exactly one terminal event."""

    type: Literal[EventType.ACCEPTED] = EventType.ACCEPTED
    tenant: str = Field(description="Owning tenant.")
    client_job_id: str | None = Field(
        default=None, max_length=128,
        description="The id the tenant knows the job by (`job_id` is the internal id scoped by tenant).",
    )
    modality: Modality
    model: str | None = None


class Started(_EventBase):
    """A worker began generating."""

    type: Literal[EventType.STARTED] = EventType.STARTED
    worker: str = Field(description="Worker instance id.")
    model: ModelInfo
    queue_s: float | None = Field(default=None, ge=0, description="Time spent queued.")
    cache: CacheInfo | None = Field(default=None, description="Set when the answer comes from the semantic cache.")
    tenant: str | None = Field(
        default=None, max_length=128,
        description="The owning tenant, so that the moderation gate checks the output under the tenant's policy.",
    )


class TopLogprob(Contract):
    """One likely token at a step and its log-probability."""

    token: str = Field(description="The token's text.")
    logprob: float = Field(le=0.0)
    bytes: list[int] | None = Field(default=None, description="UTF-8 bytes of the token's text.")


class TokenLogprob(TopLogprob):
    """The chosen token of a step, its log-probability and the most likely alternatives'."""

    top_logprobs: list[TopLogprob] = Field(default_factory=list, max_length=20)


class TokenDelta(_EventBase):
    """New text; deltas of one decode step are coalesced into one event."""

    type: Literal[EventType.TOKEN] = EventType.TOKEN
    text: str = Field(description="Text to append; never splits a character.")
    tokens: int = Field(ge=0, description="Tokens this delta covers.")
    logprobs: list[TokenLogprob] | None = Field(
        default=None, description="Per token of this delta, when the request asked for logprobs."
    )


class Progress(_EventBase):
    """A long operation advanced (one event per denoising step)."""

    type: Literal[EventType.PROGRESS] = EventType.PROGRESS
    step: int = Field(ge=0, description="Steps done.")
    total: int = Field(ge=1, description="Steps in all.")
    stage: str | None = Field(default=None, max_length=64, description="e.g. denoise, encode.")


class AudioChunk(_EventBase):
    """A piece of speech, streamed sentence by sentence."""

    type: Literal[EventType.AUDIO] = EventType.AUDIO
    index: int = Field(ge=0, description="Chunk number, from 0.")
    data: str = Field(description="Base64 of raw s16le mono PCM.")
    sample_rate: int = Field(gt=0)
    duration_s: float = Field(ge=0)
    text: str | None = Field(default=None, description="The sentence this chunk speaks.")


class Artifact(_EventBase):
    """A generated file, stored in the blob store."""

    type: Literal[EventType.ARTIFACT] = EventType.ARTIFACT
    index: int = Field(default=0, ge=0, description="Which output of the job (image n).")
    uri: str = Field(description="Where the artifact is stored (blob store URI).")
    mime_type: str
    bytes: int = Field(ge=0)
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    duration_s: float | None = None
    prompt_match: PromptMatch | None = Field(
        default=None, description="For a model that can tell: how well the prompt matches what it was trained on.")


class ModerationVerdict(_EventBase):
    """What the moderation gate decided about the prompt or a window of output."""

    type: Literal[EventType.MODERATION] = EventType.MODERATION
    target: Literal["prompt", "output", "artifact"]
    allowed: bool
    categories: list[str] = Field(default_factory=list, description="Categories that fired.")
    score: float = Field(ge=0.0, le=1.0, description="Highest category score.")
    model: str = Field(description="Classifier that decided.")
    scores: dict[str, float] = Field(
        default_factory=dict, description="Score of every category checked (ModerationCategory values), 0 to 1."
    )
    reason: str | None = Field(
        default=None, max_length=512,
        description="Why, when no category decided: the tenant's block list, or the classifier was down and the"
        " tenant's policy failed open or closed.",
    )
    content_sha256: str | None = Field(
        default=None, pattern=r"^[0-9a-f]{64}$",
        description="SHA-256 of the blocked content (the checked text or the file), for the audit; never the content.",
    )


class Prepared(_EventBase):
    """What the preparation stages did to a job on its way from `genloom.requests` to a worker.

    It names no prompt content: redactions are counted per entity type, never shown.
    """

    type: Literal[EventType.PREPARED] = EventType.PREPARED
    stages: list[str] = Field(description="Stages that ran on the job, in order.")
    degraded: list[str] = Field(
        default_factory=list, description="What was skipped because a dependency was down (e.g. cache, restore)."
    )
    redactions: dict[str, int] = Field(
        default_factory=dict, description="Values replaced by placeholders, per entity type (PERSON, EMAIL, ...)."
    )
    stage_ms: dict[str, float] = Field(
        default_factory=dict, description="Milliseconds each stage spent on the job's batch."
    )
    memories: list[MemoryUse] = Field(
        default_factory=list, description="Memories of the user the enrichment stage put into the prompt."
    )
    polled_ts: float | None = Field(
        default=None, description="Unix time the processor that published this event polled the job's batch."
    )


class Completed(_EventBase):
    """Terminal: the job finished."""

    type: Literal[EventType.COMPLETED] = EventType.COMPLETED
    finish_reason: FinishReason = FinishReason.STOP
    usage: Usage = Field(default_factory=Usage)
    timings: Timings = Field(default_factory=Timings)
    text: str | None = Field(default=None, description="Full output text of a text job.")
    tool_calls: list[ToolCall] | None = Field(
        default=None, description="The tool calls a text job's model made (finish_reason tool_calls).")
    cache: CacheInfo | None = Field(default=None, description="Set when the answer comes from the semantic cache.")


class Failed(_EventBase):
    """Terminal: the job ended with an error."""

    type: Literal[EventType.FAILED] = EventType.FAILED
    code: ErrorCode
    message: str = Field(description="What went wrong and what to do about it.")
    retryable: bool = Field(default=False, description="Resubmitting may succeed.")


class Cancelled(_EventBase):
    """Terminal: the job was stopped on request."""

    type: Literal[EventType.CANCELLED] = EventType.CANCELLED
    reason: str | None = Field(default=None, max_length=512)


JobEvent = Annotated[
    Union[
        Accepted,
        Started,
        TokenDelta,
        Progress,
        AudioChunk,
        Artifact,
        ModerationVerdict,
        Prepared,
        Completed,
        Failed,
        Cancelled,
    ],
    Field(discriminator="type"),
]
"""Any job event, told apart by ``type``."""

TERMINAL_TYPES = frozenset(t for t in EventType if t.terminal)

EVENT_ADAPTER: TypeAdapter[JobEvent] = TypeAdapter(JobEvent)


def parse_event(data: bytes | str | dict) -> JobEvent:
    """Validate an event from JSON bytes, a JSON string or a dict (raises ValidationError)."""
    if isinstance(data, dict):
        return EVENT_ADAPTER.validate_python(data)
    return EVENT_ADAPTER.validate_json(data)


def may_be(raw: bytes | None, types: frozenset[EventType]) -> bool:
    """Whether an event's JSON may be of one of `types`, without parsing it: its bytes hold one of
    their names as a JSON string. A consumer of `genloom.events` that reads a few types skips the
    rest (mostly tokens) this way. A name inside a string value is escaped (`\\"completed\\"`), so
    only a value that is exactly a name lets an event of another type through, to be parsed and
    then skipped: never the other way round."""
    return bool(raw) and any(needle in raw for needle in _names(types))


@functools.cache
def _names(types: frozenset[EventType]) -> tuple[bytes, ...]:
    """The JSON strings of `types`' names (once per set: `may_be` runs on every event of a topic)."""
    return tuple(b'"%s"' % t.value.encode() for t in types)


def is_terminal(event: JobEvent) -> bool:
    return event.type in TERMINAL_TYPES


def as_shown_to(data: bytes, job_id: str, client_job_id: str | None) -> bytes:
    """An event's JSON as its tenant sees it: the internal `job_id` replaced by the tenant's id
    (wherever it occurs: the field and any message naming the job). Both are `ID_PATTERN` ids, so
    the JSON stays valid without escaping, and the internal id is long and random enough to occur
    nowhere else."""
    if not client_job_id or client_job_id == job_id:
        return data
    return data.replace(job_id.encode(), client_job_id.encode())
