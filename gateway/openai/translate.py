"""Pure translation between OpenAI chat bodies and genloom jobs and events."""

from __future__ import annotations

import json
import time
from typing import Any

from infra.models.catalog import TextModelCatalog, TextModelEntry
from infra.models.context import ContextLengthExceeded, check_characters, check_context
from schemas import TextRequest
from schemas.enums import ErrorCode, FinishReason
from schemas.events import Usage
from schemas.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChoiceMessage,
    ChunkChoice,
    ChunkDelta,
    CompletionUsage,
)

from ..errors import ApiError
from ..body import build_job, parse_body

def parse_chat_body(data: object) -> ChatCompletionRequest:
    body = parse_body(ChatCompletionRequest, data, "a chat completion request")
    unsupported = [f"messages[].{name}" for m in body.messages for name in m.unsupported()]
    if unsupported:
        raise ApiError(ErrorCode.INVALID_PARAMETER,
                       f"not supported by genloom: {', '.join(unsupported)}; remove them", param=unsupported[0])
    if body.n not in (None, 1):
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"n={body.n}: genloom returns one choice; send n=1 or omit n",
                       param="n")
    return body


def to_text_request(body: ChatCompletionRequest, *, tenant: str, job_id: str | None,
                    catalog: TextModelCatalog, chars_per_token: int = 32, session: str | None = None) -> TextRequest:
    """The job for a chat body, validated against the served model (400s before queueing).

    CPU-bound (it tokenises the prompt): the gateway runs it off the event loop. Messages longer
    than the context could hold at `chars_per_token` are refused before tokenising."""
    entry = catalog.get(body.model)
    if entry is None:
        raise ApiError(ErrorCode.UNKNOWN_MODEL,
                       f"model {body.model!r} is not served here: use one of {', '.join(catalog.names())}"
                       " (GET /v1/models)", param="model")
    if not body.messages:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "messages is empty: send at least one message",
                       param="messages")
    messages = [{"role": "system" if m.role == "developer" else m.role, "content": m.text()}
                for m in body.messages]
    if not any(m["content"].strip() for m in messages):
        raise ApiError(ErrorCode.EMPTY_INPUT, "every message is empty: send some text", param="messages")
    max_tokens = body.max_completion_tokens or body.max_tokens
    _check_context(entry, None, max_tokens)  # before the job is built: max_tokens past the context is not a 422
    params: dict[str, Any] = {"messages": messages}
    for name, value in (("max_tokens", max_tokens), ("temperature", body.temperature), ("top_p", body.top_p),
                        ("stop", body.stop), ("seed", body.seed)):
        if value is not None:
            params[name] = value
    request = build_job(TextRequest, {"modality": "text", "model": body.model, "params": params}, tenant=tenant,
                        job_id=job_id, user=body.user, session=session)
    if entry.context_length is not None:
        try:
            check_characters(sum(len(m["content"]) for m in messages), entry.context_length, chars_per_token)
        except ContextLengthExceeded as exc:
            raise ApiError(ErrorCode.CONTEXT_LENGTH_EXCEEDED, str(exc), param=exc.param) from None
        prompt = entry.prompt_tokens([{"role": m.role.value, "content": m.content} for m in request.params.messages])
        _check_context(entry, prompt, request.params.max_tokens)
    return request


def _check_context(entry: TextModelEntry, prompt_tokens: int | None, max_tokens: int | None) -> None:
    try:
        check_context(prompt_tokens, max_tokens, entry.context_length)
    except ContextLengthExceeded as exc:
        raise ApiError(ErrorCode.CONTEXT_LENGTH_EXCEEDED, str(exc), param=exc.param) from None


class ChunkWriter:
    """Builds the `chat.completion.chunk` stream of one completion."""

    def __init__(self, completion_id: str, model: str, created: int | None = None) -> None:
        self.id = completion_id
        self.model = model
        self.created = created or int(time.time())

    def _chunk(self, delta: ChunkDelta, finish: FinishReason | None = None, usage=None, choices=True) -> bytes:
        chunk = ChatCompletionChunk(id=self.id, created=self.created, model=self.model,
                                    choices=[ChunkChoice(delta=delta, finish_reason=finish)] if choices else [],
                                    usage=usage)
        return b"data: " + chunk.model_dump_json(exclude_none=False).encode() + b"\n\n"

    def role(self) -> bytes:
        return self._chunk(ChunkDelta(role="assistant", content=""))

    def content(self, text: str) -> bytes:
        return self._chunk(ChunkDelta(content=text))

    def finish(self, reason: FinishReason) -> bytes:
        return self._chunk(ChunkDelta(), reason)

    def usage(self, usage: Usage) -> bytes:
        return self._chunk(ChunkDelta(), usage=completion_usage(usage), choices=False)

    @staticmethod
    def error(code: str, message: str) -> bytes:
        return b"data: " + json.dumps({"error": {"code": code, "message": message, "type": code}}).encode() + b"\n\n"

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"


def completion_usage(usage: Usage) -> CompletionUsage:
    prompt = usage.prompt_tokens or 0
    completion = usage.completion_tokens or 0
    return CompletionUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)


def completion(completion_id: str, model: str, text: str, finish_reason: FinishReason, usage: Usage) -> ChatCompletion:
    return ChatCompletion(
        id=completion_id, created=int(time.time()), model=model,
        choices=[Choice(message=ChoiceMessage(content=text), finish_reason=finish_reason)],
        usage=completion_usage(usage),
    )


class AttemptDiverged(Exception):
    """A worker took the job over and its text differs from what the client already has."""


class TextAssembler:
    """What to send a client of a text stream, across worker takeovers.

    Events carry the `attempt` that emitted them; an attempt not seen before is a takeover and
    restarts the text from the beginning (attempt numbers come from the workers' clocks, which may
    disagree, so only their order in the log counts), and a late event of an earlier one is ignored. Its text is held back until it passes what the client already received, so the
    client sees one continuous answer. A newer attempt whose text disagrees with what was sent
    (sampling without a seed) raises AttemptDiverged.
    """

    def __init__(self) -> None:
        self.sent = ""
        self._attempt: int | None = None
        self._superseded: set[int] = set()
        self._text = ""

    def add(self, attempt: int, text: str) -> str:
        """The new text to send for a token event (may be empty)."""
        if attempt in self._superseded:
            return ""  # a late event of a superseded attempt
        if attempt != self._attempt:
            if self._attempt is not None:
                self._superseded.add(self._attempt)
            self._attempt, self._text = attempt, ""
        self._text += text
        if self._text.startswith(self.sent):
            delta, self.sent = self._text[len(self.sent):], self._text
            return delta
        if self.sent.startswith(self._text):
            return ""  # the new attempt is still catching up with what was sent
        raise AttemptDiverged(
            "the worker generating this completion was replaced and the new one produced different text:"
            " retry the request (set a seed or temperature 0 for reproducible text)"
        )
