"""The image worker's handler: jobs of one shape batched into one pipeline call.

``run(ctx)`` resolves the request against the model's defaults and limits, queues the job in a
``BucketBatcher`` keyed by ``ImageJob.batch_key`` and waits. One batch loop (started in
``start()``) pops ready buckets and runs ``ImageEngine.generate`` in a thread; its per-step
callback feeds every job of the batch, whose own ``run`` turns the steps into progress events,
so each job emits its events in order. A cancel removes a queued job at once; a job already
inside a running batch leaves it at the next step boundary while the batch goes on for the
others (the pipeline stops early only when every job of the batch has left).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from enum import StrEnum
from functools import partial

from PIL import Image

from infra.blob.base import BlobStore, artifact_key
from infra.blob.config import BlobSettings, blob_store
from infra.models.digits import IMAGE_MODEL_DIR
from infra.models.settings import ImageSettings
from schemas import ImageRequest
from schemas.enums import ErrorCode, ImageScheduler, Modality
from schemas.events import ModelInfo, Usage
from workers.batching import BucketBatcher
from workers.context import JobContext
from workers.errors import JobError

from workers.diffusion.handler import (
    WARMUP_SIDE,
    PipelineLoader,
    batch_error,
    native_side,
    random_seed,
    wire_model_info,
)
from workers.diffusion.pipeline import load_pipeline
from workers.diffusion.steps import GenerationCancelled

from .engine import ImageBatchKey, ImageEngine, ImageJob
from .png import MIME_PNG, encode_png
from .validation import ImageLimits, validate_image_request

log = logging.getLogger(__name__)

#: batches remembered in ``recent_batches`` (job ids per pipeline call, for tests and metrics)
RECENT_BATCHES = 256
def pipeline_loader(model: str | None, device: str | None) -> PipelineLoader:
    """Load ``model`` offline; unset loads the digit model trained here (models/digits-image)."""
    return partial(load_pipeline, model or IMAGE_MODEL_DIR, device)


@dataclass(frozen=True)
class ImageDefaults:
    """What a request that names no steps, guidance or scheduler gets."""

    steps: int = 30
    guidance: float = 7.0
    scheduler: ImageScheduler = ImageScheduler.DPM_SOLVER

    @classmethod
    def resolve(cls, settings: ImageSettings, model: dict[str, object]) -> ImageDefaults:
        """The settings where set, else the model's own (from its folder), else Stable Diffusion's."""
        base = cls()
        return cls(
            steps=settings.steps or int(model.get("steps", base.steps)),
            guidance=settings.guidance if settings.guidance is not None else float(model.get("guidance", base.guidance)),
            scheduler=settings.scheduler or ImageScheduler(model.get("scheduler", base.scheduler)),
        )


@dataclass(frozen=True)
class _Step:
    done: int
    total: int


@dataclass(frozen=True)
class _Done:
    images: list[Image.Image]


@dataclass(frozen=True)
class _Failure:
    error: JobError


_Update = _Step | _Done | _Failure


class _State(StrEnum):
    #: in the batcher
    QUEUED = "queued"
    #: popped with its batch, waiting for the engine
    READY = "ready"
    #: inside the pipeline call
    RUNNING = "running"
    #: its outcome is queued for its run()
    DONE = "done"


@dataclass(eq=False)
class _Entry:
    """One job between ``run`` and the batch loop."""

    ctx: JobContext
    job: ImageJob
    updates: asyncio.Queue[_Update] = field(default_factory=asyncio.Queue)
    state: _State = _State.QUEUED
    #: its ``run`` ended (cancelled, or the runner dropped it): the batch stops feeding it
    left: bool = False


class ImageHandler:
    modality = Modality.IMAGE

    def __init__(self, load: PipelineLoader, blobs: BlobStore, settings: ImageSettings) -> None:
        self._load = load
        self._blobs = blobs
        self._settings = settings
        self.max_concurrency = 2 * settings.max_batch_size  # a batch running and one filling
        self._batcher: BucketBatcher[ImageBatchKey, _Entry] = BucketBatcher(
            settings.max_batch_size, settings.max_wait_ms / 1000)
        self._ready: deque[list[_Entry]] = deque()
        self._wake = asyncio.Event()
        self._stopping = False
        self._loop_task: asyncio.Task | None = None
        self._engine: ImageEngine | None = None
        self._limits: ImageLimits | None = None
        self._native = 0
        self._defaults = ImageDefaults.resolve(settings, {})
        self.batches_run = 0
        #: job ids of each recent pipeline call, oldest first
        self.recent_batches: deque[tuple[str, ...]] = deque(maxlen=RECENT_BATCHES)

    @property
    def engine(self) -> ImageEngine:
        if self._engine is None:
            raise RuntimeError("the image handler is not started")
        return self._engine

    @property
    def model_info(self) -> ModelInfo:
        if self._engine is None:
            return ModelInfo(id=self._settings.model or str(IMAGE_MODEL_DIR), device="unloaded", dtype="unknown",
                             random_weights=False)
        return wire_model_info(self._engine.model_info)

    # -- lifecycle -----------------------------------------------------------------------------

    async def start(self) -> None:
        await self._blobs.start()
        if self._engine is None:
            pipe, info = await asyncio.to_thread(self._load)
            self._native = native_side(pipe)
            self._limits = ImageLimits(max_side=self._settings.max_side, max_steps=self._settings.max_steps,
                                       max_n=self._settings.max_n, vae_scale_factor=info.vae_scale_factor)
            self._engine = ImageEngine(pipe, info)
            self._defaults = ImageDefaults.resolve(self._settings, info.defaults)
            warmup = ImageJob(job_id="warmup", prompt="warm up", seed=0, width=WARMUP_SIDE,
                              height=WARMUP_SIDE, steps=1, guidance=self._defaults.guidance,
                              scheduler=self._defaults.scheduler.value)
            await asyncio.to_thread(self._engine.generate, [warmup])
            log.info("image model %s ready on %s (%s)", info.model_id, info.device, info.weights)
        self._stopping = False
        self._loop_task = asyncio.create_task(self._batch_loop())

    async def stop(self) -> None:
        self._stopping = True  # a running batch stops at its next step
        self._wake.set()
        if self._loop_task is not None:
            await asyncio.gather(self._loop_task, return_exceptions=True)
            self._loop_task = None
        await self._blobs.stop()

    # -- requests ------------------------------------------------------------------------------

    def resolve(self, request: ImageRequest, seed: int | None = None) -> ImageJob:
        """The request with the model's defaults filled in, checked against its limits."""
        if self._limits is None:
            raise RuntimeError("the image handler is not started")
        p, s, d = request.params, self._settings, self._defaults
        job = ImageJob(
            job_id=request.job_id,
            prompt=p.prompt,
            negative_prompt=p.negative_prompt or "",
            seed=p.seed if p.seed is not None else (seed if seed is not None else random_seed()),
            width=p.width or s.width or self._native,
            height=p.height or s.height or self._native,
            steps=p.steps or d.steps,
            guidance=p.guidance if p.guidance is not None else d.guidance,
            scheduler=(p.scheduler or d.scheduler).value,
            n=p.n,
        )
        validate_image_request(job.width, job.height, job.steps, job.n, job.scheduler, self._limits)
        return job

    def check(self, request: ImageRequest) -> None:
        self.resolve(request, seed=0)

    async def run(self, ctx: JobContext) -> None:
        entry = _Entry(ctx, self.resolve(ctx.request))
        self._batcher.add(entry.job.batch_key, entry, time.monotonic())
        self._wake.set()
        try:
            images = await self._follow(entry)
        finally:
            entry.left = True
            if entry.state == _State.QUEUED:
                self._batcher.remove(lambda e: e is entry)
        await self._publish(ctx, entry.job, images)

    async def _follow(self, entry: _Entry) -> list[Image.Image]:
        """Relay the batch's steps as this job's progress until its images arrive."""
        ctx = entry.ctx
        while True:
            if entry.state in (_State.QUEUED, _State.READY):
                ctx.checkpoint()  # not generating yet: a cancel ends the job at once
                update = await self._update_or_cancel(entry)
                if update is None:
                    continue
            else:
                update = await entry.updates.get()
            match update:
                case _Step(done=done, total=total):
                    ctx.checkpoint()  # inside a batch: leave it at this step boundary
                    await ctx.progress(done, total, stage="denoise")
                case _Done(images=images):
                    ctx.checkpoint()
                    return images
                case _Failure(error=error):
                    raise error

    @staticmethod
    async def _update_or_cancel(entry: _Entry) -> _Update | None:
        """The next update, or None as soon as a cancel arrives."""
        get = asyncio.ensure_future(entry.updates.get())
        cancel = asyncio.ensure_future(entry.ctx.wait_cancelled())
        try:
            await asyncio.wait({get, cancel}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            cancel.cancel()
            if not get.done():
                get.cancel()
        return get.result() if get.done() and not get.cancelled() else None

    async def _publish(self, ctx: JobContext, job: ImageJob, images: list[Image.Image]) -> None:
        match = await asyncio.to_thread(self.engine.prompt_match, job.prompt)
        for i, image in enumerate(images):
            body = await asyncio.to_thread(encode_png, image)
            ref = await self._blobs.put(artifact_key(ctx.request.tenant, ctx.job_id, f"image-{i}.png"),
                                        body, MIME_PNG)
            await ctx.artifact(index=i, uri=ref.uri, mime_type=ref.mime, bytes=ref.bytes, sha256=ref.sha256,
                               width=image.width, height=image.height, prompt_match=match)
        await ctx.completed(usage=Usage(images=len(images), steps=job.steps))

    # -- the batch loop ------------------------------------------------------------------------

    async def _batch_loop(self) -> None:
        while not self._stopping:
            if not self._ready:
                for _, entries in self._batcher.pop_ready(time.monotonic()):
                    for entry in entries:
                        entry.state = _State.READY
                    self._ready.append(entries)
            if self._ready:
                await self._run_batch(self._ready.popleft())
                continue
            deadline = self._batcher.next_deadline()
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            self._wake.clear()
            try:
                await asyncio.wait_for(self._wake.wait(), timeout)
            except TimeoutError:
                pass
        stopped = _Failure(JobError(ErrorCode.GENERATION_ERROR, "the image worker stopped", retryable=True))
        for entries in self._ready:
            for entry in entries:
                entry.updates.put_nowait(stopped)
        self._ready.clear()

    async def _run_batch(self, entries: list[_Entry]) -> None:
        batch = [e for e in entries if not e.left]
        if not batch:
            return
        for entry in batch:
            entry.state = _State.RUNNING
        loop = asyncio.get_running_loop()

        def on_step(done: int, total: int) -> None:
            # Called from the generation thread once per denoising step (hot loop): one pass.
            for e in batch:
                if not e.left:
                    loop.call_soon_threadsafe(e.updates.put_nowait, _Step(done, total))

        def should_stop() -> bool:
            return self._stopping or all(e.left for e in batch)

        outcomes: list[_Update]
        try:
            results = await asyncio.to_thread(self.engine.generate, [e.job for e in batch], on_step, should_stop)
            outcomes = [_Done(images) for images in results]
        except GenerationCancelled:
            outcomes = [_Failure(JobError(ErrorCode.GENERATION_ERROR, "the image worker stopped during "
                                          "generation; resubmit the job", retryable=True))] * len(batch)
        except JobError as exc:
            outcomes = [_Failure(exc)] * len(batch)
        except Exception as exc:  # the pipeline failed: fail this batch, keep serving
            log.exception("image batch of %d job(s) failed", len(batch))
            outcomes = [_Failure(batch_error(exc, len(batch)))] * len(batch)
        self.batches_run += 1
        self.recent_batches.append(tuple(e.job.job_id for e in batch))
        # Steps were queued from the thread before generate() returned, so they come first.
        for entry, outcome in zip(batch, outcomes):
            entry.state = _State.DONE
            entry.updates.put_nowait(outcome)


def create_handler() -> ImageHandler:
    settings = ImageSettings()
    load = pipeline_loader(settings.model, settings.device)
    return ImageHandler(load, blob_store(BlobSettings()), settings)
