"""The tiny random Stable Diffusion pipeline, built once per session into a temp cache."""

from __future__ import annotations

import pytest

from workers.image.engine import ImageEngine
from workers.image.tiny import load_tiny_pipeline


@pytest.fixture(scope="session")
def image_engine(tmp_path_factory: pytest.TempPathFactory) -> ImageEngine:
    pipe, info = load_tiny_pipeline(tmp_path_factory.mktemp("models") / "tiny-sd", device="cpu")
    return ImageEngine(pipe, info)
