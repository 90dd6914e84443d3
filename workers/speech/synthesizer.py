"""Synthesisers turn one sentence into 16-bit mono PCM. `PiperSynthesizer` is the real one."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import numpy.typing as npt

from infra.models.voices import SHIPPED_VOICE_NAME, VoiceFiles, VoiceLoadError, shipped_voice, voices_in_folder

from .errors import unknown_voice

if TYPE_CHECKING:  # piper and onnxruntime are the `speech` extra; imported in start()
    from piper.voice import PiperVoice

_WARM_UP_TEXT = "Ready."


class Synthesizer(Protocol):
    """What the speech engine needs from a text-to-speech model."""

    @property
    def name(self) -> str: ...

    @property
    def sample_rate(self) -> int: ...

    def voices(self) -> list[str]: ...

    def synthesize(self, sentence: str, voice: str, speed: float) -> npt.NDArray[np.int16]:
        """Mono PCM for one sentence; `speed` 2.0 speaks twice as fast."""
        ...


class PiperSynthesizer:
    """Piper VITS voices on onnxruntime (CPU). Each voice is loaded once, in `start()`."""

    def __init__(
        self,
        voices: Mapping[str, VoiceFiles],
        *,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        intra_op_threads: int | None = None,
    ) -> None:
        """`noise_scale` / `noise_w_scale` override the voices' own (0 and 0 make output
        deterministic); `intra_op_threads` caps onnxruntime's threads (None: its default)."""
        if not voices:
            raise VoiceLoadError("no voices configured")
        self._files = dict(voices)
        self._configs = {name: _read_config(files) for name, files in self._files.items()}
        rates = {name: int(cfg["audio"]["sample_rate"]) for name, cfg in self._configs.items()}
        if len(set(rates.values())) != 1:
            raise VoiceLoadError(
                f"voices of one synthesiser must share a sample rate, got {rates}: "
                "serve the others from a second synthesiser"
            )
        self._sample_rate = next(iter(rates.values()))
        self._noise_scale = noise_scale
        self._noise_w_scale = noise_w_scale
        self._intra_op_threads = intra_op_threads
        self._loaded: dict[str, PiperVoice] = {}

    @classmethod
    def with_shipped_voice(
        cls,
        *,
        voice_dir: Path | str | None = None,
        extra: Mapping[str, Path | str] | None = None,
        noise_scale: float | None = None,
        noise_w_scale: float | None = None,
        intra_op_threads: int | None = None,
    ) -> PiperSynthesizer:
        """The shipped voice as "joe", plus every voice in `voice_dir`, plus `extra`
        (name → .onnx path). A name given twice is an error, not an override."""
        voices = {SHIPPED_VOICE_NAME: shipped_voice()}
        sources: list[dict[str, VoiceFiles]] = []
        if voice_dir is not None:
            sources.append(voices_in_folder(voice_dir))
        if extra:
            sources.append({name: VoiceFiles.from_model(path) for name, path in extra.items()})
        for source in sources:
            clash = voices.keys() & source.keys()
            if clash:
                raise VoiceLoadError(f"voice names given twice: {', '.join(sorted(clash))}")
            voices.update(source)
        return cls(
            voices,
            noise_scale=noise_scale,
            noise_w_scale=noise_w_scale,
            intra_op_threads=intra_op_threads,
        )

    @property
    def name(self) -> str:
        return "piper"

    @property
    def sample_rate(self) -> int:
        return self._sample_rate

    def voices(self) -> list[str]:
        return sorted(self._files)

    def start(self) -> None:
        """Load every voice not loaded yet and run one warm-up sentence through it."""
        import onnxruntime
        from piper.config import PiperConfig
        from piper.voice import PiperVoice

        for name, files in self._files.items():
            if name in self._loaded:
                continue
            options = onnxruntime.SessionOptions()
            if self._intra_op_threads is not None:
                options.intra_op_num_threads = self._intra_op_threads
                options.inter_op_num_threads = 1
            try:
                session = onnxruntime.InferenceSession(
                    str(files.model), sess_options=options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own untyped errors
                raise VoiceLoadError(f"voice {name!r}: cannot load {files.model}: {exc}") from exc
            voice = PiperVoice(config=PiperConfig.from_dict(self._configs[name]), session=session)
            self._loaded[name] = voice
            self._run(voice, _WARM_UP_TEXT, 1.0)

    def stop(self) -> None:
        """Drop the loaded voices (and their onnxruntime sessions)."""
        self._loaded.clear()

    def health(self) -> bool:
        """True when every configured voice is loaded."""
        return self._loaded.keys() == self._files.keys()

    def __enter__(self) -> PiperSynthesizer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def synthesize(self, sentence: str, voice: str, speed: float) -> npt.NDArray[np.int16]:
        if voice not in self._files:
            raise unknown_voice(voice, self._files)
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, got {speed}")
        loaded = self._loaded.get(voice)
        if loaded is None:
            raise RuntimeError("PiperSynthesizer.start() must run before synthesize()")
        return self._run(loaded, sentence, speed)

    def _run(self, voice: PiperVoice, sentence: str, speed: float) -> npt.NDArray[np.int16]:
        from piper.config import SynthesisConfig

        settings = SynthesisConfig(
            length_scale=voice.config.length_scale / speed,
            noise_scale=self._noise_scale,
            noise_w_scale=self._noise_w_scale,
        )
        # piper may split one of our sentences further (espeak ends one at "Dr."): join the parts
        parts = [chunk.audio_int16_array for chunk in voice.synthesize(sentence, settings)]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)


def _read_config(files: VoiceFiles) -> dict[str, Any]:
    try:
        with files.config.open(encoding="utf-8") as f:
            config = json.load(f)
        int(config["audio"]["sample_rate"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise VoiceLoadError(f"bad voice config {files.config}: {exc}") from exc
    if not files.model.is_file():
        raise VoiceLoadError(f"voice model {files.model} does not exist")
    return config
