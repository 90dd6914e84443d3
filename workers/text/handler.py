"""The text worker's handler: every job in flight shares one continuous-batching engine.

The handler talks to its engine through one `EngineClient` (engine_client.py), chosen when it
is built: in a child process of its own (`engine_process=True`, what `python -m workers text`
does by default; engine_process.py) or in this process (engine_thread.py). Each step's outputs
are routed to the jobs' own queues.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os

from infra.models.context import ContextLengthExceeded, check_context
from infra.models.loader import TextModelSpec
from infra.models.settings import TextSettings
from infra.metrics import ENGINE_PREFILLS, ENGINE_STEP, ITERATION_TOKENS, KV_CACHE_USAGE, PREFIX_CACHE_HITS, PREFIX_CACHE_QUERIES
from infra.models.tool_prompt import chat_messages
from infra.settings.worker import WorkerSettings
from schemas import TextRequest
from schemas.enums import ErrorCode, FinishReason, Modality, ToolChoice
from schemas.events import ModelInfo, Usage
from schemas.requests import TextParams, ToolCall
from workers.context import JobContext
from workers.errors import JobCancelled, JobError

from .engine_client import EngineClient, ServedModel
from .engine_process import EngineProcess
from .engine_remote import RemoteEngine
from .engine_thread import InProcessEngine
from .grammar import grammar_for
from .sampling import SamplingParams
from .sequence import StepOutput, StepStats


class TextHandler:
    modality = Modality.TEXT

    def __init__(self, spec: TextModelSpec | None, *, served_name: str, max_batch_size: int = 16,
                 max_batch_tokens: int = 8192, max_prefill_tokens: int = 2048, prefix_cache_tokens: int = 2048,
                 prefill_threads: int | None = None, engine_process: bool = False, torch_threads: int = 0,
                 remote: dict | None = None) -> None:
        """`remote`: RemoteEngine's arguments (url, model, ...) to generate with an engine server instead."""
        self.served_name = served_name
        self.max_concurrency = max_batch_size * 2  # a batch running and one waiting to join
        engine_args = dict(max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens,
                           max_prefill_tokens=max_prefill_tokens, prefix_cache_tokens=prefix_cache_tokens,
                           prefill_threads=prefill_threads)
        if remote is not None:
            self.max_concurrency = remote.get("max_concurrency", 64)
            self.engine: EngineClient = RemoteEngine(on_outputs=self._route, **remote)
        else:
            self.engine = (
                EngineProcess(spec, engine_args, torch_threads=torch_threads, on_outputs=self._route)
                if engine_process else InProcessEngine(spec, engine_args, on_outputs=self._route)
            )
        self.loaded: ServedModel | None = None
        self._queues: dict[str, asyncio.Queue] = {}
        self._prompts: dict[str, list[int]] = {}
        self.steps = 0  # engine outputs delivered (for tests and metrics)
        self.max_running = 0  # largest batch seen

    @property
    def model_info(self) -> ModelInfo:
        if self.loaded is None:
            return ModelInfo(id=self.served_name, device="unloaded", dtype="unknown")
        return ModelInfo(id=self.loaded.model_id, revision=self.loaded.revision,
                         device=str(self.loaded.device), dtype=self.loaded.dtype_name)

    async def start(self) -> None:
        self.loaded = await self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()

    # -- validation ------------------------------------------------------------------------------

    def prompt_tokens(self, request: TextRequest) -> list[int]:
        if request.params.raw:  # /v1/completions: the text as it is, no chat template
            return self.loaded.format_text(request.params.messages[0].content)
        return self.loaded.format_chat(chat_messages(request.params))

    def check(self, request: TextRequest) -> None:
        if request.model not in (None, self.served_name, self.loaded.model_id if self.loaded else None):
            raise JobError(ErrorCode.MODEL_NOT_FOUND,
                           f"model {request.model!r} is not served here: use {self.served_name!r}")
        tokens = self.prompt_tokens(request)
        try:
            check_context(len(tokens), request.params.max_tokens, self.loaded.context_length)
        except ContextLengthExceeded as exc:
            raise JobError(ErrorCode.CONTEXT_LENGTH_EXCEEDED, str(exc)) from None
        self._prompts[request.job_id] = tokens  # run() reuses them instead of tokenising again

    # -- a job -----------------------------------------------------------------------------------

    async def run(self, ctx: JobContext) -> None:
        p = ctx.request.params
        try:
            params = SamplingParams(max_tokens=p.max_tokens, temperature=p.temperature, top_p=p.top_p,
                                    stop=tuple(p.stop), seed=p.seed, presence_penalty=p.presence_penalty,
                                    frequency_penalty=p.frequency_penalty, logit_bias=p.logit_bias,
                                    logprobs=p.logprobs, top_logprobs=p.top_logprobs,
                                    grammar=None if isinstance(self.engine, RemoteEngine) else grammar_for(p),
                                    cache_salt=ctx.request.tenant)
        except ValueError as exc:
            raise JobError(ErrorCode.INVALID_PARAMETER, str(exc)) from None
        request_id = f"{ctx.job_id}#{ctx.attempt}"
        outputs: asyncio.Queue = asyncio.Queue()
        prompt = self._prompts.pop(ctx.job_id, None) or self.prompt_tokens(ctx.request)
        self._queues[request_id] = outputs
        if isinstance(self.engine, RemoteEngine):  # a server applies its own chat template: send the messages
            p = ctx.request.params
            self.engine.add(request_id, prompt, params, messages=None if p.raw else _openai_messages(p),
                            raw=p.messages[0].content if p.raw else None, **_openai_constraints(p))
        else:
            self.engine.add(request_id, prompt, params)
        text: list[str] = []
        # a tool call's JSON is not content: its tokens are counted but their text is held back
        calls = ToolCallOutput(p)
        cancel_wait = asyncio.create_task(ctx.wait_cancelled())
        finished = False
        try:
            while True:
                getter = asyncio.create_task(outputs.get())
                try:
                    done, _ = await asyncio.wait({getter, cancel_wait}, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    if not getter.done():
                        getter.cancel()
                if getter not in done:
                    ctx.checkpoint()
                out: StepOutput = getter.result()
                if out.text_delta:
                    text.append(out.text_delta)
                    if calls.is_call("".join(text)):
                        await ctx.token("", len(out.token_ids))
                    else:
                        await ctx.token(out.text_delta, len(out.token_ids),
                                        [lp.described(self._token_text) for lp in out.logprobs])
                if out.finished:
                    finished = True
                    return await self._finish(ctx, out, "".join(text), calls)
        finally:
            cancel_wait.cancel()
            if not finished:  # cancelled, moved to another worker, or failed: the engine stops too
                self._queues.pop(request_id, None)
                self.engine.abort(request_id)

    async def _finish(self, ctx: JobContext, out: StepOutput, text: str, calls: ToolCallOutput) -> None:
        if out.aborted:
            raise JobCancelled("cancelled")
        if out.error is not None:
            if out.error.startswith("GrammarError"):
                raise JobError(ErrorCode.INVALID_PARAMETER, f"the output constraint cannot be followed: {out.error}")
            raise JobError(ErrorCode.GENERATION_ERROR, f"generation failed: {out.error}", retryable=True)
        usage = Usage(prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                      total_tokens=out.prompt_tokens + out.completion_tokens,
                      cached_tokens=None if isinstance(self.engine, RemoteEngine) else out.cached_tokens)
        tool_calls = out.tool_calls or (calls.parse(text, ctx.job_id) if out.finish_reason is FinishReason.STOP
                                        else None)
        if tool_calls:
            await ctx.completed(usage=usage, text="", finish_reason=FinishReason.TOOL_CALLS, tool_calls=tool_calls)
        else:
            await ctx.completed(usage=usage, text=text, finish_reason=out.finish_reason)

    def _token_text(self, token_id: int) -> str:
        return self.loaded.token_text(token_id)

    def _route(self, outputs: list[StepOutput], running: int, kv_usage: float | None = None,
               stats: StepStats | None = None) -> None:
        """One step's outputs to their jobs' queues (outputs of jobs that went away are dropped)."""
        self.steps += 1
        self.max_running = max(self.max_running, running)
        if stats is not None and stats.tokens:  # the built-in engine's step: what it ran, and each phase's time
            ITERATION_TOKENS.labels(self.served_name).observe(stats.tokens)
            if stats.decode_tokens:
                ENGINE_STEP.labels(self.served_name, "decode").observe(stats.decode_s)
            if stats.prefill_tokens:
                ENGINE_STEP.labels(self.served_name, "prefill").observe(stats.prefill_s)
                ENGINE_PREFILLS.labels(self.served_name, str(stats.prefill_threads)).inc()
        if kv_usage is not None:  # the built-in engine's: its KV cache, and its prefix cache per prefilled prompt
            KV_CACHE_USAGE.labels(self.served_name).set(kv_usage)
            for out in outputs:
                if out.finished and out.completion_tokens:
                    PREFIX_CACHE_QUERIES.labels(self.served_name).inc(out.prompt_tokens)
                    PREFIX_CACHE_HITS.labels(self.served_name).inc(out.cached_tokens)
        for out in outputs:  # hot loop: route each sequence's output once
            queue = self._queues.get(out.request_id)
            if queue is None:
                continue
            queue.put_nowait(out)
            if out.finished:
                del self._queues[out.request_id]


class ToolCallOutput:
    """Tells a tool call from a text answer in a chat job's output, and parses the call.

    With tool_choice required or a named function the whole output is a call; with auto the grammar
    lets the model start either a call (``{``) or text (anything else), so the first character decides."""

    def __init__(self, params: TextParams) -> None:
        self.mode = params.tool_choice if params.calls_tools else ToolChoice.NONE

    def is_call(self, text: str) -> bool:
        if self.mode in (ToolChoice.REQUIRED, ToolChoice.FUNCTION):
            return True
        return self.mode is ToolChoice.AUTO and text.lstrip().startswith("{")

    def parse(self, text: str, job_id: str) -> list[ToolCall] | None:
        """The calls the completed output holds, in order (None for a text answer): one JSON call object,
        or (parallel tool calls) several, one per line."""
        if not self.is_call(text):
            return None
        decoder, calls, body = json.JSONDecoder(), [], text.strip()
        position = 0
        try:
            while position < len(body):
                call, position = decoder.raw_decode(body, position)
                calls.append((call["name"], call["arguments"]))
                while position < len(body) and body[position].isspace():
                    position += 1
        except (ValueError, KeyError, TypeError):
            raise JobError(ErrorCode.GENERATION_ERROR, "the model's tool call is not a JSON call object",
                           retryable=True) from None
        return [ToolCall(id=_call_id(job_id, text, i), name=name, arguments=json.dumps(arguments))
                for i, (name, arguments) in enumerate(calls)]


def _call_id(job_id: str, text: str, index: int) -> str:
    """A stable id for call `index` of a job's output (the same on a retry that says the same)."""
    seed = f"{job_id}\0{text}" if index == 0 else f"{job_id}\0{index}\0{text}"
    return "call_" + hashlib.blake2b(seed.encode(), digest_size=12).hexdigest()


def _openai_messages(p: TextParams) -> list[dict]:
    """The job's messages as an OpenAI-compatible server takes them (tool calls and results included)."""
    messages: list[dict] = []
    for m in p.messages:
        message: dict = {"role": m.role.value, "content": m.content}
        if m.tool_calls:
            message["tool_calls"] = [{"id": c.id, "type": "function",
                                      "function": {"name": c.name, "arguments": c.arguments}} for c in m.tool_calls]
        if m.tool_call_id is not None:
            message["tool_call_id"] = m.tool_call_id
        messages.append(message)
    return messages


def _openai_constraints(p: TextParams) -> dict:
    """response_format, tools and tool_choice as an OpenAI-compatible server takes them (passed through)."""
    body: dict = {}
    fmt = p.response_format
    if fmt is not None:
        body["response_format"] = {"type": fmt.type.value} if fmt.json_schema is None else {
            "type": "json_schema", "json_schema": {"name": fmt.name or "response", "schema": fmt.json_schema,
                                                   "strict": fmt.strict}}
    if p.tools:
        body["tools"] = [{"type": "function", "function": {
            "name": t.name, "parameters": t.parameters, "strict": t.strict,
            **({"description": t.description} if t.description else {})}} for t in p.tools]
        body["tool_choice"] = ({"type": "function", "function": {"name": p.tool_name}}
                               if p.tool_choice is ToolChoice.FUNCTION else p.tool_choice.value)
        body["parallel_tool_calls"] = p.parallel_tool_calls
    return {"extra_body": body} if body else {}


def _prefill_threads(setting: int | str) -> int | None:
    """The engine's ``prefill_threads`` for GENLOOM_TEXT_PREFILL_THREADS: auto is every core this process may
    run on, 0 none (the engine's own count)."""
    if setting == "auto":
        return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or None
    return int(setting) or None


def create_handler() -> TextHandler:
    s = TextSettings()
    spec = TextModelSpec(model=s.model, revision=s.revision, dtype=s.dtype, device=s.device,
                         cache_dir=s.cache_dir, prefill_tiles=s.prefill_tiles,
                         float32_packed=s.float32_packed)
    remote = None
    if s.engine_url:
        tokenizer = None
        if s.engine_tokenizer:
            from transformers import AutoTokenizer

            tokenizer = AutoTokenizer.from_pretrained(s.engine_tokenizer, local_files_only=True)
        remote = dict(url=s.engine_url, model=s.engine_model or s.served_name, max_concurrency=s.engine_max_concurrency,
                      api_key=s.engine_api_key.get_secret_value() if s.engine_api_key else None, tokenizer=tokenizer,
                      cache_salt=s.engine_cache_salt)
    return TextHandler(spec, served_name=s.served_name, max_batch_size=s.max_batch_size,
                       max_batch_tokens=s.max_batch_tokens, max_prefill_tokens=s.max_prefill_tokens,
                       prefix_cache_tokens=s.prefix_cache_tokens,
                       prefill_threads=_prefill_threads(s.prefill_threads),
                       engine_process=s.engine_process, torch_threads=WorkerSettings().torch_threads, remote=remote)
