from __future__ import annotations

import pytest

from schemas.enums import ErrorCode
from workers.errors import JobError
from workers.video.validation import VideoLimits, validate_video_request

LIMITS = VideoLimits(max_side=256, max_steps=20, max_frames=16, max_fps=30)


@pytest.mark.parametrize(
    ("at_limit", "past_limit"),
    [
        ((256, 64, 20, 16, 30), (256, 64, 20, 16, 31)),  # maxima
        ((8, 8, 1, 1, 1), (8, 8, 1, 0, 1)),  # minima
    ],
)
def test_limits_are_inclusive(at_limit: tuple, past_limit: tuple) -> None:
    assert validate_video_request(*at_limit, LIMITS) is None  # raises nothing at the limit itself
    with pytest.raises(JobError):
        validate_video_request(*past_limit, LIMITS)


@pytest.mark.parametrize(
    ("args", "code", "names"),
    [
        ((62, 64, 2, 8, 8), ErrorCode.INVALID_SIZE, "width must be a multiple of 8"),
        ((264, 64, 2, 8, 8), ErrorCode.INVALID_SIZE, "width must be between"),
        ((64, 64, 0, 8, 8), ErrorCode.INVALID_PARAMETER, "steps must be"),
        ((64, 64, 21, 8, 8), ErrorCode.INVALID_PARAMETER, "steps must be"),
        ((64, 64, 2, 0, 8), ErrorCode.INVALID_PARAMETER, "frames must be"),
        ((64, 64, 2, 17, 8), ErrorCode.INVALID_PARAMETER, "frames must be"),
        ((64, 64, 2, 8, 0), ErrorCode.INVALID_PARAMETER, "fps must be"),
        ((64, 64, 2, 8, 31), ErrorCode.INVALID_PARAMETER, "fps must be"),
    ],
)
def test_invalid_requests_carry_a_stable_code(args: tuple, code: ErrorCode, names: str) -> None:
    with pytest.raises(JobError) as err:
        validate_video_request(*args, LIMITS)
    assert err.value.code is code
    assert err.value.message.startswith(names)
