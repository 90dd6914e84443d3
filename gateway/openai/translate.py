"""Pure translation between OpenAI chat bodies and genloom jobs and events."""

from __future__ import annotations

import json
import time
from typing import Any

from infra.models.catalog import TextModelCatalog, TextModelEntry
from infra.models.context import ContextLengthExceeded, check_characters, check_context
from infra.models.structured import SchemaError, check_schema
from infra.models.tool_prompt import chat_messages
from schemas import TextRequest
from schemas.enums import ErrorCode, FinishReason
from schemas.events import TokenLogprob, Usage
from schemas.openai import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChoiceLogprobs,
    ChoiceMessage,
    ChunkChoice,
    ChunkDelta,
    ChunkToolCall,
    FunctionCall,
    CompletionChoice,
    CompletionRequest,
    CompletionUsage,
    PromptTokensDetails,
    TextCompletion,
    ToolCallOut,
)
from schemas.requests import ToolCall

from ..errors import ApiError
from ..body import build_job, parse_body

def parse_chat_body(data: object) -> ChatCompletionRequest:
    body = parse_body(ChatCompletionRequest, data, "a chat completion request")
    unsupported = [f"messages[].{name}" for m in body.messages for name in m.unsupported()]
    if unsupported:
        raise ApiError(ErrorCode.INVALID_PARAMETER,
                       f"not supported by genloom: {', '.join(unsupported)}; remove them", param=unsupported[0])
    check_n(body.n)
    if body.top_logprobs and not body.logprobs:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "top_logprobs needs logprobs=true", param="top_logprobs")
    logit_bias_ids(body)  # 400 before queueing
    constraints(body)
    return body


def constraints(body: ChatCompletionRequest) -> dict[str, Any]:
    """`response_format`, `tools` and `tool_choice` as the job's parameters; a 400 naming the parameter
    when a schema is not valid JSON Schema or cannot become a grammar, or tool_choice names no tool."""
    params: dict[str, Any] = {}
    fmt = body.response_format
    if fmt is not None and fmt.type != "text":
        if fmt.type == "json_schema":
            if fmt.json_schema is None or fmt.json_schema.schema_ is None:
                raise ApiError(ErrorCode.INVALID_PARAMETER, "response_format json_schema needs json_schema.schema:"
                               " the JSON Schema the answer must follow", param="response_format")
            _check(fmt.json_schema.schema_, "response_format.json_schema.schema")
            params["response_format"] = {"type": "json_schema", "name": fmt.json_schema.name,
                                         "json_schema": fmt.json_schema.schema_, "strict": True}
        else:
            params["response_format"] = {"type": "json_object"}
    tools = body.tools or []
    names = [tool.function.name for tool in tools]
    for i, tool in enumerate(tools):
        if tool.function.parameters is not None:
            _check(tool.function.parameters, f"tools[{i}].function.parameters")
        if names.count(tool.function.name) > 1:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"two tools are named {tool.function.name!r}",
                           param=f"tools[{i}].function.name")
    if tools and body.parallel_tool_calls:
        params["parallel_tool_calls"] = True
    if tools:
        params["tools"] = [{"name": t.function.name, "description": t.function.description,
                            **({"parameters": t.function.parameters} if t.function.parameters is not None else {})}
                           for t in tools]
    choice = body.tool_choice
    if choice is not None and not isinstance(choice, str):
        if choice.function.name not in names:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"tool_choice names {choice.function.name!r}, which is not"
                           f" among the tools ({', '.join(names) or 'none given'})", param="tool_choice")
        params["tool_choice"], params["tool_name"] = "function", choice.function.name
    elif choice is not None:
        if choice == "required" and not tools:
            raise ApiError(ErrorCode.INVALID_PARAMETER, "tool_choice required needs tools", param="tool_choice")
        params["tool_choice"] = choice
    if "response_format" in params and tools and params.get("tool_choice") != "none":
        raise ApiError(ErrorCode.INVALID_PARAMETER, "response_format cannot be combined with tools the model may"
                       " call: set tool_choice none or drop one of them", param="response_format")
    return params


def _check(schema: Any, param: str) -> None:
    try:
        check_schema(schema)
    except SchemaError as exc:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"{param}: {exc}", param=param) from None


def logit_bias_ids(body: ChatCompletionRequest, vocab_size: int | None = None) -> dict[int, float]:
    """`logit_bias` keyed by token id (OpenAI sends the ids as strings); 400 naming it when a key is not a
    token id (of the model's vocabulary, when known) or a value is outside [-100, 100]."""
    ids: dict[int, float] = {}
    for key, value in (body.logit_bias or {}).items():
        token = int(key) if key.strip().isdigit() else -1
        if token < 0 or (vocab_size is not None and token >= vocab_size):
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"logit_bias key {key!r} is not a token id of the model"
                           + (f" (0 to {vocab_size - 1})" if vocab_size else ""), param="logit_bias")
        if not -100.0 <= value <= 100.0:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"logit_bias[{key!r}]={value}: biases are in [-100, 100]",
                           param="logit_bias")
        ids[token] = value
    return ids


