"""Closed sets that appear on the wire."""

from __future__ import annotations

from enum import StrEnum


class Modality(StrEnum):
    """What a job generates; each has its own job topic and worker pool."""

    #: chat completion with a causal language model
    TEXT = "text"
    #: text-to-speech
    SPEECH = "speech"
    #: text-to-image
    IMAGE = "image"
    #: text-to-video, asynchronous and long-running
    VIDEO = "video"


class JobStatus(StrEnum):
    """Lifecycle of a job as the fan-out records it."""

    #: accepted and waiting for a worker
    QUEUED = "queued"
    #: a worker has started generating
    RUNNING = "running"
    #: finished with a result
    COMPLETED = "completed"
    #: ended with an error
    FAILED = "failed"
    #: stopped on request
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class CacheMode(StrEnum):
    """Whether a job may be answered from, and stored in, the semantic cache."""

    #: greedy jobs (temperature 0) use the cache, and every job of a tenant that opted in
    AUTO = "auto"
    #: this job accepts a cached answer even though it samples (and its answer may be reused)
    REUSE = "reuse"
    #: never answered from the cache, never stored in it
    OFF = "off"


class FinishReason(StrEnum):
    """Why a completed job stopped producing output."""

    #: the model ended naturally or hit a stop string
    STOP = "stop"
    #: max_tokens (or the model's context) was reached
    LENGTH = "length"
    #: moderation withheld the rest of the output
    CONTENT_FILTER = "content_filter"
    #: the model called one of the request's tools (the completed event carries the calls)
    TOOL_CALLS = "tool_calls"


class EventType(StrEnum):
    """The ``type`` of a job event; the discriminator of `JobEvent`."""

    #: the job is durable and will end in exactly one terminal event
    ACCEPTED = "accepted"
    #: a worker began generating
    STARTED = "started"
    #: new text of a text job
    TOKEN = "token"
    #: a long operation advanced (a denoising step)
    PROGRESS = "progress"
    #: a piece of speech
    AUDIO = "audio"
    #: a generated file in the blob store
    ARTIFACT = "artifact"
    #: what the moderation gate decided
    MODERATION = "moderation"
    #: what the preparation stages did to the job before it went to a worker
    PREPARED = "prepared"
    #: terminal: the job finished
    COMPLETED = "completed"
    #: terminal: the job ended with an error
    FAILED = "failed"
    #: terminal: the job was stopped on request
    CANCELLED = "cancelled"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL_EVENTS


_TERMINAL_EVENTS = frozenset({EventType.COMPLETED, EventType.FAILED, EventType.CANCELLED})


class EventSource(StrEnum):
    """Which stage emitted an event; the fan-out deduplicates per source and attempt."""

    #: the HTTP edge (accepted, cancelled while queued)
    GATEWAY = "gateway"
    #: the stream processors (validation, routing, cache answers)
    STREAMS = "streams"
    #: a modality worker
    WORKER = "worker"
    #: the moderation gate
    MODERATION = "moderation"
    #: the reconciler, ending a job that can no longer end by itself (job_lost); a source of its own, so
    #: its one event never shares a dedupe sequence with the stream processors' events of that job
    RECONCILER = "reconciler"


