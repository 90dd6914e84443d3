"""Checks every diffusion request shares (size, steps), raising `JobError` with a stable code."""

from __future__ import annotations

from typing import Protocol

from schemas.enums import ErrorCode
from workers.errors import JobError


class SizeLimits(Protocol):
    min_side: int  #: pixels
    max_side: int  #: pixels
    vae_scale_factor: int  #: width and height must be multiples of this


def invalid(message: str) -> JobError:
    """A parameter out of its range."""
    return JobError(ErrorCode.INVALID_PARAMETER, message)


def check_size(width: int, height: int, limits: SizeLimits) -> None:
    factor = limits.vae_scale_factor
    for name, value in (("width", width), ("height", height)):
        if not limits.min_side <= value <= limits.max_side:
            raise JobError(ErrorCode.INVALID_SIZE,
                           f"{name} must be between {limits.min_side} and {limits.max_side}, got {value}")
        if value % factor:
            raise JobError(ErrorCode.INVALID_SIZE, f"{name} must be a multiple of {factor}, got {value}")


def check_steps(steps: int, max_steps: int) -> None:
    if not 1 <= steps <= max_steps:
        raise invalid(f"steps must be between 1 and {max_steps}, got {steps}")
