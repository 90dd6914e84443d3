"""The pure text-to-image engine: one batch of same-shape jobs in, images out.

No broker, no clock: the runner groups jobs by ``ImageJob.batch_key`` (see
``workers.batching.BucketBatcher``), calls ``generate`` in a worker thread, and maps the
callbacks to progress events and cancellation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from diffusers import (
    DDIMScheduler,
    DiffusionPipeline,
    DPMSolverMultistepScheduler,
    FlowMatchEulerDiscreteScheduler,
)
from diffusers.schedulers.scheduling_utils import SchedulerMixin
from PIL import Image

from schemas.enums import ErrorCode
from schemas.events import PromptMatch
from workers.diffusion.pipeline import LoadedPipeline, prompt_match
from workers.diffusion.steps import OnStep, ShouldStop, check_stop, step_callback
from workers.errors import JobError

#: Seed design for text-to-image in production (needs a download and a GPU).
PRODUCTION_IMAGE_MODEL_ID = "stabilityai/stable-diffusion-3.5-large"


class ImageBatchKey(NamedTuple):
    width: int
    height: int
    steps: int
    scheduler: str
    guidance: float


@dataclass(frozen=True)
class ImageJob:
    job_id: str
    prompt: str
    seed: int  #: image i of the job uses seed + i
    negative_prompt: str = ""
    width: int = 512
    height: int = 512
    steps: int = 30
    guidance: float = 7.0
    scheduler: str = "dpm-solver"
    n: int = 1

    @property
    def batch_key(self) -> ImageBatchKey:
        """Jobs with equal keys run in one pipeline call."""
        return ImageBatchKey(self.width, self.height, self.steps, self.scheduler, self.guidance)


def make_scheduler(name: str, base: SchedulerMixin) -> SchedulerMixin:
    """Build the named solver from the pipeline's own scheduler and its noise-schedule config."""
    base_config = base.config
    flow = isinstance(base, FlowMatchEulerDiscreteScheduler)
    if name == "dpm-solver":
        if flow:  # SD3-family models are flow-matching: keep their sigmas and shift
            return DPMSolverMultistepScheduler.from_config(
                base_config,
                use_flow_sigmas=True,
                prediction_type="flow_prediction",
                flow_shift=base_config.get("shift", 1.0),
            )
        return DPMSolverMultistepScheduler.from_config(base_config)
    if name == "ddim":
        if flow:
            raise JobError(ErrorCode.UNKNOWN_SCHEDULER, "ddim is not available for flow-matching models")
        return DDIMScheduler.from_config(base_config)
    raise JobError(ErrorCode.UNKNOWN_SCHEDULER, f"unknown scheduler {name!r}")


class ImageEngine:
    def __init__(self, pipe: DiffusionPipeline, model_info: LoadedPipeline) -> None:
        self._pipe = pipe
        self.model_info = model_info
        self._base_scheduler: SchedulerMixin = pipe.scheduler
        self._schedulers: dict[str, SchedulerMixin] = {}

    def _scheduler(self, name: str) -> SchedulerMixin:
        if name not in self._schedulers:
            self._schedulers[name] = make_scheduler(name, self._base_scheduler)
        return self._schedulers[name]

    def prompt_match(self, prompt: str) -> PromptMatch | None:
        """`workers.diffusion.pipeline.prompt_match` of this engine's model."""
        return prompt_match(self._pipe, prompt)

    def generate(
        self,
        batch: list[ImageJob],
        on_step: OnStep | None = None,
        should_stop: ShouldStop | None = None,
    ) -> list[list[Image.Image]]:
        """Run one pipeline call for ``batch``; returns each job's ``n`` images, in order.

        ``on_step(done, total)`` is called after every denoising step; ``should_stop`` is
        polled before the first step and after each one, and raises ``GenerationCancelled``.
        One call at a time: the engine sets the pipeline's scheduler for each call.
        """
        if not batch:
            return []
        key = batch[0].batch_key
        mixed = [j.job_id for j in batch if j.batch_key != key]
        if mixed:
            raise ValueError(f"jobs {mixed} do not share the batch key {key}")
        prompts: list[str] = []
        negatives: list[str] = []
        generators: list[torch.Generator] = []
        for job in batch:
            for i in range(job.n):
                prompts.append(job.prompt)
                negatives.append(job.negative_prompt)
                # CPU generators give the same noise on every device and at every batch size.
                generators.append(torch.Generator("cpu").manual_seed(job.seed + i))
        self._pipe.scheduler = self._scheduler(key.scheduler)
        check_stop(should_stop)
        step_end = step_callback(on_step, should_stop)

        with torch.inference_mode():
            out = self._pipe(
                prompt=prompts,
                negative_prompt=negatives,
                width=key.width,
                height=key.height,
                num_inference_steps=key.steps,
                guidance_scale=key.guidance,
                generator=generators,
                output_type="pil",
                callback_on_step_end=step_end,
            )
        images: list[Image.Image] = out.images
        result: list[list[Image.Image]] = []
        start = 0
        for job in batch:
            result.append(images[start : start + job.n])
            start += job.n
        return result
