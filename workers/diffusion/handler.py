"""What the image and video handlers share: loading a pipeline, warming it up, seeds, model info."""

from __future__ import annotations

import secrets
from collections.abc import Callable

from diffusers import DiffusionPipeline

from infra.models.storage import RANDOM_WEIGHTS
from schemas.enums import ErrorCode
from schemas.events import ModelInfo
from workers.errors import JobError, batch_failure_detail

from .pipeline import LoadedPipeline

#: returns a loaded pipeline and what it is; called once, in a thread, by a handler's start()
PipelineLoader = Callable[[], tuple[DiffusionPipeline, LoadedPipeline]]
#: side of the one-step warm-up image: 8x8 latents, small enough for any model's VAE and UNet
WARMUP_SIDE = 64
#: seeds drawn for requests without one stay below 2**31 so that seed + i fits any generator
RANDOM_SEED_BOUND = 2**31


def random_seed() -> int:
    return secrets.randbelow(RANDOM_SEED_BOUND)


def wire_model_info(info: LoadedPipeline) -> ModelInfo:
    """The engine's description of its pipeline, as the `started` event carries it."""
    return ModelInfo(id=info.model_id, device=info.device, dtype=info.dtype,
                     random_weights=info.weights == RANDOM_WEIGHTS)


def native_side(pipe: DiffusionPipeline) -> int:
    """The pixel side the model was built for (64 for the tiny pipelines, 1024 for SD 3.5)."""
    denoiser = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
    size = denoiser.config.sample_size if denoiser is not None else 64
    if isinstance(size, (list, tuple)):
        size = size[0]
    return int(size) * int(getattr(pipe, "vae_scale_factor", 8))


def batch_error(exc: Exception, jobs: int) -> JobError:
    """The failure of each job of a batch whose pipeline call raised (`batch_failure_detail`)."""
    return JobError(ErrorCode.GENERATION_ERROR, f"generation failed: {batch_failure_detail(exc, jobs)}",
                    retryable=True)