def parse_completion_body(data: object) -> CompletionRequest:
    body = parse_body(CompletionRequest, data, "a completion request")
    check_n(body.n)
    if body.best_of not in (None, body.n or 1):
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"best_of={body.best_of}: genloom returns every choice it"
                       " generates (no ranking); omit best_of or send it equal to n", param="best_of")
    for name, value in (("suffix", body.suffix), ("logprobs", body.logprobs)):
        if value is not None:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"{name} is not supported by genloom's completions; remove"
                           f" it", param=name)
    if isinstance(body.prompt, list) and len(body.prompt) != 1:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"prompt holds {len(body.prompt)} texts; genloom completes one"
                       " per request: send a string", param="prompt")
    return body


#: the most choices (`n`) one request may ask for: each is a text job of its own, admitted together
MAX_CHOICES = 8


def check_n(n: int | None) -> None:
    if n is not None and not 1 <= n <= MAX_CHOICES:
        raise ApiError(ErrorCode.INVALID_PARAMETER, f"n={n}: genloom generates 1 to {MAX_CHOICES} choices per"
                       " request; send a smaller n, or several requests", param="n")


def choice_requests(request: TextRequest, n: int) -> list[TextRequest]:
    """The jobs of an `n`-choice completion: `request` for choice 0 and, for choice i, a copy whose
    job id is the first one's with `.i` appended and whose seed (when one was given) is seed + i, so a
    seeded request gives n different choices, the same ones each time. Greedy choices are alike."""
    requests = [request]
    for i in range(1, n):
        job_id = f"{request.job_id}.{i}"
        if len(job_id) > 128:
            raise ApiError(ErrorCode.INVALID_PARAMETER, f"the Idempotency-Key is too long for n={n}: choice"
                           f" {i}'s job id would be {len(job_id)} characters (128 at most); send a shorter key",
                           param="Idempotency-Key")
        params = request.params
        if params.seed is not None:
            params = params.model_copy(update={"seed": (params.seed + i) % 2**63})
        requests.append(request.model_copy(update={"job_id": job_id, "params": params}))
    return requests


def merge_choices(answers: list[ChatCompletion] | list[TextCompletion]) -> ChatCompletion | TextCompletion:
    """One answer of `n` choices from the n one-choice answers of its jobs, choice i at index i; usage
    counts the prompt once (as OpenAI does) and every choice's generated tokens."""
    first = answers[0]
    choices = [a.choices[0].model_copy(update={"index": i}) for i, a in enumerate(answers)]
    prompt = first.usage.prompt_tokens if first.usage else 0
    generated = sum(a.usage.completion_tokens for a in answers if a.usage)
    usage = CompletionUsage(prompt_tokens=prompt, completion_tokens=generated, total_tokens=prompt + generated,
                            prompt_tokens_details=first.usage.prompt_tokens_details if first.usage else None)
    return first.model_copy(update={"choices": choices, "usage": usage})


def merged_usage(usages: list[Usage]) -> Usage:
    """The usage of an `n`-choice stream: the prompt once, every choice's generated tokens."""
    prompt, generated = usages[0].prompt_tokens or 0, sum(u.completion_tokens or 0 for u in usages)
    return Usage(prompt_tokens=prompt, completion_tokens=generated, total_tokens=prompt + generated,
                 cached_tokens=usages[0].cached_tokens)


def prompt_text(body: CompletionRequest) -> str:
    return body.prompt if isinstance(body.prompt, str) else body.prompt[0]


def to_text_request(body: ChatCompletionRequest, *, tenant: str, job_id: str | None,
                    catalog: TextModelCatalog, chars_per_token: int = 32, session: str | None = None) -> TextRequest:
    """The job for a chat body, validated against the served model (400s before queueing).

    CPU-bound (it tokenises the prompt): the gateway runs it off the event loop. Messages longer
    than the context could hold at `chars_per_token` are refused before tokenising."""
    if not body.messages:
        raise ApiError(ErrorCode.INVALID_PARAMETER, "messages is empty: send at least one message",
                       param="messages")
    messages = [_message(m) for m in body.messages]
    return _text_job(body, messages, body.max_completion_tokens or body.max_tokens, tenant=tenant, job_id=job_id,
                     catalog=catalog, chars_per_token=chars_per_token, session=session)


