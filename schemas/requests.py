"""`GenerationRequest`: what a producer publishes on `genloom.requests`.

A request is a discriminated union on the top-level ``modality`` field; the modality's own
parameters travel in ``params``. Ranges here are the contract's hard limits; a worker may narrow
them for its model (for example the sizes an image model accepts) and says so with a stable code.
"""

from __future__ import annotations

import hashlib
import re
import time
import uuid
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar, Union

from pydantic import Field, TypeAdapter, field_validator, model_validator

from ._base import Contract
from .enums import AudioFormat, CacheMode, ImageScheduler, Modality, ResponseFormatType, Role, ToolChoice

#: identifiers (job, tenant, user, session) are short, URL- and key-safe strings
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:@-]{0,127}$"
#: the longest single chat message or prompt accepted, in characters (about 32k tokens)
MAX_TEXT_CHARS = 131_072
#: the longest diffusion prompt, in characters (CLIP-style encoders read far fewer tokens)
MAX_PROMPT_CHARS = 4_000
#: the longest speech input, in characters (OpenAI's speech endpoint takes 4096)
MAX_SPEECH_CHARS = 4_096
#: the pixel factor every image and video side must be divisible by (the VAE's 8x downsampling)
SIZE_FACTOR = 8

_ID_RE = re.compile(ID_PATTERN)


def new_job_id() -> str:
    """A fresh job id: sortable by time, unique across processes."""
    return f"job_{time.time_ns():x}{uuid.uuid4().hex[:12]}"


def scoped_job_id(tenant: str, client_job_id: str) -> str:
    """The internal id of the job its tenant calls `client_job_id`: the same for the same pair,
    different for any other tenant (so two tenants' ids never meet). Fixed length, an `ID_PATTERN` id."""
    digest = hashlib.blake2b(f"{tenant}\0{client_job_id}".encode(), digest_size=16).hexdigest()
    return f"j{digest}"


#: what `scoped_user_id` returns: "u:" and 32 hex digits
_SCOPED_USER = re.compile(r"^u:[0-9a-f]{32}$")
#: the longest user id a caller may give (OpenAI's `user` is free text)
MAX_USER_CHARS = 256


def scoped_user_id(tenant: str, user: str) -> str:
    """The id a tenant's end user is known by inside genloom: the same for the same pair, another for
    any other tenant, and no personal data (a caller's user id is often an e-mail address). Idempotent:
    an id that is already scoped is returned as it is. Memory, sessions and erasure key on it."""
    if _SCOPED_USER.match(user):
        return user
    digest = hashlib.blake2b(f"{tenant}\0user\0{user}".encode(), digest_size=16).hexdigest()
    return f"u:{digest}"


def is_scoped_user(user: str) -> bool:
    return bool(_SCOPED_USER.match(user))


#: a tool's (function's) name, as OpenAI accepts it
TOOL_NAME_PATTERN = r"^[A-Za-z0-9_-]{1,64}$"
#: most tools one request may describe
MAX_TOOLS = 128
#: the largest JSON Schema (response format or tool parameters) accepted, in characters of its JSON
MAX_SCHEMA_CHARS = 65_536


class ToolCall(Contract):
    """One call of a tool (a function) the model made."""

    id: str = Field(min_length=1, max_length=128, description="The call's id; a tool message answers it.")
    name: str = Field(pattern=TOOL_NAME_PATTERN, description="The function called.")
    arguments: str = Field(max_length=MAX_TEXT_CHARS, description="The arguments, a JSON object as text.")


class ChatMessage(Contract):
    """One turn of a conversation."""

    role: Role = Field(description="Who wrote the message: system, user, assistant, or a tool's result.")
    content: str = Field(max_length=MAX_TEXT_CHARS, description="The message text.")
    name: str | None = Field(default=None, max_length=64, description="Optional author name.")
    tool_calls: list[ToolCall] = Field(
        default_factory=list, max_length=MAX_TOOLS, description="An assistant turn's tool calls.")
    tool_call_id: str | None = Field(
        default=None, max_length=128, description="The call a `tool` message gives the result of.")

    @model_validator(mode="after")
    def _tool_fields(self) -> ChatMessage:
        if self.tool_calls and self.role is not Role.ASSISTANT:
            raise ValueError("only an assistant message carries tool_calls")
        if (self.role is Role.TOOL) != (self.tool_call_id is not None):
            raise ValueError("a tool message, and only a tool message, names the call it answers in tool_call_id")
        return self


