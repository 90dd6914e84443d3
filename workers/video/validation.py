"""Request checks for text-to-video, raising `JobError` with a stable code."""

from __future__ import annotations

from dataclasses import dataclass

from workers.diffusion.validation import check_size, check_steps, invalid


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
    check_size(width, height, limits)
    check_steps(steps, limits.max_steps)
    if not 1 <= frames <= limits.max_frames:
        raise invalid(f"frames must be between 1 and {limits.max_frames}, got {frames}")
    if not 1 <= fps <= limits.max_fps:
        raise invalid(f"fps must be between 1 and {limits.max_fps}, got {fps}")
