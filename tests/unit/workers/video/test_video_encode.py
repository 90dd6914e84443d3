from __future__ import annotations

import numpy as np
import pytest

from workers.video.encode import encode_mp4, probe_mp4


def test_encode_keeps_frame_count_size_and_duration() -> None:
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (24, 40, 3), dtype=np.uint8) for _ in range(12)]
    data = encode_mp4(frames, fps=6)
    assert data[4:8] == b"ftyp"
    info = probe_mp4(data)
    assert (info.frames, info.width, info.height, info.fps) == (12, 40, 24, 6.0)
    assert info.duration_s == pytest.approx(2.0)


def test_encode_rejects_odd_sizes_and_empty_input() -> None:
    with pytest.raises(ValueError, match="even"):
        encode_mp4([np.zeros((31, 32, 3), np.uint8)], fps=8)
    with pytest.raises(ValueError, match="without frames"):
        encode_mp4([], fps=8)
