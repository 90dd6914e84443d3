"""The tiny random AnimateDiff pipeline, built once per session into a temp cache."""

from __future__ import annotations

import pytest

from workers.video.engine import VideoEngine
from workers.video.pipeline import load_tiny_video_pipeline


@pytest.fixture(scope="session")
def video_engine(tmp_path_factory: pytest.TempPathFactory) -> VideoEngine:
    path = tmp_path_factory.mktemp("models") / "tiny-animatediff"
    pipe, info = load_tiny_video_pipeline(path, device="cpu")
    return VideoEngine(pipe, info)
