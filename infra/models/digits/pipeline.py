"""The digit model as a diffusers pipeline, so the image engine serves it like any other.

It takes the engine's arguments (prompts, negative prompts, size, steps, guidance, generators,
step callback) and always draws at the model's 16x16; another requested size is the drawing
resized, because the model knows no other. `prompt_match` says how well a prompt matches the
captions the model was trained on; a prompt outside them still gets an image.

A distilled model (a folder with `distilled.json`, written by `genloom train distill`) samples on the
grid it was distilled for when asked for that many steps: conditional only, one UNet call a step,
its teacher's guidance built in (the request's guidance and negative prompt do not apply there).
Asked for another step count, it samples like any other model.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from diffusers import DDIMScheduler, DiffusionPipeline, UNet2DConditionModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from diffusers.utils.torch_utils import randn_tensor
from PIL import Image

from .data import SIDE
from .distill import DISTILLED_FILE, sample_on_grid
from .model import CaptionMatch, TextConditioner


class DigitsPipeline(DiffusionPipeline):
    #: pixel-space model: one pixel per UNet cell (the engine reads this for sizes)
    vae_scale_factor = 1

    def __init__(self, unet: UNet2DConditionModel, scheduler: DDIMScheduler,
                 text: TextConditioner | None = None, distilled: dict | None = None) -> None:
        super().__init__()
        self.register_modules(unet=unet, scheduler=scheduler)
        self.text = text or TextConditioner.default()
        self.distilled = distilled  #: the distilled sampler's record (steps, timesteps), or None
        self._num_timesteps = 0

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], text: TextConditioner | None = None) -> DigitsPipeline:
        folder = Path(folder)
        unet = UNet2DConditionModel.from_pretrained(folder / "unet", local_files_only=True)
        scheduler = DDIMScheduler.from_pretrained(folder / "scheduler", local_files_only=True)
        record = folder / DISTILLED_FILE
        distilled = json.loads(record.read_text()) if record.is_file() else None
        return cls(unet.eval(), scheduler, text, distilled)

    @property
    def num_timesteps(self) -> int:
        return self._num_timesteps

    def prompt_match(self, prompt: str) -> CaptionMatch:
        return self.text.match(prompt)

    @torch.no_grad()
    def sample(self, prompts: list[str], negative_prompts: list[str] | None = None, steps: int = 25,
               guidance: float = 2.0, generator: list[torch.Generator] | torch.Generator | None = None,
               callback_on_step_end: Any = None, context: torch.Tensor | None = None) -> torch.Tensor:
        """(B, C, 16, 16) in [0, 1]: C is 1 for images, the frame count for clips. ``context``:
        (B, K, 16, 16) conditioning images in [-1, 1] for a model trained with them (the video
        model's keyframe), concatenated to the noisy pixels at every step, in both guidance halves."""
        batch = len(prompts)
        if self.distilled is not None and steps == self.distilled["steps"]:
            return self._sample_distilled(prompts, generator, callback_on_step_end)
        cond = self.text.encode(prompts)
        uncond = self.text.encode(negative_prompts or [""] * batch)
        tokens = torch.cat([uncond, cond]).to(self.unet.device, self.unet.dtype)
        x = randn_tensor((batch, self.unet.config.out_channels, SIDE, SIDE), generator=generator, device=self.unet.device, dtype=self.unet.dtype)
        extra = None if context is None else torch.cat([context, context]).to(self.unet.device, self.unet.dtype)
        self.scheduler.set_timesteps(steps)
        timesteps = self.scheduler.timesteps
        self._num_timesteps = len(timesteps)
        x = x * self.scheduler.init_noise_sigma
        # Hot loop: one UNet call per step for the conditional and unconditional halves together.
        for i, t in enumerate(timesteps):
            x_in = self.scheduler.scale_model_input(torch.cat([x, x]), t)
            if extra is not None:
                x_in = torch.cat([x_in, extra], 1)
            eps_u, eps_c = self.unet(x_in, t, tokens).sample.chunk(2)
            eps = eps_u + guidance * (eps_c - eps_u)
            x = self.scheduler.step(eps, t, x).prev_sample
            if callback_on_step_end is not None:
                callback_on_step_end(self, i, t, {})
        return ((x.clamp(-1, 1) + 1) / 2).float().cpu()

    def _sample_distilled(self, prompts: list[str], generator: Any, callback: Any) -> torch.Tensor:
        tokens = self.text.encode(prompts).to(self.unet.device, self.unet.dtype)
        x = randn_tensor((len(prompts), self.unet.config.out_channels, SIDE, SIDE), generator=generator,
                         device=self.unet.device, dtype=self.unet.dtype)
        timesteps = list(self.distilled["timesteps"])
        self._num_timesteps = len(timesteps)
        on_step = None if callback is None else (lambda i, t: callback(self, i, t, {}))
        x = sample_on_grid(self.unet, tokens, x, timesteps, on_step=on_step)
        return ((x.clamp(-1, 1) + 1) / 2).float().cpu()

    def __call__(self, prompt: str | list[str], negative_prompt: str | list[str] | None = None,
                 width: int | None = None, height: int | None = None, num_inference_steps: int = 25,
                 guidance_scale: float = 2.0, generator: list[torch.Generator] | torch.Generator | None = None,
                 output_type: str = "pil", callback_on_step_end: Any = None, **_: Any) -> ImagePipelineOutput:
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        negatives = [negative_prompt] * len(prompts) if isinstance(negative_prompt, str) else negative_prompt
        pixels = self.sample(prompts, negatives, num_inference_steps, guidance_scale, generator, callback_on_step_end)
        if output_type == "pt":
            return ImagePipelineOutput(images=pixels)
        size = (width or SIDE, height or SIDE)
        images = []
        for row in (pixels[:, 0].numpy() * 255).round().astype(np.uint8):
            image = Image.fromarray(row, mode="L").convert("RGB")
            images.append(image if image.size == size else image.resize(size, Image.Resampling.BILINEAR))
        return ImagePipelineOutput(images=images)
