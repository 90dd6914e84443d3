"""The OpenAI-compatible HTTP contracts the gateway speaks (chat completions, models).

Requests accept OpenAI's names; a parameter genloom does not implement is rejected by name rather
than silently ignored.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._base import Contract
from .enums import FinishReason
from .events import TokenLogprob


class _Lenient(BaseModel):
    """OpenAI bodies: unknown fields are collected and rejected with their names by the gateway."""

    model_config = ConfigDict(frozen=True, extra="allow")

    def unsupported(self) -> list[str]:
        return sorted((self.model_extra or {}).keys())


class TextPart(Contract):
    type: Literal["text"]
    text: str


class FunctionCall(Contract):
    name: str = Field(description="The function called.")
    arguments: str = Field(description="Its arguments: a JSON object, as text.")


class ToolCallIn(_Lenient):
    """An earlier assistant turn's tool call."""

    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChatMessageIn(_Lenient):
    role: Literal["system", "developer", "user", "assistant", "tool"] = Field(
        description="`developer` is treated as `system`; `tool` carries a tool call's result."
    )
    content: Union[str, list[TextPart], None] = Field(default=None, description="Text, or a list of text parts.")
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = Field(default=None, description="An assistant turn's tool calls.")
    tool_call_id: str | None = Field(default=None, description="The call a tool message answers.")

    def text(self) -> str:
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(Contract):
    include_usage: bool = Field(default=False, description="Send a last chunk with usage.")


class JsonSchemaFormat(_Lenient):
    name: str = Field(description="The schema's name.")
    description: str | None = None
    schema_: dict[str, Any] | None = Field(default=None, alias="schema", description="The JSON Schema.")
    strict: bool | None = Field(default=None, description="genloom always follows the schema exactly.")


class ResponseFormatIn(_Lenient):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaFormat | None = None


class FunctionDef(_Lenient):
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = Field(default=None, description="JSON Schema of the arguments.")
    strict: bool | None = None


class ToolDef(_Lenient):
    type: Literal["function"]
    function: FunctionDef


class NamedFunction(_Lenient):
    name: str


class NamedToolChoice(_Lenient):
    type: Literal["function"]
    function: NamedFunction


class ChatCompletionRequest(_Lenient):
    model: str = Field(description="Served model name (GET /v1/models lists them).")
    messages: list[ChatMessageIn] = Field(description="The conversation, oldest first.")
    max_tokens: int | None = Field(default=None, ge=1, description="Most tokens to generate.")
    max_completion_tokens: int | None = Field(default=None, ge=1, description="Alias of max_tokens.")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: Union[str, list[str], None] = None
    seed: int | None = Field(default=None, ge=0)
    n: int | None = Field(default=None, ge=1, description="Choices to generate (1 to 8), each a text job of its"
                          " own; with a seed, choice i uses seed + i.")
    presence_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(default=None, ge=-2.0, le=2.0)
    logit_bias: dict[str, float] | None = Field(default=None, description="Token id (as a string) -> bias in"
                                                " [-100, 100].")
    logprobs: bool | None = None
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None
    response_format: ResponseFormatIn | None = Field(
        default=None, description="json_object or json_schema: the output is constrained to it by a grammar.")
    tools: list[ToolDef] | None = Field(default=None, description="Functions the model may call.")
    tool_choice: Union[Literal["auto", "none", "required"], NamedToolChoice, None] = None
    parallel_tool_calls: bool | None = Field(default=None, description="true: the model may make up to 4 calls in"
                                             " one turn; omitted or false: at most one.")

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        return [value] if isinstance(value, str) else value


class ToolCallOut(Contract):
    id: str
    type: Literal["function"] = "function"
    function: FunctionCall


class ChoiceMessage(Contract):
    role: Literal["assistant"] = "assistant"
    content: str | None
    tool_calls: list[ToolCallOut] | None = None


class ChoiceLogprobs(Contract):
    content: list[TokenLogprob] | None = Field(description="Per generated token, when logprobs was asked.")


class Choice(Contract):
    index: int = 0
    message: ChoiceMessage
    finish_reason: FinishReason | None
    logprobs: ChoiceLogprobs | None = None


class PromptTokensDetails(Contract):
    cached_tokens: int = Field(ge=0, description="Of the prompt tokens, how many the engine's prefix cache supplied.")


class CompletionUsage(Contract):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails | None = None


class ChatCompletion(Contract):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


class ChunkToolCall(Contract):
    index: int = 0
    id: str | None = None
    type: Literal["function"] | None = None
    function: FunctionCall


