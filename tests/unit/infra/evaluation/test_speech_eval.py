"""The speech round trip: the shipped piper voice, heard by PocketSphinx."""

from __future__ import annotations

import numpy as np
import pytest

from infra.evaluation.metrics import word_error_rate

pytest.importorskip("pocketsphinx")
pytest.importorskip("piper")


def test_a_sentence_survives_the_round_trip_and_silence_does_not() -> None:
    from infra.evaluation.speech import synthesise, transcribe

    sentence = "There are seven days in a week."
    (audio,), rate, seconds = synthesise([sentence])
    assert rate == 22050 and len(audio) > rate and seconds > 0
    assert word_error_rate(sentence, transcribe(audio, rate)) <= 0.3
    assert word_error_rate(sentence, transcribe(np.zeros(rate, dtype=np.int16), rate)) == 1.0
