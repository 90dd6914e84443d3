"""Video pipelines: the production profile, and the tiny random AnimateDiff pipeline (built by
`infra.models.tiny`) loaded for the video worker."""

from __future__ import annotations

import os

from diffusers import DiffusionPipeline

from infra.models.tiny import DEFAULT_TINY_VIDEO_PATH, build_tiny_video_pipeline
from workers.diffusion.pipeline import LoadedPipeline, load_pipeline

#: Seed design for text-to-video in production (needs a download and a large GPU).
PRODUCTION_VIDEO_MODEL_ID = "genmo/mochi-1-preview"


def load_tiny_video_pipeline(
    path: str | os.PathLike[str] = DEFAULT_TINY_VIDEO_PATH, seed: int = 0, device: str | None = None
) -> tuple[DiffusionPipeline, LoadedPipeline]:
    return load_pipeline(build_tiny_video_pipeline(path, seed), device)
