from __future__ import annotations

import io
import struct
import wave

import numpy as np
import pytest

from workers.speech.engine import SpeechEngine
from schemas.enums import ErrorCode
from workers.errors import JobError
from workers.speech.formats import FORMATS, encode_pcm, encode_wav, get_format


@pytest.mark.slow
def test_wav_of_real_speech_decodes_with_the_stdlib(engine: SpeechEngine) -> None:
    pcm = engine.synthesize_all("A short line to decode.", "joe", fmt="pcm")
    data = engine.synthesize_all("A short line to decode.", "joe", fmt="wav")
    samples = len(pcm) // 2
    assert samples > 22050 // 2
    with wave.open(io.BytesIO(data), "rb") as wav:
        assert wav.getframerate() == 22050
        assert wav.getnchannels() == 1
        assert wav.getsampwidth() == 2
        assert wav.getnframes() == samples
        assert wav.getnframes() / wav.getframerate() == pytest.approx(samples / 22050)
        assert wav.readframes(samples) == pcm


def test_wav_header_sizes_are_right() -> None:
    pcm = np.arange(-500, 500, dtype="<i2").tobytes()
    data = encode_wav(pcm, 16000)
    assert data[:4] == b"RIFF" and data[8:16] == b"WAVEfmt "
    assert struct.unpack("<I", data[4:8])[0] == len(data) - 8
    fmt_tag, channels, rate, byte_rate, align, bits = struct.unpack("<HHIIHH", data[20:36])
    assert (fmt_tag, channels, rate, byte_rate, align, bits) == (1, 1, 16000, 32000, 2, 16)
    assert data[36:40] == b"data" and struct.unpack("<I", data[40:44])[0] == len(pcm)
    assert data[44:] == pcm


def test_empty_wav_is_still_a_valid_file() -> None:
    with wave.open(io.BytesIO(encode_wav(b"", 22050)), "rb") as wav:
        assert wav.getnframes() == 0 and wav.getframerate() == 22050


def test_pcm_is_passed_through_and_checked() -> None:
    assert encode_pcm(b"\x01\x00\xff\xff", 22050) == b"\x01\x00\xff\xff"
    with pytest.raises(ValueError, match="16-bit"):
        encode_pcm(b"\x01", 22050)
    with pytest.raises(ValueError, match="sample_rate"):
        encode_wav(b"", 0)


def test_formats_and_mime_types() -> None:
    assert {name: f.mime_type for name, f in FORMATS.items()} == {
        "wav": "audio/wav",
        "pcm": "audio/pcm",
    }
    assert get_format("wav").encode is encode_wav


def test_unknown_format_names_the_supported_ones() -> None:
    with pytest.raises(JobError, match="pcm, wav") as info:
        get_format("mp3")
    assert info.value.code is ErrorCode.UNSUPPORTED_FORMAT
