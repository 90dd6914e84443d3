"""Text-to-speech: a pure engine over pluggable synthesisers (piper by default)."""

from infra.models.voices import VoiceLoadError

from .engine import AudioChunk, SpeechEngine, SpeechPlan
from .errors import (
    EmptyInput,
    InputTooLong,
    InvalidSpeed,
    SpeechError,
    UnknownVoice,
    UnsupportedFormat,
)
from .formats import FORMATS, AudioFormat, get_format
from .synthesizer import PiperSynthesizer, Synthesizer, VoiceFiles, shipped_voice
from .text import split_sentences

__all__ = [
    "FORMATS",
    "AudioChunk",
    "AudioFormat",
    "EmptyInput",
    "InputTooLong",
    "InvalidSpeed",
    "PiperSynthesizer",
    "SpeechEngine",
    "SpeechError",
    "SpeechPlan",
    "Synthesizer",
    "UnknownVoice",
    "UnsupportedFormat",
    "VoiceFiles",
    "VoiceLoadError",
    "shipped_voice",
    "split_sentences",
]