def _schema_size(value: dict[str, Any] | None, what: str) -> None:
    import json

    if value is not None and len(json.dumps(value)) > MAX_SCHEMA_CHARS:
        raise ValueError(f"{what} is larger than {MAX_SCHEMA_CHARS} characters of JSON")


class ResponseFormat(Contract):
    """The shape the output must take; the worker enforces it with grammar-constrained decoding."""

    type: ResponseFormatType = Field(description="json_object: any JSON object; json_schema: JSON valid under"
                                     " `json_schema`.")
    name: str | None = Field(default=None, max_length=64, description="The schema's name (json_schema).")
    json_schema: dict[str, Any] | None = Field(
        default=None, description="The JSON Schema the output must validate against (json_schema only).")
    strict: bool = Field(default=True, description="Whether the schema is followed exactly (genloom always does).")

    @model_validator(mode="after")
    def _schema_for_type(self) -> ResponseFormat:
        if (self.type is ResponseFormatType.JSON_SCHEMA) != (self.json_schema is not None):
            raise ValueError("response_format json_schema, and only it, carries a json_schema")
        _schema_size(self.json_schema, "response_format.json_schema")
        return self


class Tool(Contract):
    """A function the model may call."""

    name: str = Field(pattern=TOOL_NAME_PATTERN, description="The function's name.")
    description: str | None = Field(default=None, max_length=4096, description="What it does, for the model.")
    parameters: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        description="JSON Schema of its arguments (an object).")
    strict: bool = Field(default=True, description="Whether arguments follow the schema exactly (genloom always"
                         " does).")

    @model_validator(mode="after")
    def _size(self) -> Tool:
        _schema_size(self.parameters, f"the parameters of tool {self.name!r}")
        return self


class TextParams(Contract):
    """Chat completion parameters (OpenAI-compatible names and ranges)."""

    messages: list[ChatMessage] = Field(
        min_length=1, max_length=512, description="The conversation so far, oldest first."
    )
    max_tokens: int = Field(default=256, ge=1, le=32_768, description="Most tokens to generate.")
    temperature: float = Field(
        default=1.0, ge=0.0, le=2.0, description="Sampling temperature; 0 means greedy decoding."
    )
    top_p: float = Field(default=1.0, gt=0.0, le=1.0, description="Nucleus sampling mass.")
    stop: list[Annotated[str, Field(min_length=1, max_length=256)]] = Field(
        default_factory=list, max_length=4, description="Up to 4 strings that end generation."
    )
    seed: int | None = Field(
        default=None, ge=0, lt=2**63, description="Same seed and prompt give the same text."
    )
    presence_penalty: float = Field(
        default=0.0, ge=-2.0, le=2.0, description="Subtracted once from each token already in the completion."
    )
    frequency_penalty: float = Field(
        default=0.0, ge=-2.0, le=2.0, description="Subtracted per occurrence of a token already in the completion."
    )
    logit_bias: dict[int, Annotated[float, Field(ge=-100.0, le=100.0)]] = Field(
        default_factory=dict, max_length=300,
        description="Token id -> bias added to its logit (-100 bans it, 100 forces it).",
    )
    logprobs: bool = Field(default=False, description="Report each token's log-probability.")
    top_logprobs: int = Field(
        default=0, ge=0, le=20, description="And this many most likely alternatives per token (needs logprobs)."
    )
    raw: bool = Field(
        default=False,
        description="A raw prompt (`/v1/completions`): one user message whose text the model continues as"
        " it is, without the chat template; memory is not added to it.",
    )
    response_format: ResponseFormat | None = Field(
        default=None, description="Constrain the output to JSON (any object, or valid under a JSON Schema).")
    tools: list[Tool] = Field(default_factory=list, max_length=MAX_TOOLS, description="Functions the model may call.")
    tool_choice: ToolChoice = Field(
        default=ToolChoice.AUTO, description="Whether the model may (auto), must (required, function) or must not"
        " (none) call a tool.")
    tool_name: str | None = Field(
        default=None, pattern=TOOL_NAME_PATTERN, description="The tool the model must call (tool_choice function).")
    parallel_tool_calls: bool = Field(
        default=False, description="Whether one turn may hold several tool calls (up to 4); otherwise at most one.")

    @field_validator("stop", mode="before")
    @classmethod
    def _stop_as_list(cls, value: object) -> object:
        return [value] if isinstance(value, str) else value

    @model_validator(mode="after")
    def _has_user_content(self) -> TextParams:
        if not any(m.content.strip() or m.tool_calls for m in self.messages):
            raise ValueError("messages are all empty: give at least one message with text")
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs=true")
        if any(token < 0 for token in self.logit_bias):
            raise ValueError("logit_bias keys are token ids: integers >= 0")
        if self.raw and (len(self.messages) != 1 or self.messages[0].role is not Role.USER):
            raise ValueError("a raw prompt is one user message: send the text to continue as its content")
        names = [tool.name for tool in self.tools]
        if len(set(names)) != len(names):
            raise ValueError("tools: two tools have the same name")
        if (self.tool_choice is ToolChoice.FUNCTION) != (self.tool_name is not None):
            raise ValueError("tool_name, and only it, goes with tool_choice function")
        if self.tool_name is not None and self.tool_name not in names:
            raise ValueError(f"tool_choice names {self.tool_name!r}, which is not among the tools")
        if self.tool_choice in (ToolChoice.REQUIRED, ToolChoice.FUNCTION) and not self.tools:
            raise ValueError(f"tool_choice {self.tool_choice.value} needs tools")
        if self.response_format is not None and self.tools and self.tool_choice is not ToolChoice.NONE:
            raise ValueError("response_format cannot be combined with tools the model may call")
        return self

    @property
    def calls_tools(self) -> bool:
        """Whether the model may call a tool (there are tools and tool_choice is not none)."""
        return bool(self.tools) and self.tool_choice is not ToolChoice.NONE


