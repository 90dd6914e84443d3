"""`RemoteEngine`: an OpenAI-compatible engine server (vLLM, SGLang, TGI, llama.cpp's server,
`transformers serve`) as the text worker's engine.

genloom keeps every promise on top of it: the job still comes from Kafka (durability, takeover,
exactly one terminal event), its tokens go out as events through moderation and the fan-out, and
cancelling a job closes its upstream stream at once, which every one of those servers takes as an
abort. Each request is one streamed `POST /v1/chat/completions` (a raw prompt: `/v1/completions`)
with the job's own sampling; stop strings are applied here, by the same matcher the built-in engine
uses (a server that does not support them, or supports them differently, cannot change the text),
and the upstream stream is closed at the first match. Usage comes from the server's last chunk when
it sends one (`stream_options.include_usage`), else the prompt is counted with the local tokenizer
and each content chunk as a token.

Requests are salted by tenant where the server keeps a prefix cache that takes a salt (vLLM's
`cache_salt`): prompt heads are then reused only within a tenant, as in the built-in engine, since
how soon a first token comes would otherwise tell one tenant how another's prompts begin. `auto`
salts when the server's model card says vLLM (others refuse or ignore the field; `transformers serve`
refuses unknown fields), `tenant` always, `off` never.

Connections are bounded (`max_concurrency` streams, one pooled client), every read has a deadline,
and an upstream error ends the job with a retryable `generation_error` that says what the server
answered (a refusal of the prompt's length is `context_length_exceeded`).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any, get_args

import httpx

from infra.models.settings import CacheSaltMode
from schemas.enums import FinishReason
from schemas.requests import ToolCall

from .engine_client import OnOutputs, error_output
from .sampling import SamplingParams
from .sequence import StepOutput
from .stop import StopStringMatcher

log = logging.getLogger(__name__)

_FINISH = {"stop": FinishReason.STOP, "length": FinishReason.LENGTH, "eos": FinishReason.STOP,
           "stop_sequence": FinishReason.STOP, "content_filter": FinishReason.CONTENT_FILTER,
           "tool_calls": FinishReason.TOOL_CALLS}
CACHE_SALT_MODES = get_args(CacheSaltMode)
_SALTING_SERVERS = {"vllm"}  # model cards' owned_by of servers whose requests take a cache_salt


def salt_of(tenant: str) -> str:
    """The cache_salt sent for a tenant: a digest, so tenant names do not travel into the server's logs."""
    return hashlib.blake2b(tenant.encode(), digest_size=16, person=b"genloom-salt").hexdigest()


class UpstreamUnavailable(RuntimeError):
    """The engine server did not answer at start; the message says where and what to check."""


@dataclass
class RemoteModel:
    """What the handler needs of a remote model: its name and, from the local tokenizer when there is
    one, the chat template and context length (for the checks made before a job starts)."""

    model_id: str
    url: str
    tokenizer: Any | None
    context: int | None
    revision: str | None = None
    dtype: str = "remote"

    @property
    def dtype_name(self) -> str:
        return self.dtype

    @property
    def device(self) -> str:
        return f"remote:{self.url}"

    @property
    def context_length(self) -> int:
        return self.context or 1 << 30  # unknown: the server enforces its own and its refusal is reported

    def format_chat(self, messages: list[dict[str, str]]) -> list[int]:
        if self.tokenizer is None:
            return []
        from infra.models.prompt import chat_ids

        return chat_ids(self.tokenizer, messages)

    def format_text(self, text: str) -> list[int]:
        if self.tokenizer is None:
            return []
        from infra.models.prompt import text_ids

        return text_ids(self.tokenizer, text)

    def token_text(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id]) if self.tokenizer is not None else ""


