"""A real piper voice, loaded once per test session."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workers.speech.engine import SpeechEngine
from workers.speech.synthesizer import PiperSynthesizer


@pytest.fixture(scope="session")
def piper() -> Iterator[PiperSynthesizer]:
    """The shipped voice with noise off, so equal inputs give equal samples; one CPU thread."""
    with PiperSynthesizer.with_shipped_voice(
        noise_scale=0.0, noise_w_scale=0.0, intra_op_threads=1
    ) as synth:
        yield synth


@pytest.fixture
def engine(piper: PiperSynthesizer) -> SpeechEngine:
    return SpeechEngine(piper, max_input_chars=500, max_sentence_chars=60)