class SpeechParams(Contract):
    """Text-to-speech parameters."""

    input: str = Field(min_length=1, max_length=MAX_SPEECH_CHARS, description="Text to speak.")
    voice: str = Field(default="joe", min_length=1, max_length=128, description="Voice name.")
    format: AudioFormat = Field(default=AudioFormat.WAV, description="Audio encoding.")
    speed: float = Field(default=1.0, ge=0.25, le=4.0, description="Speaking rate; 1 is normal.")

    @field_validator("input")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("input is blank: give the text to speak")
        return value


def _check_size(width: int | None, height: int | None) -> None:
    for side, value in (("width", width), ("height", height)):
        if value is not None and value % SIZE_FACTOR:
            raise ValueError(
                f"{side}={value} is not divisible by {SIZE_FACTOR}: "
                f"use {value - value % SIZE_FACTOR} or {value - value % SIZE_FACTOR + SIZE_FACTOR}"
            )


class ImageParams(Contract):
    """Text-to-image parameters. Unset fields take the model's defaults."""

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="What to draw.")
    negative_prompt: str | None = Field(
        default=None, max_length=MAX_PROMPT_CHARS, description="What to steer away from."
    )
    width: int | None = Field(default=None, ge=8, le=4096, description="Pixels, divisible by 8.")
    height: int | None = Field(default=None, ge=8, le=4096, description="Pixels, divisible by 8.")
    steps: int | None = Field(default=None, ge=1, le=500, description="Denoising steps.")
    guidance: float | None = Field(default=None, ge=0.0, le=50.0, description="CFG scale.")
    scheduler: ImageScheduler | None = Field(default=None, description="Diffusion scheduler.")
    n: int = Field(default=1, ge=1, le=8, description="Images to generate for this prompt.")
    seed: int | None = Field(
        default=None, ge=0, lt=2**63, description="Same seed gives the same image."
    )

    @model_validator(mode="after")
    def _size(self) -> ImageParams:
        _check_size(self.width, self.height)
        return self