class ChunkDelta(Contract):
    role: Literal["assistant"] | None = None
    content: str | None = None
    tool_calls: list[ChunkToolCall] | None = None


class ChunkChoice(Contract):
    index: int = 0
    delta: ChunkDelta
    finish_reason: FinishReason | None = None
    logprobs: ChoiceLogprobs | None = None


class ChatCompletionChunk(Contract):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


# -- legacy completions -------------------------------------------------------------------------------


class CompletionRequest(_Lenient):
    """`POST /v1/completions`: a raw prompt continued by the model, without the chat template."""

    model: str = Field(description="Served model name (GET /v1/models lists them).")
    prompt: Union[str, list[str]] = Field(description="The text to continue (a list of one text is accepted).")
    max_tokens: int | None = Field(default=16, ge=1, description="Most tokens to generate (OpenAI's default: 16).")
    temperature: float | None = Field(default=None, ge=0.0, le=2.0)
    top_p: float | None = Field(default=None, gt=0.0, le=1.0)
    stop: Union[str, list[str], None] = None
    seed: int | None = Field(default=None, ge=0)
    n: int | None = Field(default=None, ge=1, description="Choices to generate (1 to 8), each a text job of its"
                          " own; with a seed, choice i uses seed + i.")
    best_of: int | None = Field(default=None, ge=1, description="Only equal to n is supported (no ranking).")
    echo: bool | None = Field(default=None, description="Put the prompt before the completion's text.")
    suffix: str | None = Field(default=None, description="Not supported (no insertion mode).")
    logprobs: int | None = Field(default=None, ge=0, description="Not supported yet.")
    stream: bool = False
    stream_options: StreamOptions | None = None
    user: str | None = None

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, value):
        return [value] if isinstance(value, str) else value


class CompletionChoice(Contract):
    text: str
    index: int = 0
    logprobs: None = None
    finish_reason: FinishReason | None = None


class TextCompletion(Contract):
    """A `/v1/completions` answer, and (with `finish_reason` unset until the end) each streamed chunk."""

    id: str
    object: Literal["text_completion"] = "text_completion"
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: CompletionUsage | None = None
    system_fingerprint: str | None = None


class ModelCard(Contract):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "genloom"


class ModelList(Contract):
    object: Literal["list"] = "list"
    data: list[ModelCard]



# -- embeddings ------------------------------------------------------------------------------------


class EmbeddingRequest(_Lenient):
    """`POST /v1/embeddings`."""

    model: str = Field(description="The served embedding model (GET /v1/models lists it).")
    input: Union[str, list[str], list[int], list[list[int]]] = Field(
        description="A text or a list of texts (token-id arrays are refused: genloom embeds text).")
    encoding_format: Literal["float", "base64"] | None = Field(
        default=None, description="`float` (default) or `base64` of little-endian float32.")
    dimensions: int | None = Field(default=None, ge=1, description="Only the model's own size is served.")
    user: str | None = None


class Embedding(Contract):
    object: Literal["embedding"] = "embedding"
    index: int
    embedding: Union[list[float], str]


class EmbeddingUsage(Contract):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(Contract):
    object: Literal["list"] = "list"
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage


# -- media: images, videos, speech --------------------------------------------------------------


class ImageGenerationRequest(_Lenient):
    """`POST /v1/images/generations`: OpenAI's fields, plus genloom's diffusion extras."""

    prompt: str = Field(description="What to draw.")
    model: str | None = Field(default=None, description="Served image model; unset means the default.")
    n: int | None = Field(default=None, description="Images to generate (1 to the model's limit).")
    size: str | None = Field(default=None, description="`WIDTHxHEIGHT` in pixels, each divisible by 8, or `auto`.")
    response_format: Literal["url", "b64_json"] | None = Field(
        default=None, description="`url` (the default: GET /v1/artifacts/..., with the same API key) or `b64_json`."
    )
    output_format: str | None = Field(default=None, description="Only `png`.")
    user: str | None = Field(default=None, description="End-user id (memory and erasure are per user).")
    negative_prompt: str | None = Field(default=None, description="genloom: what to steer away from.")
    steps: int | None = Field(default=None, description="genloom: denoising steps (1 to the model's limit).")
    guidance: float | None = Field(default=None, description="genloom: classifier-free guidance scale.")
    scheduler: str | None = Field(default=None, description="genloom: `ddim` or `dpm-solver`.")
    seed: int | None = Field(default=None, description="genloom: same seed, same image.")


