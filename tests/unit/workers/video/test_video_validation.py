from __future__ import annotations

import pytest

from workers.image.errors import InvalidParameter
from workers.video.validation import VideoLimits, validate_video_request

LIMITS = VideoLimits(max_side=256, max_steps=20, max_frames=16, max_fps=30)


def test_valid_request_passes() -> None:
    validate_video_request(256, 64, 20, 16, 30, LIMITS)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((62, 64, 2, 8, 8), "invalid_size"),
        ((264, 64, 2, 8, 8), "invalid_size"),
        ((64, 64, 0, 8, 8), "invalid_steps"),
        ((64, 64, 21, 8, 8), "invalid_steps"),
        ((64, 64, 2, 0, 8), "invalid_frames"),
        ((64, 64, 2, 17, 8), "invalid_frames"),
        ((64, 64, 2, 8, 0), "invalid_fps"),
        ((64, 64, 2, 8, 31), "invalid_fps"),
    ],
)
def test_invalid_requests_carry_a_stable_code(args: tuple[int, int, int, int, int], code: str) -> None:
    with pytest.raises(InvalidParameter) as err:
        validate_video_request(*args, LIMITS)
    assert err.value.code == code