def _message(m) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "system" if m.role == "developer" else m.role, "content": m.text()}
    if m.tool_calls:
        message["tool_calls"] = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments}
                                 for c in m.tool_calls]
    if m.tool_call_id is not None:
        message["tool_call_id"] = m.tool_call_id
    return message


def completion_to_text_request(body: CompletionRequest, *, tenant: str, job_id: str | None,
                               catalog: TextModelCatalog, chars_per_token: int = 32,
                               session: str | None = None) -> TextRequest:
    """The job for a `/v1/completions` body: its prompt as one raw user message (no chat template)."""
    return _text_job(body, [{"role": "user", "content": prompt_text(body)}], body.max_tokens, raw=True,
                     tenant=tenant, job_id=job_id, catalog=catalog, chars_per_token=chars_per_token, session=session)


def _text_job(body: ChatCompletionRequest | CompletionRequest, messages: list[dict[str, Any]],
              max_tokens: int | None, *, tenant: str, job_id: str | None, catalog: TextModelCatalog,
              chars_per_token: int, session: str | None, raw: bool = False) -> TextRequest:
    entry = catalog.get(body.model)
    if entry is None:
        raise ApiError(ErrorCode.MODEL_NOT_FOUND,
                       f"model {body.model!r} is not served here: use one of {', '.join(catalog.names())}"
                       " (GET /v1/models)", param="model")
    if not any(m["content"].strip() or m.get("tool_calls") for m in messages):
        raise ApiError(ErrorCode.EMPTY_INPUT, "every message is empty: send some text",
                       param="prompt" if raw else "messages")
    _check_context(entry, None, max_tokens)  # before the job is built: max_tokens past the context is not a 422
    params: dict[str, Any] = {"messages": messages}
    if raw:
        params["raw"] = True
    for name, value in (("max_tokens", max_tokens), ("temperature", body.temperature), ("top_p", body.top_p),
                        ("stop", body.stop), ("seed", body.seed)):
        if value is not None:
            params[name] = value
    if isinstance(body, ChatCompletionRequest):
        for name in ("presence_penalty", "frequency_penalty", "logprobs", "top_logprobs"):
            if getattr(body, name) is not None:
                params[name] = getattr(body, name)
        if body.logit_bias:
            params["logit_bias"] = logit_bias_ids(body, len(entry.tokenizer) if entry.tokenizer is not None else None)
        params.update(constraints(body))
    request = build_job(TextRequest, {"modality": "text", "model": body.model, "params": params}, tenant=tenant,
                        job_id=job_id, user=body.user, session=session)
    if entry.context_length is not None:
        try:
            check_characters(sum(len(m["content"]) for m in messages), entry.context_length, chars_per_token)
        except ContextLengthExceeded as exc:
            raise ApiError(ErrorCode.CONTEXT_LENGTH_EXCEEDED, str(exc), param=exc.param) from None
        prompt = entry.prompt_tokens(chat_messages(request.params), raw=raw)
        _check_context(entry, prompt, request.params.max_tokens)
    return request


def _check_context(entry: TextModelEntry, prompt_tokens: int | None, max_tokens: int | None) -> None:
    try:
        check_context(prompt_tokens, max_tokens, entry.context_length)
    except ContextLengthExceeded as exc:
        raise ApiError(ErrorCode.CONTEXT_LENGTH_EXCEEDED, str(exc), param=exc.param) from None


class ChunkWriter:
    """Builds the `chat.completion.chunk` stream of one completion."""

    def __init__(self, completion_id: str, model: str, created: int | None = None, index: int = 0) -> None:
        self.id = completion_id
        self.model = model
        self.created = created or int(time.time())
        #: the choice this writer's chunks belong to (`n` > 1: one writer per choice, one id for all)
        self.index = index

    def _chunk(self, delta: ChunkDelta, finish: FinishReason | None = None, usage=None, choices=True,
               logprobs: list[TokenLogprob] | None = None) -> bytes:
        choice = ChunkChoice(index=self.index, delta=delta, finish_reason=finish,
                             logprobs=ChoiceLogprobs(content=logprobs) if logprobs else None)
        chunk = ChatCompletionChunk(id=self.id, created=self.created, model=self.model,
                                    choices=[choice] if choices else [], usage=usage)
        return b"data: " + chunk.model_dump_json(exclude_none=False).encode() + b"\n\n"

    def role(self) -> bytes:
        return self._chunk(ChunkDelta(role="assistant", content=""))

    def content(self, text: str, logprobs: list[TokenLogprob] | None = None) -> bytes:
        return self._chunk(ChunkDelta(content=text), logprobs=logprobs)

    def finish(self, reason: FinishReason) -> bytes:
        return self._chunk(ChunkDelta(), reason)

    def tool_calls(self, calls: list[ToolCall]) -> bytes:
        """The model's tool calls, each whole in one delta (an SDK accumulates them the same way)."""
        return self._chunk(ChunkDelta(tool_calls=[
            ChunkToolCall(index=i, id=c.id, type="function", function=FunctionCall(name=c.name, arguments=c.arguments))
            for i, c in enumerate(calls)]))

    def usage(self, usage: Usage) -> bytes:
        return self._chunk(ChunkDelta(), usage=completion_usage(usage), choices=False)

    @staticmethod
    def error(code: str, message: str) -> bytes:
        return b"data: " + json.dumps({"error": {"code": code, "message": message, "type": code}}).encode() + b"\n\n"

    @staticmethod
    def done() -> bytes:
        return b"data: [DONE]\n\n"

    def final(self, text: str, finish_reason: FinishReason, usage: Usage,
              logprobs: list[TokenLogprob] | None = None, tool_calls: list[ToolCall] | None = None) -> ChatCompletion:
        return completion(self.id, self.model, text, finish_reason, usage, logprobs, tool_calls)


