"""The text worker's handler: one continuous-batching engine loop shared by every job in flight.

The engine runs either in a child process (`engine_process=True`, what `python -m workers text`
does by default; see engine_process.py) or in this process, where the engine is not thread-safe,
so only one loop touches it: jobs hand it additions and aborts through a list, and the loop
applies them between steps and runs each step in a thread. Either way each step's outputs are
routed to the jobs' own queues.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from infra.models.loader import (
    LoadedModel,
    ServedTokenizer,
    TextModelSpec,
    load_text_model,
    load_text_tokenizer,
    prepare_text_model,
)
from infra.models.context import ContextLengthExceeded, check_context
from infra.models.settings import TextSettings
from infra.settings.worker import WorkerSettings
from schemas import TextRequest
from schemas.enums import ErrorCode, FinishReason, Modality
from schemas.events import ModelInfo, Usage
from workers.context import JobContext
from workers.errors import JobCancelled, JobError

from .engine import TextEngine
from .engine_process import EngineProcess, warm_up
from .sampling import SamplingParams
from .sequence import StepOutput

log = logging.getLogger(__name__)

#: event-loop turns given to the jobs between engine steps: a job takes its output and sends its
#: event, then aiokafka's sender task writes the batch to the socket
_FLUSH_TURNS = 3


@dataclass
class _Pending:
    request_id: str
    prompt: list[int]
    params: SamplingParams
    outputs: asyncio.Queue


class TextHandler:
    modality = Modality.TEXT

    def __init__(self, spec: TextModelSpec, *, served_name: str, max_batch_size: int = 16,
                 max_batch_tokens: int = 8192, max_prefill_tokens: int = 2048, engine_process: bool = False,
                 torch_threads: int = 0) -> None:
        self._spec = spec
        self.served_name = served_name
        self.max_concurrency = max_batch_size * 2  # a batch running and one waiting to join
        self._engine_args = dict(max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens,
                                 max_prefill_tokens=max_prefill_tokens)
        self._engine_process = engine_process
        self._torch_threads = torch_threads
        self.loaded: LoadedModel | ServedTokenizer | None = None
        self.engine: TextEngine | None = None  # in this process
        self.remote: EngineProcess | None = None  # in a child process
        self._adds: list[_Pending] = []
        self._aborts: list[str] = []
        self._queues: dict[str, asyncio.Queue] = {}
        self._prompts: dict[str, list[int]] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task | None = None
        self.steps = 0  # decode iterations run (for tests and metrics)
        self.max_running = 0  # largest batch seen

    @property
    def model_info(self) -> ModelInfo:
        if self.loaded is None:
            return ModelInfo(id=self.served_name, device="unloaded", dtype="unknown")
        return ModelInfo(id=self.loaded.model_id, revision=self.loaded.revision,
                         device=str(self.loaded.device), dtype=str(self.loaded.dtype).removeprefix("torch."))

    async def start(self) -> None:
        if self._engine_process:
            await asyncio.to_thread(prepare_text_model, self._spec)  # build the default's cache once, here
            self.remote = EngineProcess(self._spec, self._engine_args, torch_threads=self._torch_threads,
                                        on_outputs=self._route)
            info = await self.remote.start()
            self.loaded = await asyncio.to_thread(load_text_tokenizer, self._spec, device=info.device,
                                                  dtype=info.dtype, context_length=info.context_length)
            return
        if self.loaded is None:
            self.loaded = await asyncio.to_thread(load_text_model, self._spec)
        self.engine = TextEngine(self.loaded.model, self.loaded.tokenizer, device=self.loaded.device,
                                 **self._engine_args)
        prompt = self.loaded.format_chat([{"role": "user", "content": "Hi"}])
        await asyncio.to_thread(warm_up, self.engine, prompt)
        self._loop_task = asyncio.create_task(self._loop(), name="text-engine-loop")

    async def stop(self) -> None:
        if self.remote is not None:
            await self.remote.stop()
        if self._loop_task is not None:
            self._loop_task.cancel()
            await asyncio.gather(self._loop_task, return_exceptions=True)

    # -- validation ------------------------------------------------------------------------------

    def prompt_tokens(self, request: TextRequest) -> list[int]:
        messages = [{"role": m.role.value, "content": m.content} for m in request.params.messages]
        return self.loaded.format_chat(messages)

    def check(self, request: TextRequest) -> None:
        if request.model not in (None, self.served_name, self.loaded.model_id if self.loaded else None):
            raise JobError(ErrorCode.UNKNOWN_MODEL,
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
                                    stop=tuple(p.stop), seed=p.seed)
        except ValueError as exc:
            raise JobError(ErrorCode.INVALID_PARAMETER, str(exc)) from None
        request_id = f"{ctx.job_id}#{ctx.attempt}"
        outputs: asyncio.Queue = asyncio.Queue()
        prompt = self._prompts.pop(ctx.job_id, None) or self.prompt_tokens(ctx.request)
        self._submit(_Pending(request_id, prompt, params, outputs))
        text: list[str] = []
        cancel_wait = asyncio.create_task(ctx.wait_cancelled())
        try:
            while True:
                getter = asyncio.create_task(outputs.get())
                done, _ = await asyncio.wait({getter, cancel_wait}, return_when=asyncio.FIRST_COMPLETED)
                if getter not in done:
                    getter.cancel()
                    self._abort(request_id)
                    ctx.checkpoint()
                out: StepOutput = getter.result()
                if out.text_delta:
                    text.append(out.text_delta)
                    await ctx.token(out.text_delta, len(out.token_ids))
                if out.finished:
                    return await self._finish(ctx, out, "".join(text))
        finally:
            cancel_wait.cancel()

    async def _finish(self, ctx: JobContext, out: StepOutput, text: str) -> None:
        reason = out.finish_reason
        if reason == "abort":
            raise JobCancelled("cancelled")
        if reason == "error":
            raise JobError(ErrorCode.GENERATION_ERROR, f"generation failed: {out.error}", retryable=True)
        usage = Usage(prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                      total_tokens=out.prompt_tokens + out.completion_tokens)
        await ctx.completed(usage=usage, text=text,
                            finish_reason=FinishReason.LENGTH if reason == "length" else FinishReason.STOP)

    # -- the engine, here or in its process ------------------------------------------------------

    def _submit(self, pending: _Pending) -> None:
        if self.remote is not None:
            self._queues[pending.request_id] = pending.outputs
            self.remote.add(pending.request_id, pending.prompt, pending.params)
            return
        self._adds.append(pending)
        self._wake.set()

    def _abort(self, request_id: str) -> None:
        if self.remote is not None:
            self.remote.abort(request_id)
            return
        self._aborts.append(request_id)
        self._wake.set()

    def _route(self, outputs: list[StepOutput], running: int) -> None:
        """One step's outputs to their jobs' queues (outputs of jobs that went away are dropped)."""
        self.steps += 1
        self.max_running = max(self.max_running, running)
        for out in outputs:  # hot loop: route each sequence's output once
            queue = self._queues.get(out.request_id)
            if queue is None:
                continue
            queue.put_nowait(out)
            if out.finished:
                del self._queues[out.request_id]

    async def _loop(self) -> None:
        engine = self.engine
        while True:
            self._apply_pending(engine)
            if not engine.has_unfinished():
                self._wake.clear()
                if not self._adds and not self._aborts:
                    await self._wake.wait()
                continue
            try:
                outputs = await asyncio.to_thread(engine.step)
            except Exception as exc:  # the engine itself broke: fail what it holds, keep serving
                log.exception("engine step failed")
                self._fail_all(f"{type(exc).__name__}: {exc}")
                continue
            self._route(outputs, engine.num_running())
            # let the jobs hand this step's tokens to the producer, and the producer write them,
            # before the next step's thread competes with them for the GIL
            for _ in range(_FLUSH_TURNS):
                await asyncio.sleep(0)

    def _apply_pending(self, engine: TextEngine) -> None:
        adds, self._adds = self._adds, []
        for pending in adds:
            try:
                engine.add_request(pending.request_id, pending.prompt, pending.params)
            except ValueError as exc:
                pending.outputs.put_nowait(StepOutput(
                    request_id=pending.request_id, text_delta="", token_ids=[], finished=True,
                    finish_reason="error", prompt_tokens=len(pending.prompt), completion_tokens=0,
                    error=str(exc)))
                continue
            self._queues[pending.request_id] = pending.outputs
        aborts, self._aborts = self._aborts, []
        for request_id in aborts:
            engine.abort(request_id)

    def _fail_all(self, error: str) -> None:
        for request_id, queue in list(self._queues.items()):
            self.engine.abort(request_id)
            queue.put_nowait(StepOutput(request_id=request_id, text_delta="", token_ids=[], finished=True,
                                        finish_reason="error", prompt_tokens=0, completion_tokens=0,
                                        error=error))
        self._queues.clear()


def create_handler() -> TextHandler:
    s = TextSettings()
    spec = TextModelSpec(model=s.model, revision=s.revision, dtype=s.dtype, device=s.device,
                         cache_dir=s.cache_dir)
    return TextHandler(spec, served_name=s.served_name, max_batch_size=s.max_batch_size,
                       max_batch_tokens=s.max_batch_tokens, max_prefill_tokens=s.max_prefill_tokens,
                       engine_process=s.engine_process, torch_threads=WorkerSettings().torch_threads)
