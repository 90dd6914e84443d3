"""Request checks for text-to-video, raising ``InvalidParameter`` with a stable code."""

from __future__ import annotations

from dataclasses import dataclass

from workers.image.errors import InvalidParameter
from workers.image.validation import ImageLimits, check_size, check_steps


@dataclass(frozen=True)
class VideoLimits:
    min_side: int = 8
    max_side: int = 1024  #: pixels; Mochi 1 renders 848x480
    max_steps: int = 100
    max_frames: int = 32  #: the tiny motion adapter's max_seq_length; Mochi 1 goes to 163
    max_fps: int = 60
    vae_scale_factor: int = 8  #: multiples of 8 are also the even sizes H.264 yuv420p needs


def validate_video_request(
    width: int, height: int, steps: int, frames: int, fps: int, limits: VideoLimits
) -> None:
    size_limits = ImageLimits(
        min_side=limits.min_side, max_side=limits.max_side, vae_scale_factor=limits.vae_scale_factor
    )
    check_size(width, height, size_limits)
    check_steps(steps, limits.max_steps)
    if not 1 <= frames <= limits.max_frames:
        raise InvalidParameter(
            "invalid_frames", f"frames must be between 1 and {limits.max_frames}, got {frames}"
        )
    if not 1 <= fps <= limits.max_fps:
        raise InvalidParameter("invalid_fps", f"fps must be between 1 and {limits.max_fps}, got {fps}")