class VideoParams(Contract):
    """Text-to-video parameters. Unset fields take the model's defaults."""

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS, description="What to film.")
    negative_prompt: str | None = Field(default=None, max_length=MAX_PROMPT_CHARS)
    frames: int | None = Field(default=None, ge=1, le=1024, description="Number of frames.")
    fps: int = Field(default=8, ge=1, le=60, description="Frames per second of the MP4.")
    width: int | None = Field(default=None, ge=8, le=4096, description="Pixels, divisible by 8.")
    height: int | None = Field(default=None, ge=8, le=4096, description="Pixels, divisible by 8.")
    steps: int | None = Field(default=None, ge=1, le=500, description="Denoising steps.")
    guidance: float | None = Field(default=None, ge=0.0, le=50.0, description="CFG scale.")
    seed: int | None = Field(default=None, ge=0, lt=2**63, description="Same seed, same video.")

    @model_validator(mode="after")
    def _size(self) -> VideoParams:
        _check_size(self.width, self.height)
        return self


class TraceContext(Contract):
    """W3C trace context propagated from the caller."""

    traceparent: str = Field(
        pattern=r"^[0-9a-f]{2}-[0-9a-f]{32}-[0-9a-f]{16}-[0-9a-f]{2}$",
        description="W3C traceparent header value.",
    )
    tracestate: str | None = Field(default=None, max_length=512)


#: the events a webhook may subscribe to: the terminal ones and (throttled) progress; token and audio
#: events are far too many to POST one by one
WebhookEvent = Literal["completed", "failed", "cancelled", "progress"]


class WebhookSpec(Contract):
    """Where to POST a job's events, signed with the tenant's key (X-Genloom-Signature)."""

    url: str = Field(
        pattern=r"^https?://", max_length=2048,
        description="Receiver URL; must resolve to public addresses only (unless the deployment allow-lists"
        " a network).",
    )
    events: list[WebhookEvent] = Field(
        default_factory=lambda: ["completed", "failed", "cancelled"],
        min_length=1,
        max_length=4,
        description="Event types to deliver: completed, failed, cancelled, progress (throttled per job).",
    )


#: dimensions of the prompt embedding that travels with a job (all-MiniLM-L6-v2)
EMBEDDING_DIMS = 384


class PromptEmbedding(Contract):
    """The prompt's embedding, set by the embedding stage for the stages after it (cache, enrichment).

    Half precision keeps it compact (768 bytes, 1 KiB of base64 for 384 dimensions); cosine
    similarities computed from it differ from float32 ones by less than 1e-3. A producer never
    sets it: the embedding stage replaces whatever a request carries.
    """

    model: str = Field(max_length=128, description="The embedding model (vectors of different models never compare).")
    dims: int = Field(ge=1, le=4096, description="Number of dimensions.")
    f16: str = Field(
        max_length=11_000, pattern=r"^[A-Za-z0-9+/]*={0,2}$",
        description="Base64 of the L2-normalised vector as little-endian float16, `dims` values.",
    )

    @model_validator(mode="after")
    def _length(self) -> PromptEmbedding:
        if len(self.f16) != 4 * -(-2 * self.dims // 3):
            raise ValueError(f"f16 holds the wrong number of bytes for {self.dims} float16 values")
        return self


class _RequestBase(Contract):
    job_id: str = Field(
        default_factory=new_job_id,
        pattern=ID_PATTERN,
        description="Idempotency key: resubmitting the same id never creates a second job. Scoped by"
        " tenant: two tenants' jobs never share an id. On the topics it is the internal id"
        " `scoped_job_id(tenant, client_job_id)`; a request without `client_job_id` is qualified so on its way.",
    )
    client_job_id: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="The id the tenant gave or was given (what every answer, event and webhook shows it); set"
        " with `job_id` = scoped_job_id(tenant, client_job_id) by the gateway or the routing agent. Leave it"
        " unset when publishing: `job_id` is then the tenant's id.",
    )
    tenant: str = Field(default="default", pattern=ID_PATTERN, description="Owning tenant.")
    user: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="End user, if known: memory and sessions are kept per tenant and user. The gateway and the"
        " preparation processor replace it by `scoped_user_id(tenant, user)`, so no topic after"
        " `genloom.requests` carries the caller's own user id.",
    )
    session: str | None = Field(
        default=None,
        pattern=ID_PATTERN,
        description="Conversation or session; the Kafka key, so a session's jobs stay in order.",
    )
    model: str | None = Field(
        default=None, max_length=256, description="Model name; unset means the modality default."
    )
    priority: int = Field(default=5, ge=0, le=9, description="0 is most urgent, 9 least.")
    deadline: datetime | None = Field(
        default=None, description="After this instant the job fails with deadline_exceeded."
    )
    trace: TraceContext | None = Field(default=None, description="Distributed trace context.")
    webhook: WebhookSpec | None = Field(default=None, description="Event callbacks.")
    metadata: dict[Annotated[str, Field(max_length=64)], Annotated[str, Field(max_length=512)]] = (
        Field(default_factory=dict, max_length=16, description="Caller's opaque labels.")
    )
    submitted_at: float = Field(
        default_factory=time.time, description="Unix time the request was accepted."
    )
    cache: CacheMode = Field(
        default=CacheMode.AUTO,
        description="Semantic cache use: `auto` (greedy requests, or every request of a tenant that opted in),"
        " `reuse` (this request accepts a cached answer although it samples), `off` (never).",
    )
    embedding: PromptEmbedding | None = Field(
        default=None, description="Set by the embedding stage for later stages; a producer leaves it unset.",
    )

    @model_validator(mode="after")
    def _scoped_consistently(self) -> _RequestBase:
        if self.client_job_id is not None and self.job_id != scoped_job_id(self.tenant, self.client_job_id):
            raise ValueError("job_id is not scoped_job_id(tenant, client_job_id): leave client_job_id unset and"
                             " give your id as job_id")
        return self

    @property
    def key(self) -> str:
        """The Kafka partition key: the session when given, else the job."""
        return self.session or self.job_id

    @property
    def shown_id(self) -> str:
        """The id the tenant knows the job by."""
        return self.client_job_id if self.client_job_id is not None else self.job_id


