from __future__ import annotations

import pytest

from schemas.enums import ErrorCode
from workers.errors import JobError
from workers.image.validation import ImageLimits, validate_image_request

LIMITS = ImageLimits(max_side=512, max_steps=50, max_n=4)


@pytest.mark.parametrize(
    ("at_limit", "past_limit"),
    [
        ((512, 64, 50, 4, "dpm-solver"), (520, 64, 50, 4, "dpm-solver")),  # maxima
        ((8, 8, 1, 1, "ddim"), (8, 8, 0, 1, "ddim")),  # minima
    ],
)
def test_limits_are_inclusive(at_limit: tuple, past_limit: tuple) -> None:
    assert validate_image_request(*at_limit, LIMITS) is None  # raises nothing at the limit itself
    with pytest.raises(JobError):
        validate_image_request(*past_limit, LIMITS)


@pytest.mark.parametrize(
    ("args", "code", "names"),
    [
        ((60, 64, 2, 1, "ddim"), ErrorCode.INVALID_SIZE, "width must be a multiple of 8"),
        ((64, 0, 2, 1, "ddim"), ErrorCode.INVALID_SIZE, "height must be between"),
        ((520, 64, 2, 1, "ddim"), ErrorCode.INVALID_SIZE, "width must be between"),  # over max_side
        ((64, 64, 0, 1, "ddim"), ErrorCode.INVALID_PARAMETER, "steps must be"),
        ((64, 64, 51, 1, "ddim"), ErrorCode.INVALID_PARAMETER, "steps must be"),
        ((64, 64, 2, 0, "ddim"), ErrorCode.INVALID_PARAMETER, "n must be"),
        ((64, 64, 2, 5, "ddim"), ErrorCode.INVALID_PARAMETER, "n must be"),
        ((64, 64, 2, 1, "euler"), ErrorCode.UNKNOWN_SCHEDULER, "scheduler must be one of ddim, dpm-solver"),
    ],
)
def test_invalid_requests_carry_a_stable_code(args: tuple, code: ErrorCode, names: str) -> None:
    with pytest.raises(JobError) as err:
        validate_image_request(*args, LIMITS)
    assert err.value.code is code
    assert err.value.message.startswith(names)
