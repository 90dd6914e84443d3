"""The text worker's handler: every job in flight shares one continuous-batching engine.

The handler talks to its engine through one `EngineClient` (engine_client.py), chosen when it
is built: in a child process of its own (`engine_process=True`, what `python -m workers text`
does by default; engine_process.py) or in this process (engine_thread.py). Each step's outputs
are routed to the jobs' own queues.
"""

from __future__ import annotations

import asyncio

from infra.models.context import ContextLengthExceeded, check_context
from infra.models.loader import TextModelSpec
from infra.models.settings import TextSettings
from infra.settings.worker import WorkerSettings
from schemas import TextRequest
from schemas.enums import ErrorCode, Modality
from schemas.events import ModelInfo, Usage
from workers.context import JobContext
from workers.errors import JobCancelled, JobError

from .engine_client import EngineClient, ServedModel
from .engine_process import EngineProcess
from .engine_thread import InProcessEngine
from .sampling import SamplingParams
from .sequence import StepOutput


class TextHandler:
    modality = Modality.TEXT

    def __init__(self, spec: TextModelSpec, *, served_name: str, max_batch_size: int = 16,
                 max_batch_tokens: int = 8192, max_prefill_tokens: int = 2048, engine_process: bool = False,
                 torch_threads: int = 0) -> None:
        self.served_name = served_name
        self.max_concurrency = max_batch_size * 2  # a batch running and one waiting to join
        engine_args = dict(max_batch_size=max_batch_size, max_batch_tokens=max_batch_tokens,
                           max_prefill_tokens=max_prefill_tokens)
        self.engine: EngineClient = (
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
                         device=str(self.loaded.device), dtype=str(self.loaded.dtype).removeprefix("torch."))

    async def start(self) -> None:
        self.loaded = await self.engine.start()

    async def stop(self) -> None:
        await self.engine.stop()

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
        self._queues[request_id] = outputs
        self.engine.add(request_id, prompt, params)
        text: list[str] = []
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
                    await ctx.token(out.text_delta, len(out.token_ids))
                if out.finished:
                    finished = True
                    return await self._finish(ctx, out, "".join(text))
        finally:
            cancel_wait.cancel()
            if not finished:  # cancelled, moved to another worker, or failed: the engine stops too
                self._queues.pop(request_id, None)
                self.engine.abort(request_id)

    async def _finish(self, ctx: JobContext, out: StepOutput, text: str) -> None:
        if out.aborted:
            raise JobCancelled("cancelled")
        if out.error is not None:
            raise JobError(ErrorCode.GENERATION_ERROR, f"generation failed: {out.error}", retryable=True)
        usage = Usage(prompt_tokens=out.prompt_tokens, completion_tokens=out.completion_tokens,
                      total_tokens=out.prompt_tokens + out.completion_tokens)
        await ctx.completed(usage=usage, text=text, finish_reason=out.finish_reason)

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


def create_handler() -> TextHandler:
    s = TextSettings()
    spec = TextModelSpec(model=s.model, revision=s.revision, dtype=s.dtype, device=s.device,
                         cache_dir=s.cache_dir)
    return TextHandler(spec, served_name=s.served_name, max_batch_size=s.max_batch_size,
                       max_batch_tokens=s.max_batch_tokens, max_prefill_tokens=s.max_prefill_tokens,
                       engine_process=s.engine_process, torch_threads=WorkerSettings().torch_threads)
