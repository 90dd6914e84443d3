"""Request checks for text-to-image, raising ``InvalidParameter`` with a stable code."""

from __future__ import annotations

from dataclasses import dataclass

from workers.image.errors import InvalidParameter

#: Schedulers a request may name.
SCHEDULERS = ("ddim", "dpm-solver")


@dataclass(frozen=True)
class ImageLimits:
    min_side: int = 8  #: pixels; one latent cell at a VAE factor of 8
    max_side: int = 2048  #: pixels; SD 3.5 Large is trained at 1024, 2x leaves headroom
    max_steps: int = 100
    max_n: int = 8  #: images per request
    vae_scale_factor: int = 8  #: width and height must be multiples of this


def check_size(width: int, height: int, limits: ImageLimits) -> None:
    factor = limits.vae_scale_factor
    for name, value in (("width", width), ("height", height)):
        if not limits.min_side <= value <= limits.max_side:
            raise InvalidParameter(
                "invalid_size",
                f"{name} must be between {limits.min_side} and {limits.max_side}, got {value}",
            )
        if value % factor:
            raise InvalidParameter(
                "invalid_size", f"{name} must be a multiple of {factor}, got {value}"
            )


def check_steps(steps: int, max_steps: int) -> None:
    if not 1 <= steps <= max_steps:
        raise InvalidParameter("invalid_steps", f"steps must be between 1 and {max_steps}, got {steps}")


def validate_image_request(
    width: int, height: int, steps: int, n: int, scheduler: str, limits: ImageLimits
) -> None:
    check_size(width, height, limits)
    check_steps(steps, limits.max_steps)
    if not 1 <= n <= limits.max_n:
        raise InvalidParameter("invalid_n", f"n must be between 1 and {limits.max_n}, got {n}")
    if scheduler not in SCHEDULERS:
        raise InvalidParameter(
            "unknown_scheduler", f"scheduler must be one of {', '.join(SCHEDULERS)}, got {scheduler!r}"
        )
