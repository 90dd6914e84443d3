"""The speech engine: validate a request, split it into sentences, synthesise them one by one.

Pure: no Kafka, no HTTP. The worker's runner wraps it and turns chunks into events.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass

from schemas.enums import ErrorCode
from workers.errors import JobError

from infra.models.voices import openai_voice_table, resolve_voice

from .errors import unknown_voice
from .formats import SAMPLE_WIDTH, AudioFormat, get_format
from .synthesizer import Synthesizer
from .text import DEFAULT_MAX_SENTENCE_CHARS, split_sentences

#: the longest input, in characters (the OpenAI speech endpoint takes the same)
DEFAULT_MAX_INPUT_CHARS = 4_096
#: the speaking-rate range accepted, as for the OpenAI speech endpoint
MIN_SPEED = 0.25
MAX_SPEED = 4.0


@dataclass(frozen=True, slots=True)
class AudioChunk:
    """One sentence of speech as raw s16le mono PCM (what streams on the wire for every format)."""

    index: int
    text: str
    pcm: bytes
    sample_rate: int

    @property
    def num_samples(self) -> int:
        return len(self.pcm) // SAMPLE_WIDTH

    @property
    def duration_s(self) -> float:
        return self.num_samples / self.sample_rate


@dataclass(frozen=True, slots=True)
class SpeechPlan:
    """A validated request: the sentences to speak, in order, and how."""

    sentences: tuple[str, ...]
    voice: str
    speed: float
    format: AudioFormat


class SpeechEngine:
    """Text in, sentence-sized audio chunks out, over any `Synthesizer`."""

    def __init__(
        self,
        synth: Synthesizer,
        *,
        max_input_chars: int = DEFAULT_MAX_INPUT_CHARS,
        max_sentence_chars: int = DEFAULT_MAX_SENTENCE_CHARS,
        voice_map: dict[str, str] | None = None,
    ) -> None:
        self._synth = synth
        #: OpenAI voice names -> installed voices (GENLOOM_SPEECH_VOICE_MAP), checked at start
        self._aliases = openai_voice_table(frozenset(synth.voices()), voice_map)
        self._max_input_chars = max_input_chars
        self._max_sentence_chars = max_sentence_chars

    @property
    def sample_rate(self) -> int:
        return self._synth.sample_rate

    def plan(self, text: str, voice: str, speed: float = 1.0, fmt: str = "wav") -> SpeechPlan:
        """Validate a request; every `JobError` a request can cause is raised here."""
        if not text.strip():
            raise JobError(ErrorCode.EMPTY_INPUT, "input is empty: give the text to speak")
        if len(text) > self._max_input_chars:
            raise JobError(
                ErrorCode.PAYLOAD_TOO_LARGE,
                f"input is {len(text)} characters; the limit is {self._max_input_chars}: "
                "split the text into several requests"
            )
        if not (math.isfinite(speed) and MIN_SPEED <= speed <= MAX_SPEED):
            raise JobError(ErrorCode.INVALID_PARAMETER, f"speed {speed} is outside [{MIN_SPEED}, {MAX_SPEED}]")
        audio_format = get_format(fmt)
        known = self._synth.voices()
        resolved = resolve_voice(voice, set(known), self._aliases)
        if resolved is None:
            raise unknown_voice(voice, known)
        voice = resolved
        sentences = split_sentences(text, self._max_sentence_chars)
        if not sentences:
            raise JobError(ErrorCode.EMPTY_INPUT, "input has no words to speak, only punctuation")
        return SpeechPlan(tuple(sentences), voice, speed, audio_format)

    def stream(
        self, text: str, voice: str, speed: float = 1.0, fmt: str = "wav"
    ) -> Iterator[AudioChunk]:
        """Chunks, one per sentence, each yielded as soon as it is synthesised.

        Validation happens at the call, before any audio is made; join the chunks' `pcm` and
        encode with the plan's format (`synthesize_all` does) for the final file.
        """
        return self.run(self.plan(text, voice, speed, fmt))

    def run(self, plan: SpeechPlan) -> Iterator[AudioChunk]:
        """Synthesise a plan sentence by sentence."""
        rate = self._synth.sample_rate
        # hot loop: one synthesiser call per sentence, nothing else
        for index, sentence in enumerate(plan.sentences):
            samples = self._synth.synthesize(sentence, plan.voice, plan.speed)
            yield AudioChunk(index, sentence, samples.astype("<i2", copy=False).tobytes(), rate)

    def synthesize_all(
        self, text: str, voice: str, speed: float = 1.0, fmt: str = "wav"
    ) -> bytes:
        """The whole text as one file in `fmt`."""
        plan = self.plan(text, voice, speed, fmt)
        pcm = b"".join(chunk.pcm for chunk in self.run(plan))
        return plan.format.encode(pcm, self._synth.sample_rate)
