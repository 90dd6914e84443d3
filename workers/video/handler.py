"""The video worker's handler: one long-running job at a time, progress per step, MP4 out.

``run(ctx)`` runs ``VideoEngine.generate`` in a thread; its per-step callback is relayed to the
event loop and becomes one progress event per step. A cancel is seen at the next step boundary,
both by ``run`` (which ends the job with ``cancelled``) and by the engine (which stops computing).
"""

from __future__ import annotations

import asyncio
import logging
import threading
from functools import partial
from dataclasses import dataclass


from infra.blob.base import BlobStore, artifact_key
from infra.blob.config import BlobSettings, blob_store
from infra.models.catalog import DEFAULT_VIDEO_MODEL, OTHER_VIDEO_FRAMES
from infra.models.digits import VIDEO_MODEL_DIR
from infra.models.settings import VideoSettings
from schemas import VideoRequest
from schemas.enums import ErrorCode, Modality
from schemas.events import ModelInfo, Usage
from workers.context import JobContext
from workers.errors import JobError
from workers.diffusion.handler import WARMUP_SIDE, PipelineLoader, native_side, random_seed, wire_model_info
from workers.diffusion.pipeline import load_pipeline
from workers.diffusion.steps import GenerationCancelled

from .encode import MIME_MP4, encode_mp4
from .engine import VideoEngine, VideoJob
from .validation import VideoLimits, validate_video_request

log = logging.getLogger(__name__)

#: frames of the one-step warm-up clip
WARMUP_FRAMES = 2


def pipeline_loader(model: str | None, device: str | None) -> PipelineLoader:
    """Load ``model`` offline; unset loads the video digit model trained here (models/digits-video)."""
    return partial(load_pipeline, model or VIDEO_MODEL_DIR, device)


@dataclass(frozen=True)
class VideoDefaults:
    """What a request that names no frames, steps or guidance gets."""

    frames: int = OTHER_VIDEO_FRAMES
    steps: int = 25
    guidance: float = 7.5

    @classmethod
    def resolve(cls, settings: VideoSettings, model: dict[str, object]) -> VideoDefaults:
        """The settings where set, else the model's own (from its folder), else AnimateDiff's."""
        base = cls()
        return cls(
            frames=settings.frames or int(model.get("frames", base.frames)),  # type: ignore[call-overload]
            steps=settings.steps or int(model.get("steps", base.steps)),  # type: ignore[call-overload]
            guidance=settings.guidance if settings.guidance is not None
            else float(model.get("guidance", base.guidance)),  # type: ignore[arg-type]
        )


