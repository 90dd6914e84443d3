"""Text-to-speech: a pure engine over pluggable synthesisers (piper by default)."""

from infra.models.voices import VoiceLoadError

from .engine import AudioChunk, SpeechEngine, SpeechPlan
from .errors import unknown_voice
from .formats import FORMATS, AudioFormat, get_format
from .synthesizer import PiperSynthesizer, Synthesizer, VoiceFiles, shipped_voice
from .text import split_sentences

__all__ = [
    "FORMATS",
    "AudioChunk",
    "AudioFormat",
    "PiperSynthesizer",
    "SpeechEngine",
    "SpeechPlan",
    "Synthesizer",
    "VoiceFiles",
    "VoiceLoadError",
    "shipped_voice",
    "split_sentences",
    "unknown_voice",
]
