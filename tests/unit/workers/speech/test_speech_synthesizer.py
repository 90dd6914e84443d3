from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from infra.models.voices import SHIPPED_VOICE_NAME, VoiceFiles, VoiceLoadError, shipped_voice, voices_in_folder
from schemas.enums import ErrorCode
from workers.errors import JobError
from workers.speech.synthesizer import PiperSynthesizer


def test_shipped_voice_is_found_in_the_wheel() -> None:
    files = shipped_voice()
    assert files.model.suffix == ".onnx" and files.model.is_file()
    assert files.config.name == files.model.name + ".json" and files.config.is_file()


@pytest.mark.slow
def test_shipped_voice_loads_and_speaks_at_22050_hz() -> None:
    """Default settings (the voice's own noise), all onnxruntime threads left at one."""
    synth = PiperSynthesizer.with_shipped_voice(intra_op_threads=1)
    assert not synth.health()
    with synth:
        assert synth.health()
        audio = synth.synthesize("Hello world, this is a test.", SHIPPED_VOICE_NAME, 1.0)
    assert not synth.health()
    assert synth.name == "piper"
    assert synth.sample_rate == 22050
    assert synth.voices() == ["joe"]
    assert audio.dtype == np.int16 and audio.ndim == 1
    assert 0.8 < len(audio) / 22050 < 5.0
    rms = float(np.sqrt(np.mean(audio.astype(np.float64) ** 2)))
    assert rms > 500, f"audio is near silent (rms {rms:.0f})"
    assert int(np.abs(audio).max()) > 10_000


@pytest.mark.slow
def test_noise_off_is_deterministic(piper: PiperSynthesizer) -> None:
    first = piper.synthesize("Same words twice.", "joe", 1.0)
    second = piper.synthesize("Same words twice.", "joe", 1.0)
    assert np.array_equal(first, second)


@pytest.mark.slow
def test_speed_two_is_much_shorter_and_half_is_longer(piper: PiperSynthesizer) -> None:
    sentence = "The weather today is bright and clear over the hills."
    normal = len(piper.synthesize(sentence, "joe", 1.0))
    fast = len(piper.synthesize(sentence, "joe", 2.0))
    slow = len(piper.synthesize(sentence, "joe", 0.5))
    assert fast < 0.65 * normal
    assert slow > 1.5 * normal


@pytest.mark.slow
def test_unknown_voice_lists_the_known_ones(piper: PiperSynthesizer) -> None:
    with pytest.raises(JobError, match="use one of joe$") as info:
        piper.synthesize("Hi.", "nobody", 1.0)
    assert info.value.code is ErrorCode.UNKNOWN_VOICE
    assert "'nobody'" in str(info.value) and "joe" in str(info.value)


def test_synthesize_before_start_says_so() -> None:
    synth = PiperSynthesizer.with_shipped_voice()
    with pytest.raises(RuntimeError, match=r"start\(\)"):
        synth.synthesize("Hi.", "joe", 1.0)


@pytest.mark.slow
def test_nonpositive_speed_is_refused(piper: PiperSynthesizer) -> None:
    with pytest.raises(ValueError, match="speed"):
        piper.synthesize("Hi.", "joe", 0.0)


def test_voices_from_a_folder_and_by_path(tmp_path: Path) -> None:
    shipped = shipped_voice()
    (tmp_path / "amy.onnx").symlink_to(shipped.model)
    (tmp_path / "amy.onnx.json").symlink_to(shipped.config)
    (tmp_path / "orphan.onnx").symlink_to(shipped.model)  # no config: not a voice
    assert voices_in_folder(tmp_path) == {"amy": VoiceFiles.from_model(tmp_path / "amy.onnx")}

    synth = PiperSynthesizer.with_shipped_voice(
        voice_dir=tmp_path, extra={"joe2": shipped.model}
    )
    assert synth.voices() == ["amy", "joe", "joe2"]


def test_a_voice_name_given_twice_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(VoiceLoadError, match="joe"):
        PiperSynthesizer.with_shipped_voice(extra={"joe": shipped_voice().model})


def test_missing_or_bad_voice_files_fail_at_construction(tmp_path: Path) -> None:
    with pytest.raises(VoiceLoadError, match="does not exist"):
        voices_in_folder(tmp_path / "nope")
    with pytest.raises(VoiceLoadError, match="bad voice config"):
        PiperSynthesizer({"x": VoiceFiles.from_model(tmp_path / "x.onnx")})
    with pytest.raises(VoiceLoadError, match="no voices"):
        PiperSynthesizer({})


def test_voices_with_different_sample_rates_are_refused(tmp_path: Path) -> None:
    shipped = shipped_voice()
    config = json.loads(shipped.config.read_text())
    config["audio"]["sample_rate"] = 16000
    (tmp_path / "low.onnx").symlink_to(shipped.model)
    (tmp_path / "low.onnx.json").write_text(json.dumps(config))
    with pytest.raises(VoiceLoadError, match="sample rate"):
        PiperSynthesizer.with_shipped_voice(voice_dir=tmp_path)


@pytest.mark.slow
def test_start_loads_each_voice_once(piper: PiperSynthesizer) -> None:
    voice_before = piper._loaded["joe"]
    piper.start()
    assert piper._loaded["joe"] is voice_before
