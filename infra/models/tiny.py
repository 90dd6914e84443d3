"""Tiny, randomly initialised diffusion pipelines built from configs (needs the `media` extra).

No image or video weights ship in any package reachable here, so tests, benchmarks and the
embedded default use these pipelines. Their output is noise-like: they exercise the real diffusers
code path (text encoder, UNet, scheduler, VAE; a motion adapter for video) at a tiny size, nothing
more. Their folders carry the ``RANDOM_WEIGHTS`` label, which the workers' loader reports.

`genloom up` builds them before it starts the image and video workers, which load them.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch
from diffusers import (
    AnimateDiffPipeline,
    AutoencoderKL,
    DDIMScheduler,
    MotionAdapter,
    StableDiffusionPipeline,
    UNet2DConditionModel,
)
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from .storage import DEFAULT_CACHE_DIR, RANDOM_WEIGHTS, save_once
from .tiny_tokenizer import BOS, EOS, MAX_LENGTH, build_tiny_tokenizer

# -- Stable Diffusion (image) ---------------------------------------------------------------------

#: Bump when the configs below change, so that cached folders are rebuilt.
TINY_SD_VERSION = 1
DEFAULT_TINY_SD_PATH = DEFAULT_CACHE_DIR / "tiny-sd"
#: Width of the text embeddings, shared by the text encoder and UNet cross-attention.
TEXT_DIM = 32


def tiny_text_encoder(tokenizer: CLIPTokenizer) -> CLIPTextModel:
    vocab = tokenizer.get_vocab()
    config = CLIPTextConfig(
        vocab_size=len(vocab),
        hidden_size=TEXT_DIM,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=MAX_LENGTH,
        bos_token_id=vocab[BOS],
        eos_token_id=vocab[EOS],
        pad_token_id=vocab[EOS],
    )
    return CLIPTextModel(config)


def tiny_vae() -> AutoencoderKL:
    # Four resolution levels give the usual VAE scale factor of 8 (64x64 pixels -> 8x8 latents).
    return AutoencoderKL(
        in_channels=3,
        out_channels=3,
        down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4,
        block_out_channels=(8, 16, 16, 16),
        layers_per_block=1,
        latent_channels=4,
        norm_num_groups=4,
        sample_size=64,
    )


def tiny_unet() -> UNet2DConditionModel:
    return UNet2DConditionModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        block_out_channels=(16, 32),
        layers_per_block=1,
        cross_attention_dim=TEXT_DIM,
        attention_head_dim=8,
        norm_num_groups=4,
    )


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


def _build_sd(folder: Path, seed: int) -> None:
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
    return save_once(path, marker, lambda folder: _build_sd(folder, seed))


# -- AnimateDiff (video): the Stable Diffusion parts plus a motion adapter ------------------------

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


def _build_animatediff(folder: Path, seed: int) -> None:
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
    return save_once(path, marker, lambda folder: _build_animatediff(folder, seed))
