"""Errors the speech engine raises, each with a stable code that goes on the wire."""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar


class SpeechError(Exception):
    """A speech request the engine refuses. `code` never changes once published."""

    code: ClassVar[str] = "speech_error"


class EmptyInput(SpeechError):
    code: ClassVar[str] = "empty_input"


class InputTooLong(SpeechError):
    code: ClassVar[str] = "input_too_long"


class InvalidSpeed(SpeechError):
    code: ClassVar[str] = "invalid_speed"


class UnsupportedFormat(SpeechError):
    code: ClassVar[str] = "unsupported_format"


class UnknownVoice(SpeechError):
    code: ClassVar[str] = "unknown_voice"

    def __init__(self, voice: str, known: Iterable[str]) -> None:
        self.voice = voice
        self.known = sorted(known)
        super().__init__(
            f"unknown voice {voice!r}: use one of {', '.join(self.known) or '(none installed)'}"
        )

