from __future__ import annotations

import numpy as np
import pytest

from infra.models.storage import RANDOM_WEIGHTS
from workers.diffusion.steps import GenerationCancelled
from workers.video.encode import encode_mp4, probe_mp4
from workers.video.engine import VideoEngine, VideoJob
from workers.video.pipeline import PRODUCTION_VIDEO_MODEL_ID


def job(seed: int = 0, **kw: object) -> VideoJob:
    fields: dict[str, object] = dict(frames=8, fps=8, width=32, height=32, steps=2)
    fields.update(kw)
    return VideoJob(job_id="v1", prompt="a boat on a lake", seed=seed, **fields)  # type: ignore[arg-type]


def test_profiles_and_random_label(video_engine: VideoEngine) -> None:
    assert PRODUCTION_VIDEO_MODEL_ID == "genmo/mochi-1-preview"
    assert video_engine.model_info.weights == RANDOM_WEIGHTS
    assert video_engine.model_info.pipeline_class == "AnimateDiffPipeline"


def test_frames_progress_and_mp4_round_trip(video_engine: VideoEngine) -> None:
    calls: list[tuple[int, int]] = []
    frames = video_engine.generate(job(width=48, height=32), on_step=lambda d, t: calls.append((d, t)))
    assert calls == [(1, 2), (2, 2)]
    assert len(frames) == 8
    assert all(f.shape == (32, 48, 3) and f.dtype == np.uint8 for f in frames)
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).max() > 0  # frames are not copies

    info = probe_mp4(encode_mp4(frames, fps=8))
    assert (info.frames, info.width, info.height) == (8, 48, 32)
    assert (info.codec, info.pix_fmt) == ("h264", "yuv420p")
    assert info.duration_s == pytest.approx(1.0)
    assert info.container_duration_s == pytest.approx(1.0, abs=0.15)


def test_same_seed_repeats_and_different_seeds_differ(video_engine: VideoEngine) -> None:
    a, b, c = (np.stack(video_engine.generate(job(seed=s, frames=4))).astype(int) for s in (1, 1, 2))
    assert np.array_equal(a, b)
    assert np.abs(a - c).max() > 10


def test_cancel_stops_within_one_step(video_engine: VideoEngine) -> None:
    seen: list[int] = []
    with pytest.raises(GenerationCancelled) as err:
        video_engine.generate(
            job(frames=4, steps=10), on_step=lambda d, t: seen.append(d), should_stop=lambda: len(seen) >= 1
        )
    assert (err.value.steps_done, seen) == (1, [1])