class RemoteEngine:
    """The EngineClient over an OpenAI-compatible server at `url`, serving `model`."""

    def __init__(self, url: str, model: str, *, on_outputs: OnOutputs, api_key: str | None = None,
                 max_concurrency: int = 64, read_timeout_s: float = 120.0, start_timeout_s: float = 120.0,
                 tokenizer: Any | None = None, context_length: int | None = None, cache_salt: CacheSaltMode = "auto") -> None:
        if cache_salt not in CACHE_SALT_MODES:
            raise ValueError(f"cache_salt must be one of {', '.join(CACHE_SALT_MODES)}, not {cache_salt!r}")
        self.url = url.rstrip("/")
        self.model = model
        self._on_outputs = on_outputs
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._limits = httpx.Limits(max_connections=max_concurrency, max_keepalive_connections=max_concurrency)
        self._timeout = httpx.Timeout(read_timeout_s, connect=10.0)
        self._start_timeout_s = start_timeout_s
        self._tokenizer = tokenizer
        self._context = context_length
        self._salt_mode = cache_salt
        self.salted = cache_salt == "tenant"  # auto: decided by the server's model card at start
        self._http: httpx.AsyncClient | None = None
        self._tasks: dict[str, asyncio.Task] = {}

    async def start(self) -> RemoteModel:
        self._http = httpx.AsyncClient(base_url=self.url, headers=self._headers, limits=self._limits,
                                       timeout=self._timeout)
        deadline = time.monotonic() + self._start_timeout_s
        while True:
            try:
                answer = await self._http.get("/v1/models")
                if answer.status_code == 200:
                    break
                problem = f"GET /v1/models answered {answer.status_code}"
            except httpx.HTTPError as exc:
                problem = f"{type(exc).__name__}: {exc}"
            if time.monotonic() > deadline:
                raise UpstreamUnavailable(f"the engine server at {self.url} did not answer ({problem}): start it, or"
                                          " check GENLOOM_TEXT_ENGINE_URL")
            await asyncio.sleep(0.5)
        context = self._context
        for card in answer.json().get("data", []):
            if card.get("id") != self.model:
                continue
            if context is None:
                context = card.get("max_model_len")  # vLLM and SGLang say it
            if self._salt_mode == "auto":
                self.salted = str(card.get("owned_by", "")).lower() in _SALTING_SERVERS
        return RemoteModel(self.model, self.url, self._tokenizer, context)

    def add(self, request_id: str, prompt: list[int], params: SamplingParams, *,
            messages: list[dict[str, str]] | None = None, raw: str | None = None,
            extra_body: dict | None = None) -> None:
        """Stream the request upstream; its outputs go to `on_outputs` as they come. `extra_body`
        (response_format, tools, tool_choice) is passed through for the server to honour."""
        task = asyncio.create_task(self._run(request_id, len(prompt), params, messages, raw, extra_body or {}))
        self._tasks[request_id] = task
        task.add_done_callback(lambda _: self._tasks.pop(request_id, None))

    def abort(self, request_id: str) -> None:
        task = self._tasks.get(request_id)
        if task is not None:
            task.cancel()  # closes its stream: the server aborts the request

    async def stop(self) -> None:
        for task in list(self._tasks.values()):
            task.cancel()
        await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self._http is not None:
            await self._http.aclose()

    def _body(self, params: SamplingParams, messages, raw) -> tuple[str, dict]:
        body: dict[str, Any] = {"model": self.model, "max_tokens": params.max_tokens, "stream": True,
                                "temperature": params.temperature, "top_p": params.top_p,
                                "stream_options": {"include_usage": True}}
        if params.seed is not None:
            body["seed"] = params.seed
        for name in ("presence_penalty", "frequency_penalty"):
            if getattr(params, name):
                body[name] = getattr(params, name)
        if params.logit_bias:
            body["logit_bias"] = {str(token): bias for token, bias in params.logit_bias.items()}
        if self.salted and params.cache_salt:
            body["cache_salt"] = salt_of(params.cache_salt)
        if raw is not None:
            return "/v1/completions", {**body, "prompt": raw}
        return "/v1/chat/completions", {**body, "messages": messages or []}

    async def _run(self, request_id: str, prompt_tokens: int, params: SamplingParams, messages, raw,
                   extra_body: dict) -> None:
        path, body = self._body(params, messages, raw)
        body.update(extra_body)
        calls: dict[int, dict] = {}  # streamed tool calls by index: id, name, arguments so far
        stops = StopStringMatcher(params.stop)
        produced = 0
        usage: dict | None = None
        reason: FinishReason | None = None
        arrival, first = time.monotonic(), None

        def emit(text: str, finished: bool = False, **extra) -> None:
            out = StepOutput(request_id=request_id, text_delta=text, token_ids=[0] * (1 if text else 0),
                             finished=finished, finish_reason=extra.pop("finish_reason", None),
                             prompt_tokens=(usage or {}).get("prompt_tokens", prompt_tokens),
                             completion_tokens=(usage or {}).get("completion_tokens", produced),
                             arrival_time=arrival, first_token_time=first, **extra)
            self._on_outputs([out], len(self._tasks))

        try:
            async with self._http.stream("POST", path, json=body) as answer:
                if answer.status_code != 200:
                    detail = (await answer.aread())[:500].decode("utf-8", "replace")
                    emit("", True, error=f"the engine server answered {answer.status_code}: {detail}")
                    return
                async for line in answer.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[5:].strip()
                    if data == "[DONE]":
                        break
                    chunk = json.loads(data)
                    if chunk.get("usage"):
                        usage = chunk["usage"]
                    for choice in chunk.get("choices") or ():
                        delta = choice.get("text") if raw is not None else (choice.get("delta") or {}).get("content")
                        for part in (choice.get("delta") or {}).get("tool_calls") or ():
                            call = calls.setdefault(part.get("index", 0), {"id": "", "name": "", "arguments": ""})
                            function = part.get("function") or {}
                            call["id"] = part.get("id") or call["id"]
                            call["name"] = function.get("name") or call["name"]
                            call["arguments"] += function.get("arguments") or ""
                        if delta:
                            produced += 1
                            first = first or time.monotonic()
                            text, stopped = stops.feed(delta)
                            if stopped:  # ours, not the server's: close the stream, which aborts it upstream
                                emit(text, True, finish_reason=FinishReason.STOP)
                                return
                            if text:
                                emit(text)
                        if choice.get("finish_reason"):
                            reason = _FINISH.get(choice["finish_reason"], FinishReason.STOP)
            tool_calls = [ToolCall(id=c["id"] or f"call_{request_id}_{i}", name=c["name"], arguments=c["arguments"])
                          for i, c in sorted(calls.items())] or None
            emit(stops.flush(), True, finish_reason=FinishReason.TOOL_CALLS if tool_calls else reason or FinishReason.STOP,
                 tool_calls=tool_calls)
        except asyncio.CancelledError:
            emit("", True, aborted=True)
            raise
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("request %s to %s failed: %s", request_id, self.url, exc)
            self._on_outputs([error_output(request_id, prompt_tokens, f"the engine server failed: {exc}")],
                             len(self._tasks))
