"""Video pipelines: the production profile and a tiny random AnimateDiff pipeline.

The tiny pipeline reuses the tiny Stable Diffusion parts (tokenizer, text encoder, VAE)
and adds a MotionAdapter whose temporal attention mixes frames. Its weights are random
and its folder is labelled ``RANDOM_WEIGHTS``; it exists to run the real code path.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from diffusers import AnimateDiffPipeline, DDIMScheduler, DiffusionPipeline, MotionAdapter

from workers.diffusion.pipeline import DEFAULT_CACHE_DIR, RANDOM_WEIGHTS, LoadedPipeline, load_pipeline, save_once
from workers.diffusion.tiny_parts import tiny_text_encoder, tiny_unet, tiny_vae
from workers.diffusion.tokenizer import build_tiny_tokenizer

#: Seed design for text-to-video in production (needs a download and a large GPU).
PRODUCTION_VIDEO_MODEL_ID = "genmo/mochi-1-preview"

#: Bump when the configs below change, so that cached folders are rebuilt.
TINY_VIDEO_VERSION = 1
DEFAULT_TINY_VIDEO_PATH = DEFAULT_CACHE_DIR / "tiny-animatediff"


def tiny_motion_adapter() -> MotionAdapter:
    # Channels and layers match tiny_unet(); max_seq_length bounds the frame count.
    return MotionAdapter(
        block_out_channels=(16, 32),
        motion_layers_per_block=1,
        motion_num_attention_heads=2,
        motion_norm_num_groups=4,
        motion_max_seq_length=32,
        use_motion_mid_block=False,
    )


def animatediff_scheduler() -> DDIMScheduler:
    """AnimateDiff's usual schedule: linear betas, no sample clipping."""
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="linear",
        clip_sample=False,
        steps_offset=1,
        timestep_spacing="linspace",
    )


def _build(folder: Path, seed: int) -> None:
    with tempfile.TemporaryDirectory() as scratch, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = build_tiny_tokenizer(Path(scratch))
        pipe = AnimateDiffPipeline(
            vae=tiny_vae(),
            text_encoder=tiny_text_encoder(tokenizer),
            tokenizer=tokenizer,
            unet=tiny_unet(),
            motion_adapter=tiny_motion_adapter(),
            scheduler=animatediff_scheduler(),
        )
        pipe.save_pretrained(folder)


def build_tiny_video_pipeline(
    path: str | os.PathLike[str] = DEFAULT_TINY_VIDEO_PATH, seed: int = 0
) -> Path:
    """Build the tiny random video pipeline into ``path`` once (atomically); returns the folder."""
    marker: dict[str, object] = {
        "weights": RANDOM_WEIGHTS,
        "builder": "tiny-animatediff",
        "version": TINY_VIDEO_VERSION,
        "seed": seed,
    }
    return save_once(path, marker, lambda folder: _build(folder, seed))


def load_tiny_video_pipeline(
    path: str | os.PathLike[str] = DEFAULT_TINY_VIDEO_PATH, seed: int = 0, device: str | None = None
) -> tuple[DiffusionPipeline, LoadedPipeline]:
    return load_pipeline(build_tiny_video_pipeline(path, seed), device)
