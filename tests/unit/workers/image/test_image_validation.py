from __future__ import annotations

import pytest

from workers.image.errors import InvalidParameter
from workers.image.validation import ImageLimits, validate_image_request

LIMITS = ImageLimits(max_side=512, max_steps=50, max_n=4)


def test_valid_request_passes() -> None:
    validate_image_request(512, 64, 50, 4, "dpm-solver", LIMITS)
    validate_image_request(8, 8, 1, 1, "ddim", LIMITS)


@pytest.mark.parametrize(
    ("args", "code"),
    [
        ((60, 64, 2, 1, "ddim"), "invalid_size"),  # not a multiple of 8
        ((64, 0, 2, 1, "ddim"), "invalid_size"),
        ((520, 64, 2, 1, "ddim"), "invalid_size"),  # over max_side
        ((64, 64, 0, 1, "ddim"), "invalid_steps"),
        ((64, 64, 51, 1, "ddim"), "invalid_steps"),
        ((64, 64, 2, 0, "ddim"), "invalid_n"),
        ((64, 64, 2, 5, "ddim"), "invalid_n"),
        ((64, 64, 2, 1, "euler"), "unknown_scheduler"),
    ],
)
def test_invalid_requests_carry_a_stable_code(args: tuple[int, int, int, int, str], code: str) -> None:
    with pytest.raises(InvalidParameter) as err:
        validate_image_request(*args, LIMITS)
    assert err.value.code == code
    assert isinstance(err.value, ValueError)
    assert err.value.message