class VideoHandler:
    modality = Modality.VIDEO

    def __init__(self, load: PipelineLoader, blobs: BlobStore, settings: VideoSettings) -> None:
        self._load = load
        self._blobs = blobs
        self._settings = settings
        self.max_concurrency = settings.max_concurrency
        self._engine: VideoEngine | None = None
        self._limits: VideoLimits | None = None
        self._native = 0
        self._defaults = VideoDefaults()
        #: generations still running in a thread (a job that left stops them within one step)
        self._generations: set[asyncio.Future] = set()

    @property
    def engine(self) -> VideoEngine:
        if self._engine is None:
            raise RuntimeError("the video handler is not started")
        return self._engine

    @property
    def model_info(self) -> ModelInfo:
        if self._engine is None:
            return ModelInfo(id=self._settings.model or DEFAULT_VIDEO_MODEL, device="unloaded",
                             dtype="unknown", random_weights=False)
        return wire_model_info(self._engine.model_info)

    async def start(self) -> None:
        await self._blobs.start()
        if self._engine is not None:
            return
        pipe, info = await asyncio.to_thread(self._load)
        s = self._settings
        self._native = native_side(pipe)
        self._limits = VideoLimits(max_side=s.max_side, max_steps=s.max_steps, max_frames=s.max_frames,
                                   max_fps=s.max_fps, vae_scale_factor=info.vae_scale_factor)
        self._engine = VideoEngine(pipe, info)
        self._defaults = VideoDefaults.resolve(s, info.defaults)
        warmup = VideoJob(job_id="warmup", prompt="warm up", seed=0, frames=WARMUP_FRAMES,
                          width=WARMUP_SIDE, height=WARMUP_SIDE, steps=1, guidance=self._defaults.guidance)
        await asyncio.to_thread(self._engine.generate, warmup)
        log.info("video model %s ready on %s (%s)", info.model_id, info.device, info.weights)

    async def stop(self) -> None:
        if self._generations:  # each stops at its next step: its job already left
            await asyncio.gather(*self._generations, return_exceptions=True)
        await self._blobs.stop()

    def resolve(self, request: VideoRequest, seed: int | None = None) -> VideoJob:
        """The request with the model's defaults filled in, checked against its limits."""
        if self._limits is None:
            raise RuntimeError("the video handler is not started")
        p, s, d = request.params, self._settings, self._defaults
        job = VideoJob(
            job_id=request.job_id,
            prompt=p.prompt,
            negative_prompt=p.negative_prompt or "",
            seed=p.seed if p.seed is not None else (seed if seed is not None else random_seed()),
            frames=p.frames or d.frames,
            fps=p.fps,
            width=p.width or s.width or self._native,
            height=p.height or s.height or self._native,
            steps=p.steps or d.steps,
            guidance=p.guidance if p.guidance is not None else d.guidance,
        )
        validate_video_request(job.width, job.height, job.steps, job.frames, job.fps, self._limits)
        return job

    def check(self, request: VideoRequest) -> None:
        self.resolve(request, seed=0)

    async def run(self, ctx: JobContext) -> None:
        job = self.resolve(ctx.request)
        loop = asyncio.get_running_loop()
        steps: asyncio.Queue[tuple[int, int] | None] = asyncio.Queue()
        left = threading.Event()

        def on_step(done: int, total: int) -> None:
            # Called from the generation thread once per denoising step (hot loop).
            loop.call_soon_threadsafe(steps.put_nowait, (done, total))

        def should_stop() -> bool:
            return ctx.cancelled or left.is_set()

        generation = asyncio.ensure_future(asyncio.to_thread(self.engine.generate, job, on_step, should_stop))
        self._generations.add(generation)
        generation.add_done_callback(self._generations.discard)
        # Queued after every step the thread reported, since those were scheduled first.
        generation.add_done_callback(lambda _: steps.put_nowait(None))
        try:
            while (step := await steps.get()) is not None:
                ctx.checkpoint()
                await ctx.progress(*step, stage="denoise")
            frames = await generation
        except GenerationCancelled:
            ctx.checkpoint()  # raises JobCancelled with the cancel's reason
            raise JobError(ErrorCode.GENERATION_ERROR, "generation stopped early; resubmit the job",
                           retryable=True) from None
        finally:
            left.set()
            if not generation.done():  # the job left mid-run: collect the thread's outcome quietly
                generation.add_done_callback(lambda g: g.cancelled() or g.exception())
        ctx.checkpoint()
        body = await asyncio.to_thread(encode_mp4, frames, job.fps)
        ref = await self._blobs.put(artifact_key(ctx.request.tenant, ctx.job_id, "video.mp4"), body, MIME_MP4)
        height, width = frames[0].shape[:2]
        match = await asyncio.to_thread(self.engine.prompt_match, job.prompt)
        await ctx.artifact(index=0, uri=ref.uri, mime_type=ref.mime, bytes=ref.bytes, sha256=ref.sha256,
                           width=width, height=height, frames=len(frames),
                           duration_s=round(len(frames) / job.fps, 6), prompt_match=match)
        await ctx.completed(usage=Usage(frames=len(frames), steps=job.steps))


def create_handler() -> VideoHandler:
    settings = VideoSettings()
    load = pipeline_loader(settings.model, settings.device)
    return VideoHandler(load, blob_store(BlobSettings()), settings)