class ErrorCode(StrEnum):
    """Stable error codes shared by HTTP errors and `failed` events. Never renamed."""

    #: the body is not valid JSON
    INVALID_JSON = "invalid_json"
    #: the body is JSON but does not match the contract
    INVALID_REQUEST = "invalid_request"
    #: a parameter is outside its allowed range
    INVALID_PARAMETER = "invalid_parameter"
    #: the modality is not one genloom serves
    UNKNOWN_MODALITY = "unknown_modality"
    #: the model name is not served by this deployment
    MODEL_NOT_FOUND = "model_not_found"
    #: the speech voice is not installed
    UNKNOWN_VOICE = "unknown_voice"
    #: the diffusion scheduler is not supported
    UNKNOWN_SCHEDULER = "unknown_scheduler"
    #: the image or video size is not allowed by the model
    INVALID_SIZE = "invalid_size"
    #: the text input is empty
    EMPTY_INPUT = "empty_input"
    #: the output format is not supported
    UNSUPPORTED_FORMAT = "unsupported_format"
    #: prompt plus max_tokens exceed the model's context window
    CONTEXT_LENGTH_EXCEEDED = "context_length_exceeded"
    #: the body or a field is larger than allowed
    PAYLOAD_TOO_LARGE = "payload_too_large"
    #: the Content-Type is not application/json
    UNSUPPORTED_MEDIA_TYPE = "unsupported_media_type"
    #: no API key, or an unknown one
    UNAUTHORIZED = "unauthorized"
    #: the credentials are genuine but do not cover this resource (a browser token of another job)
    FORBIDDEN = "forbidden"
    #: the job or artifact does not exist for this tenant
    NOT_FOUND = "not_found"
    #: the tenant has too many jobs in flight for this modality
    RATE_LIMITED = "rate_limited"
    #: the job_id was reused with a different request
    IDEMPOTENCY_CONFLICT = "idempotency_conflict"
    #: the result is asked for before the job completed (poll its status first)
    NOT_READY = "not_ready"
    #: the Last-Event-ID is older than the replay window
    REPLAY_EXPIRED = "replay_expired"
    #: the deadline passed before the job finished
    DEADLINE_EXCEEDED = "deadline_exceeded"
    #: moderation blocked the prompt or the output
    CONTENT_FILTERED = "content_filtered"
    #: content_filtered as the OpenAI-compatible endpoints name it (OpenAI's code for a prompt its
    #: usage policy refuses), so OpenAI clients recognise the refusal
    CONTENT_POLICY_VIOLATION = "content_policy_violation"
    #: the message on a topic could not be decoded or validated
    MALFORMED_MESSAGE = "malformed_message"
    #: the message is larger than the topic allows
    MESSAGE_TOO_LARGE = "message_too_large"
    #: a job message without a valid gateway signature (GENLOOM_REQUEST_SIGNING_KEY): not run
    INVALID_SIGNATURE = "invalid_signature"
    #: a preparation stage could not redact the job's prompts; it was not run (nothing unredacted went on)
    REDACTION_FAILED = "redaction_failed"
    #: a preparation stage failed on the job for another reason (the message names the stage)
    PREPARATION_FAILED = "preparation_failed"
    #: the model raised while generating
    GENERATION_ERROR = "generation_error"
    #: no worker for the modality is available
    MODALITY_UNAVAILABLE = "modality_unavailable"
    #: Kafka or Redis could not be reached
    BACKEND_UNAVAILABLE = "backend_unavailable"
    #: the job was cancelled (on request, or by another client) before it finished
    CANCELLED = "cancelled"
    #: the client went away before the job finished, so it was cancelled
    CLIENT_DISCONNECTED = "client_disconnected"
    #: the job can no longer end by itself (no event for longer than its modality's limit, or the
    #: bundled broker restarted and lost it): resubmit with the same job_id
    JOB_LOST = "job_lost"
    #: a bug; the message says where to report it
    INTERNAL_ERROR = "internal_error"


class ModerationCategory(StrEnum):
    """What moderation scores text and images for: the OpenAI moderation taxonomy, so a score means
    the same here as on `POST /v1/moderations` of OpenAI."""

    #: insults or demeaning language aimed at someone
    HARASSMENT = "harassment"
    #: harassment that also threatens harm
    HARASSMENT_THREATENING = "harassment/threatening"
    #: hatred of a group for who they are (race, religion, gender, ...)
    HATE = "hate"
    #: hate that also calls for or threatens violence
    HATE_THREATENING = "hate/threatening"
    #: self-harm, suicide or eating disorders
    SELF_HARM = "self-harm"
    #: the speaker intends to harm themself
    SELF_HARM_INTENT = "self-harm/intent"
    #: how to harm oneself
    SELF_HARM_INSTRUCTIONS = "self-harm/instructions"
    #: sexual content
    SEXUAL = "sexual"
    #: sexual content involving minors
    SEXUAL_MINORS = "sexual/minors"
    #: violence
    VIOLENCE = "violence"
    #: graphic depictions of injury or death
    VIOLENCE_GRAPHIC = "violence/graphic"
    #: how to commit crimes (fraud, theft, hacking, drugs)
    ILLICIT = "illicit"
    #: how to commit violent crimes or make weapons
    ILLICIT_VIOLENT = "illicit/violent"


class ImageScheduler(StrEnum):
    """Diffusion schedulers a request may ask for."""

    #: denoising diffusion implicit models
    DDIM = "ddim"
    #: DPM-Solver++ multistep
    DPM_SOLVER = "dpm-solver"


class AudioFormat(StrEnum):
    """Speech output encodings."""

    #: RIFF WAVE, 16-bit mono
    WAV = "wav"
    #: raw signed 16-bit little-endian mono samples
    PCM = "pcm"


class Role(StrEnum):
    """Chat message author."""

    #: instructions for the assistant
    SYSTEM = "system"
    #: the person talking to the assistant
    USER = "user"
    #: an earlier model turn
    ASSISTANT = "assistant"
    #: the result of a tool the assistant called (names the call in `tool_call_id`)
    TOOL = "tool"


class ResponseFormatType(StrEnum):
    """What shape a text job's output must take (OpenAI's `response_format.type`)."""

    #: any JSON object
    JSON_OBJECT = "json_object"
    #: JSON that validates against the given JSON Schema
    JSON_SCHEMA = "json_schema"


class ToolChoice(StrEnum):
    """Whether the model may, must or must not call one of the request's tools."""

    #: the model chooses between a text answer and one tool call
    AUTO = "auto"
    #: no tool call: a text answer (the tools are still described to the model)
    NONE = "none"
    #: exactly one call of any of the tools
    REQUIRED = "required"
    #: exactly one call of the tool named in `tool_name`
    FUNCTION = "function"