class TextCompletionWriter(ChunkWriter):
    """The `text_completion` stream and answer of one `/v1/completions` request (`echo`: the prompt
    comes first)."""

    def __init__(self, completion_id: str, model: str, echo: str = "", index: int = 0) -> None:
        super().__init__(completion_id, model, index=index)
        self.echo = echo

    def _piece(self, text: str, finish: FinishReason | None = None, usage=None, choices=True) -> bytes:
        chunk = TextCompletion(id=self.id, created=self.created, model=self.model,
                               choices=[CompletionChoice(text=text, index=self.index, finish_reason=finish)]
                               if choices else [],
                               usage=usage)
        return b"data: " + chunk.model_dump_json(exclude_none=False).encode() + b"\n\n"

    def role(self) -> bytes:
        return self._piece(self.echo) if self.echo else b""

    def content(self, text: str, logprobs: list[TokenLogprob] | None = None) -> bytes:
        return self._piece(text)

    def finish(self, reason: FinishReason) -> bytes:
        return self._piece("", reason)

    def usage(self, usage: Usage) -> bytes:
        return self._piece("", usage=completion_usage(usage), choices=False)

    def final(self, text: str, finish_reason: FinishReason, usage: Usage,
              logprobs: list[TokenLogprob] | None = None, tool_calls: list[ToolCall] | None = None) -> TextCompletion:
        return TextCompletion(id=self.id, created=self.created, model=self.model,
                              choices=[CompletionChoice(text=self.echo + text, finish_reason=finish_reason)],
                              usage=completion_usage(usage))


def completion_usage(usage: Usage) -> CompletionUsage:
    prompt = usage.prompt_tokens or 0
    completion = usage.completion_tokens or 0
    details = None if usage.cached_tokens is None else PromptTokensDetails(cached_tokens=usage.cached_tokens)
    return CompletionUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion,
                           prompt_tokens_details=details)


def completion(completion_id: str, model: str, text: str, finish_reason: FinishReason, usage: Usage,
               logprobs: list[TokenLogprob] | None = None, tool_calls: list[ToolCall] | None = None) -> ChatCompletion:
    message = ChoiceMessage(content=text or None, tool_calls=[
        ToolCallOut(id=c.id, function=FunctionCall(name=c.name, arguments=c.arguments)) for c in tool_calls]) \
        if tool_calls else ChoiceMessage(content=text)
    return ChatCompletion(
        id=completion_id, created=int(time.time()), model=model,
        choices=[Choice(message=message, finish_reason=finish_reason,
                        logprobs=ChoiceLogprobs(content=logprobs) if logprobs is not None else None)],
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
        #: the current attempt's token logprobs (when the request asked for them)
        self.logprobs: list[TokenLogprob] = []

    def add(self, attempt: int, text: str, logprobs: list[TokenLogprob] | None = None) -> str:
        """The new text to send for a token event (may be empty)."""
        if attempt in self._superseded:
            return ""  # a late event of a superseded attempt
        if attempt != self._attempt:
            if self._attempt is not None:
                self._superseded.add(self._attempt)
            self._attempt, self._text, self.logprobs = attempt, "", []
        self._text += text
        self.logprobs += logprobs or []
        if self._text.startswith(self.sent):
            delta, self.sent = self._text[len(self.sent):], self._text
            return delta
        if self.sent.startswith(self._text):
            return ""  # the new attempt is still catching up with what was sent
        raise AttemptDiverged(
            "the worker generating this completion was replaced and the new one produced different text:"
            " retry the request (set a seed or temperature 0 for reproducible text)"
        )
