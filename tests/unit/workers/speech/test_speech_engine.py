from __future__ import annotations

import io
import wave

import numpy as np
import numpy.typing as npt
import pytest

from workers.speech.engine import SpeechEngine
from schemas.enums import ErrorCode
from workers.errors import JobError
from workers.speech.synthesizer import PiperSynthesizer

pytestmark = pytest.mark.slow  # loads a real model

THREE = "The sun rose early. Birds sang in the trees. Then it rained."


class CountingSynth:
    """Wraps a synthesiser and records every sentence it is asked to speak."""

    def __init__(self, inner: PiperSynthesizer) -> None:
        self.inner = inner
        self.calls: list[str] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def sample_rate(self) -> int:
        return self.inner.sample_rate

    def voices(self) -> list[str]:
        return self.inner.voices()

    def synthesize(self, sentence: str, voice: str, speed: float) -> npt.NDArray[np.int16]:
        self.calls.append(sentence)
        return self.inner.synthesize(sentence, voice, speed)


@pytest.fixture
def counting(piper: PiperSynthesizer) -> CountingSynth:
    return CountingSynth(piper)


@pytest.fixture
def counted(counting: CountingSynth) -> SpeechEngine:
    return SpeechEngine(counting, max_input_chars=500, max_sentence_chars=60)


def test_stream_yields_one_chunk_per_sentence_as_soon_as_it_is_made(
    counted: SpeechEngine, counting: CountingSynth
) -> None:
    chunks = counted.stream(THREE, "joe", 1.0, "wav")
    assert counting.calls == []  # nothing is synthesised before the caller reads
    first = next(chunks)
    assert counting.calls == ["The sun rose early."]  # the last sentence is not yet spoken
    assert first.index == 0 and first.text == "The sun rose early." and first.num_samples > 0
    rest = list(chunks)
    assert [c.index for c in rest] == [1, 2]
    assert [c.text for c in rest] == ["Birds sang in the trees.", "Then it rained."]
    assert len(counting.calls) == 3


def test_streamed_pcm_equals_the_whole_file(engine: SpeechEngine) -> None:
    chunks = list(engine.stream(THREE, "joe", 1.0, "wav"))
    streamed = b"".join(c.pcm for c in chunks)
    assert engine.synthesize_all(THREE, "joe", 1.0, "pcm") == streamed
    with wave.open(io.BytesIO(engine.synthesize_all(THREE, "joe", 1.0, "wav")), "rb") as wav:
        assert wav.readframes(wav.getnframes()) == streamed
    for chunk in chunks:
        assert chunk.sample_rate == 22050
        assert chunk.duration_s == pytest.approx(chunk.num_samples / 22050)
        assert chunk.duration_s > 0.3
    assert sum(c.duration_s for c in chunks) == pytest.approx(len(streamed) / 2 / 22050)


def test_a_long_sentence_streams_in_bounded_pieces(
    counted: SpeechEngine, counting: CountingSynth
) -> None:
    text = "We walked along the river, past the mill and the bridge, and home again at last."
    chunks = list(counted.stream(text, "joe"))
    assert len(chunks) >= 2
    assert all(len(c.text) <= 60 for c in chunks)
    assert " ".join(c.text for c in chunks) == text
    assert counting.calls == [c.text for c in chunks]


def test_faster_speech_is_shorter_through_the_engine(engine: SpeechEngine) -> None:
    normal = len(engine.synthesize_all("Counting one two three four.", "joe", 1.0, "pcm"))
    fast = len(engine.synthesize_all("Counting one two three four.", "joe", 2.0, "pcm"))
    assert fast < 0.65 * normal


@pytest.mark.parametrize(
    ("text", "voice", "speed", "fmt", "code"),
    [
        ("", "joe", 1.0, "wav", ErrorCode.EMPTY_INPUT),
        ("  \n\t ", "joe", 1.0, "wav", ErrorCode.EMPTY_INPUT),
        ("... !!", "joe", 1.0, "wav", ErrorCode.EMPTY_INPUT),
        ("x" * 501, "joe", 1.0, "wav", ErrorCode.PAYLOAD_TOO_LARGE),
        ("Hi.", "joe", 0.24, "wav", ErrorCode.INVALID_PARAMETER),
        ("Hi.", "joe", 4.01, "wav", ErrorCode.INVALID_PARAMETER),
        ("Hi.", "joe", float("nan"), "wav", ErrorCode.INVALID_PARAMETER),
        ("Hi.", "joe", 1.0, "mp3", ErrorCode.UNSUPPORTED_FORMAT),
        ("Hi.", "joe", 1.0, "WAV", ErrorCode.UNSUPPORTED_FORMAT),
        ("Hi.", "nobody", 1.0, "wav", ErrorCode.UNKNOWN_VOICE),
    ],
)
def test_bad_requests_fail_at_the_call_with_a_stable_code(
    counted: SpeechEngine,
    counting: CountingSynth,
    text: str,
    voice: str,
    speed: float,
    fmt: str,
    code: ErrorCode,
) -> None:
    with pytest.raises(JobError) as info:
        counted.stream(text, voice, speed, fmt)  # not iterated: validation is eager
    assert info.value.code is code
    with pytest.raises(JobError):
        counted.synthesize_all(text, voice, speed, fmt)
    assert counting.calls == []


def test_speed_bounds_are_inclusive(engine: SpeechEngine) -> None:
    assert engine.plan("Hi.", "joe", 0.25).speed == 0.25
    assert engine.plan("Hi.", "joe", 4.0).speed == 4.0


def test_unknown_voice_through_the_engine_lists_known_voices(engine: SpeechEngine) -> None:
    with pytest.raises(JobError, match="use one of joe$") as info:
        engine.stream("Hello.", "nightingale")
    assert info.value.code is ErrorCode.UNKNOWN_VOICE


def test_an_openai_voice_on_a_job_is_spoken_by_the_installed_voice(engine: SpeechEngine) -> None:
    """A producer's job (not only the OpenAI endpoint) may name an OpenAI voice."""
    assert engine.plan("Hello.", "alloy").voice == "joe"


def test_plan_holds_the_sentences_and_format(engine: SpeechEngine) -> None:
    plan = engine.plan("Dr. Smith paid $3.50. Then he left!", "joe", 1.5, "pcm")
    assert plan.sentences == ("Dr. Smith paid $3.50.", "Then he left!")
    assert plan.format.name == "pcm" and plan.speed == 1.5 and plan.voice == "joe"
