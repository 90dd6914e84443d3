"""Request checks for text-to-image, raising `JobError` with a stable code."""

from __future__ import annotations

from dataclasses import dataclass

from schemas.enums import ErrorCode
from workers.diffusion.validation import check_size, check_steps, invalid
from workers.errors import JobError

#: Schedulers a request may name.
SCHEDULERS = ("ddim", "dpm-solver")


@dataclass(frozen=True)
class ImageLimits:
    min_side: int = 8  #: pixels; one latent cell at a VAE factor of 8
    max_side: int = 2048  #: pixels; SD 3.5 Large is trained at 1024, 2x leaves headroom
    max_steps: int = 100
    max_n: int = 8  #: images per request
    vae_scale_factor: int = 8  #: width and height must be multiples of this


def validate_image_request(
    width: int, height: int, steps: int, n: int, scheduler: str, limits: ImageLimits
) -> None:
    check_size(width, height, limits)
    check_steps(steps, limits.max_steps)
    if not 1 <= n <= limits.max_n:
        raise invalid(f"n must be between 1 and {limits.max_n}, got {n}")
    if scheduler not in SCHEDULERS:
        raise JobError(ErrorCode.UNKNOWN_SCHEDULER,
                       f"scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}")