class ImageData(Contract):
    """One image: exactly one of `b64_json` and `url` is set."""

    b64_json: str | None = Field(default=None, description="The PNG, base64-encoded.")
    url: str | None = Field(default=None, description="Where to GET the PNG (with the same API key).")


class ImagesResponse(Contract):
    created: int = Field(description="Unix time the images were ready.")
    data: list[ImageData] = Field(description="The images, in index order.")


class VideoCreateRequest(_Lenient):
    """`POST /v1/videos` as JSON or multipart form fields: OpenAI's fields, plus genloom's extras."""

    prompt: str = Field(description="What to film.")
    model: str | None = Field(default=None, description="Served video model; unset means the default.")
    size: str | None = Field(default=None, description="`WIDTHxHEIGHT` in pixels, each divisible by 8.")
    seconds: float | None = Field(default=None, description="Clip length; frames = seconds x fps.")
    frames: int | None = Field(default=None, description="genloom: number of frames (instead of seconds).")
    fps: int | None = Field(default=None, description="genloom: frames per second of the MP4 (default 8).")
    steps: int | None = Field(default=None, description="genloom: denoising steps.")
    guidance: float | None = Field(default=None, description="genloom: classifier-free guidance scale.")
    negative_prompt: str | None = Field(default=None, description="genloom: what to steer away from.")
    seed: int | None = Field(default=None, description="genloom: same seed, same video.")
    user: str | None = Field(default=None, description="End-user id (memory and erasure are per user).")


class VideoError(Contract):
    code: str = Field(description="A stable genloom error code.")
    message: str


class VideoObject(Contract):
    """A video job as OpenAI's video API reports it."""

    id: str = Field(description="The job id.")
    object: Literal["video"] = "video"
    status: Literal["queued", "in_progress", "completed", "failed", "cancelled"]
    progress: int = Field(ge=0, le=100, description="Percent of denoising steps done.")
    created_at: int
    completed_at: int | None = Field(default=None, description="Unix time the job ended, if it has.")
    model: str
    size: str = Field(description="`WIDTHxHEIGHT`, or `auto` until the model's own size is known.")
    seconds: str = Field(description="Clip length in seconds.")
    error: VideoError | None = None


class SpeechCreateRequest(_Lenient):
    """`POST /v1/audio/speech`."""

    model: str = Field(description="Served speech model.")
    input: str = Field(description="Text to speak.")
    voice: str = Field(description="An installed voice (the shipped `joe`, or one from the voice folder).")
    response_format: str | None = Field(default=None, description="`wav` (the default) or `pcm`.")
    speed: float | None = Field(default=None, description="0.25 to 4.0; 1 is normal.")
    stream_format: Literal["audio", "sse"] | None = Field(
        default=None, description="`audio`: the file; `sse`: one event per sentence as it is spoken."
    )
    user: str | None = Field(default=None, description="End-user id (memory and erasure are per user).")


class SpeechAudioDelta(Contract):
    """One sentence of speech: base64 of raw s16le mono PCM."""

    type: Literal["speech.audio.delta"] = "speech.audio.delta"
    audio: str


class SpeechAudioDone(Contract):
    type: Literal["speech.audio.done"] = "speech.audio.done"
    sample_rate: int | None = Field(default=None, description="Hz of the PCM in the deltas.")
    audio_seconds: float = Field(ge=0, description="Seconds of speech sent.")


# -- moderations ---------------------------------------------------------------------------------------


class ModerationImageUrl(Contract):
    url: str = Field(description="A `data:image/...;base64,` URL (genloom fetches no remote images).")


class ModerationImagePart(Contract):
    type: Literal["image_url"]
    image_url: ModerationImageUrl


class ModerationRequest(_Lenient):
    """`POST /v1/moderations`, as OpenAI takes it: a string, a list of strings (one result each), or a
    list of text and image parts (one result for all of them)."""

    input: Union[str, list[str], list[Union[TextPart, ModerationImagePart]]] = Field(
        description="Text, texts, or text and image parts."
    )
    model: str | None = Field(default=None, description="Accepted and echoed; genloom's classifiers answer.")


class ModerationResult(Contract):
    flagged: bool = Field(description="Any category at or over its threshold (the tenant's policy), or a blocked term.")
    categories: dict[str, bool] = Field(description="Per category: whether it fired.")
    category_scores: dict[str, float] = Field(description="Per category: the score, 0 to 1.")
    category_applied_input_types: dict[str, list[Literal["text", "image"]]] = Field(
        description="Per category: the kinds of input that were scored for it."
    )


class ModerationResponse(Contract):
    id: str
    model: str
    results: list[ModerationResult]