class TextRequest(_RequestBase):
    """A chat completion job."""

    modality: Literal[Modality.TEXT] = Field(description="Always `text`.")
    params: TextParams


class SpeechRequest(_RequestBase):
    """A text-to-speech job."""

    modality: Literal[Modality.SPEECH] = Field(description="Always `speech`.")
    params: SpeechParams


class ImageRequest(_RequestBase):
    """A text-to-image job."""

    modality: Literal[Modality.IMAGE] = Field(description="Always `image`.")
    params: ImageParams


class VideoRequest(_RequestBase):
    """A text-to-video job."""

    modality: Literal[Modality.VIDEO] = Field(description="Always `video`.")
    params: VideoParams


GenerationRequest = Annotated[
    Union[TextRequest, SpeechRequest, ImageRequest, VideoRequest],
    Field(discriminator="modality"),
]
"""Any job, told apart by its top-level ``modality``."""

AnyRequestT = TypeVar("AnyRequestT", TextRequest, SpeechRequest, ImageRequest, VideoRequest)

REQUEST_ADAPTER: TypeAdapter[GenerationRequest] = TypeAdapter(GenerationRequest)


def parse_request(data: bytes | str | dict) -> TextRequest | SpeechRequest | ImageRequest | VideoRequest:
    """Validate a request from JSON bytes, a JSON string or a dict (raises ValidationError)."""
    if isinstance(data, dict):
        return REQUEST_ADAPTER.validate_python(data)
    return REQUEST_ADAPTER.validate_json(data)


def qualified(request: AnyRequestT) -> AnyRequestT:
    """`request` with its ids scoped by its tenant: `job_id` the internal id, `client_job_id` the
    tenant's, `user` the scoped user id (scoped_user_id). Idempotent."""
    update: dict[str, str] = {}
    if request.client_job_id is None:
        update.update(client_job_id=request.job_id, job_id=scoped_job_id(request.tenant, request.job_id))
    if request.user is not None and not is_scoped_user(request.user):
        update["user"] = scoped_user_id(request.tenant, request.user)
    return request.model_copy(update=update) if update else request


def is_valid_id(value: str) -> bool:
    return bool(_ID_RE.match(value))
