"""Audio encodings: 16-bit mono PCM in, a file (or a raw stream) out.

Streaming always sends raw s16le PCM per chunk; the format decides the final artifact.
"""

from __future__ import annotations

import io
import wave
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from schemas.enums import ErrorCode
from workers.errors import JobError

#: bytes per sample of the PCM every synthesiser produces (signed 16-bit)
SAMPLE_WIDTH = 2
#: every synthesiser produces mono audio
CHANNELS = 1


def encode_pcm(pcm: bytes, sample_rate: int) -> bytes:
    """Raw s16le mono samples, unchanged."""
    _check_pcm(pcm, sample_rate)
    return pcm


def encode_wav(pcm: bytes, sample_rate: int) -> bytes:
    """A complete RIFF/WAVE file (PCM, 16-bit, mono) holding `pcm`."""
    _check_pcm(pcm, sample_rate)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as wav:
        wav.setnchannels(CHANNELS)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)
    return buffer.getvalue()


def _check_pcm(pcm: bytes, sample_rate: int) -> None:
    if sample_rate <= 0:
        raise ValueError(f"sample_rate must be positive, got {sample_rate}")
    if len(pcm) % SAMPLE_WIDTH:
        raise ValueError(f"PCM length {len(pcm)} is not a whole number of 16-bit samples")


@dataclass(frozen=True, slots=True)
class AudioFormat:
    """One output encoding."""

    name: str
    mime_type: str
    encode: Callable[[bytes, int], bytes]


#: the encodings this worker can produce. FLAC is absent: it needs `soundfile`, not installed.
FORMATS: Mapping[str, AudioFormat] = MappingProxyType(
    {
        "wav": AudioFormat("wav", "audio/wav", encode_wav),
        "pcm": AudioFormat("pcm", "audio/pcm", encode_pcm),
    }
)


def get_format(name: str) -> AudioFormat:
    """The encoding called `name`, or a `JobError` listing the ones there are."""
    try:
        return FORMATS[name]
    except KeyError:
        raise JobError(
            ErrorCode.UNSUPPORTED_FORMAT,
            f"unsupported audio format {name!r}: use one of {', '.join(sorted(FORMATS))}"
        ) from None
