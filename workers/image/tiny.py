"""A tiny, randomly initialised Stable Diffusion pipeline built from configs.

No image weights ship in any package reachable here, so tests, benchmarks and the embedded
default use this pipeline. Its images are noise-like: it exercises the real diffusers code
path (text encoder, UNet, scheduler, VAE) at a tiny size, nothing more. Its folder carries
the ``RANDOM_WEIGHTS`` label, which ``load_pipeline`` reports in ``LoadedPipeline.weights``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from diffusers import DDIMScheduler, DiffusionPipeline, StableDiffusionPipeline

from workers.diffusion.pipeline import DEFAULT_CACHE_DIR, RANDOM_WEIGHTS, LoadedPipeline, load_pipeline, save_once
from workers.diffusion.tiny_parts import tiny_text_encoder, tiny_unet, tiny_vae
from workers.diffusion.tokenizer import build_tiny_tokenizer

#: Bump when the configs below change, so that cached folders are rebuilt.
TINY_SD_VERSION = 1
DEFAULT_TINY_SD_PATH = DEFAULT_CACHE_DIR / "tiny-sd"
def sd_scheduler() -> DDIMScheduler:
    """Stable Diffusion 1.x noise schedule; the engine swaps the solver per request."""
    return DDIMScheduler(
        beta_start=0.00085,
        beta_end=0.012,
        beta_schedule="scaled_linear",
        clip_sample=False,
        set_alpha_to_one=False,
        steps_offset=1,
    )


def _build(folder: Path, seed: int) -> None:
    with tempfile.TemporaryDirectory() as scratch, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        tokenizer = build_tiny_tokenizer(Path(scratch))
        pipe = StableDiffusionPipeline(
            vae=tiny_vae(),
            text_encoder=tiny_text_encoder(tokenizer),
            tokenizer=tokenizer,
            unet=tiny_unet(),
            scheduler=sd_scheduler(),
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
        pipe.save_pretrained(folder)


def build_tiny_pipeline(path: str | os.PathLike[str] = DEFAULT_TINY_SD_PATH, seed: int = 0) -> Path:
    """Build the tiny random pipeline into ``path`` once (atomically); returns the folder."""
    marker: dict[str, object] = {
        "weights": RANDOM_WEIGHTS,
        "builder": "tiny-sd",
        "version": TINY_SD_VERSION,
        "seed": seed,
    }
    return save_once(path, marker, lambda folder: _build(folder, seed))


def load_tiny_pipeline(
    path: str | os.PathLike[str] = DEFAULT_TINY_SD_PATH, seed: int = 0, device: str | None = None
) -> tuple[DiffusionPipeline, LoadedPipeline]:
    return load_pipeline(build_tiny_pipeline(path, seed), device)
