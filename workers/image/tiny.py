"""The tiny random Stable Diffusion pipeline (built by `infra.models.tiny`), loaded for the image worker."""

from __future__ import annotations

import os

from diffusers import DiffusionPipeline

from infra.models.tiny import DEFAULT_TINY_SD_PATH, build_tiny_pipeline
from workers.diffusion.pipeline import LoadedPipeline, load_pipeline


def load_tiny_pipeline(
    path: str | os.PathLike[str] = DEFAULT_TINY_SD_PATH, seed: int = 0, device: str | None = None
) -> tuple[DiffusionPipeline, LoadedPipeline]:
    return load_pipeline(build_tiny_pipeline(path, seed), device)
