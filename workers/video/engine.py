"""The pure text-to-video engine: one long-running job at a time, frames out.

The runner calls ``generate`` in a worker thread; ``on_step`` becomes progress events and
``should_stop`` (a cancel flag) is polled after every step, so a cancel lands within one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DiffusionPipeline

from schemas.events import PromptMatch
from workers.diffusion.pipeline import LoadedPipeline, prompt_match
from workers.diffusion.steps import OnStep, ShouldStop, check_stop, step_callback

@dataclass(frozen=True)
class VideoJob:
    job_id: str
    prompt: str
    seed: int
    frames: int = 16
    fps: int = 8
    width: int = 512
    height: int = 512
    steps: int = 25
    guidance: float = 7.5
    negative_prompt: str = ""


def to_uint8_frames(video: np.ndarray) -> list[np.ndarray]:
    """(frames, H, W, C) floats in [0, 1] -> a list of (H, W, 3) uint8 frames."""
    scaled = np.clip(np.rint(video * 255.0), 0, 255).astype(np.uint8)
    return list(scaled)


class VideoEngine:
    def __init__(self, pipe: DiffusionPipeline, model_info: LoadedPipeline) -> None:
        self._pipe = pipe
        self.model_info = model_info

    def prompt_match(self, prompt: str) -> PromptMatch | None:
        """`workers.diffusion.pipeline.prompt_match` of this engine's model."""
        return prompt_match(self._pipe, prompt)

    def generate(
        self,
        job: VideoJob,
        on_step: OnStep | None = None,
        should_stop: ShouldStop | None = None,
    ) -> list[np.ndarray]:
        """Generate ``job``'s frames as (H, W, 3) uint8 arrays.

        Raises ``GenerationCancelled`` when ``should_stop`` returns true, checked before the
        first step and after each one.
        """
        check_stop(should_stop)
        step_end = step_callback(on_step, should_stop)

        with torch.inference_mode():
            out = self._pipe(
                prompt=job.prompt,
                negative_prompt=job.negative_prompt,
                num_frames=job.frames,
                width=job.width,
                height=job.height,
                num_inference_steps=job.steps,
                guidance_scale=job.guidance,
                generator=torch.Generator("cpu").manual_seed(job.seed),
                output_type="np",
                callback_on_step_end=step_end,
            )
        return to_uint8_frames(np.asarray(out.frames[0]))
