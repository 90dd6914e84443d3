"""The models this deployment serves, read by the gateway (to validate a request before anything
is queued), by the workers and by the CLI (what can run, what to prepare).

Built from the served-model settings (the same ``GENLOOM_TEXT_*`` / ``GENLOOM_IMAGE_*`` /
``GENLOOM_VIDEO_*`` / ``GENLOOM_SPEECH_*`` environment the workers read), without loading any model;
a text entry loads its tokenizer on request, for prompt lengths.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from schemas.enums import Modality

from .prompt import chat_ids, text_ids
from .settings import ImageSettings, SpeechSettings, TextSettings, VideoSettings
from .voices import (
    OPENAI_SPEECH_MODELS,
    SHIPPED_VOICE_NAME,
    VoiceLoadError,
    openai_voice_table,
    shipped_voice,
    voices_in_folder,
)

log = logging.getLogger(__name__)

#: the name the piper speech model is served under
SPEECH_MODEL = "piper"
OPENAI_SPEECH_MODEL_NAMES = frozenset(OPENAI_SPEECH_MODELS)
#: how often the gateway retries loading a text model's tokenizer that was missing (its files are
#: built by the text worker's first start): often enough to pick it up soon, rarely enough that
#: requests for a model with no files do not each pay a failed load
RELOAD_INTERVAL_S = 5.0
#: the name the digit model trained here is served under when no image model is configured
DEFAULT_IMAGE_MODEL = "digits-image"
#: the video model served when GENLOOM_VIDEO_MODEL is unset (models/digits-video), and its clip length
DEFAULT_VIDEO_MODEL = "digits-video"
DEFAULT_VIDEO_FRAMES = 8
#: the frame count a video job of another model gets when GENLOOM_VIDEO_FRAMES is unset
OTHER_VIDEO_FRAMES = 16
#: frames per second when a video request names none (VideoParams' default)
DEFAULT_FPS = 8
#: the packages a modality's worker imports, and the extra that installs them
REQUIREMENTS: dict[Modality, tuple[tuple[str, ...], str]] = {
    Modality.TEXT: (("torch", "transformers"), "text"),
    Modality.SPEECH: (("piper", "onnxruntime"), "speech"),
    Modality.IMAGE: (("torch", "diffusers", "PIL", "sentence_transformers"), "media"),
    Modality.VIDEO: (("torch", "diffusers", "imageio"), "media"),
}


def available() -> dict[Modality, str | None]:
    """Each modality and why its worker cannot run here (None when it can), found without importing it."""
    status: dict[Modality, str | None] = {}
    for modality, (modules, extra) in REQUIREMENTS.items():
        missing = [m for m in modules if importlib.util.find_spec(m) is None]
        status[modality] = f"needs {', '.join(missing)}: pip install 'genloom[{extra}]'" if missing else None
    return status


# -- text -----------------------------------------------------------------------------------------


@dataclass
class TextModelEntry:
    name: str
    source: str  # folder or model id the tokenizer loads from
    revision: str | None = None
    created: int = field(default_factory=lambda: int(time.time()))
    tokenizer: Any = None
    context_length: int | None = None

    def load(self) -> None:
        """Load the tokenizer and read the context length (blocking; call in a thread)."""
        # transformers is the `text` extra; a gateway without it validates no prompt length
        from transformers import AutoConfig, AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(self.source, revision=self.revision)
        config_file = Path(self.source) / "config.json"
        if config_file.exists():
            self.context_length = int(json.loads(config_file.read_text())["max_position_embeddings"])
        else:
            self.context_length = int(AutoConfig.from_pretrained(self.source).max_position_embeddings)

    def prompt_tokens(self, messages: list[dict[str, str]], raw: bool = False) -> int | None:
        """Tokens of the chat-formatted prompt (of the one message's text as it is, when `raw`), or None
        while the tokenizer is not loaded."""
        if self.tokenizer is None:
            return None
        if raw:
            return len(text_ids(self.tokenizer, messages[0]["content"]))
        return len(chat_ids(self.tokenizer, messages))


class TextModelCatalog:
    def __init__(self, entries: list[TextModelEntry], *, clock: Callable[[], float] = time.monotonic) -> None:
        self._entries = {e.name: e for e in entries}
        self._clock = clock
        self._tried_at: dict[str, float] = {}  # clock time of each entry's last load attempt

    @classmethod
    def from_settings(cls, settings: TextSettings | None = None) -> TextModelCatalog:
        s = settings or TextSettings()
        source = s.model or str(s.cache_dir / "smollm2-135m-instruct")
        return cls([TextModelEntry(s.served_name, source, s.revision)])

    def names(self) -> list[str]:
        return sorted(self._entries)

    def entries(self) -> list[TextModelEntry]:
        return list(self._entries.values())

    def get(self, name: str) -> TextModelEntry | None:
        return self._entries.get(name)

    async def load(self) -> None:
        """Load every tokenizer; a model whose files are not there yet is validated by its worker."""
        for entry in self._entries.values():
            await self._try_load(entry)

    async def ensure_loaded(self) -> None:
        """Retry, at most every RELOAD_INTERVAL_S, the tokenizers that were not there at start.

        On a fresh machine the gateway can start before the text worker has built the model's
        cache; without a retry its prompt-length checks would stay off until a restart.
        """
        now = self._clock()
        for entry in self._entries.values():
            if entry.tokenizer is None and now - self._tried_at.get(entry.name, -RELOAD_INTERVAL_S) >= RELOAD_INTERVAL_S:
                await self._try_load(entry)

    async def _try_load(self, entry: TextModelEntry) -> None:
        self._tried_at[entry.name] = self._clock()
        try:
            await asyncio.to_thread(entry.load)
        except Exception as exc:  # files missing until the worker first builds its cache
            log.warning("tokenizer of %s not loaded (%s): prompt lengths are checked by the worker",
                        entry.name, exc)


# -- image, video, speech -------------------------------------------------------------------------


@dataclass(frozen=True)
class ImageModel:
    name: str
    max_side: int
    max_steps: int
    max_n: int


@dataclass(frozen=True)
class VideoModel:
    name: str
    max_side: int
    max_steps: int
    max_frames: int
    max_fps: int
    frames: int  #: the worker's default


@dataclass(frozen=True)
class SpeechModel:
    name: str
    voices: frozenset[str]
    #: OpenAI voice name -> the installed voice that speaks it
    aliases: dict[str, str] = field(default_factory=dict)
    #: other names the model is requested by (OpenAI's speech models)
    model_aliases: frozenset[str] = OPENAI_SPEECH_MODEL_NAMES


@dataclass(frozen=True)
class MediaCatalog:
    """The image, video and speech models served, with the limits their workers apply."""

    image: ImageModel
    video: VideoModel
    speech: SpeechModel

    @classmethod
    def from_settings(cls, image: ImageSettings | None = None, video: VideoSettings | None = None,
                      speech: SpeechSettings | None = None) -> MediaCatalog:
        image, video, speech = image or ImageSettings(), video or VideoSettings(), speech or SpeechSettings()
        return cls(
            ImageModel(image.model or DEFAULT_IMAGE_MODEL, image.max_side, image.max_steps, image.max_n),
            VideoModel(video.model or DEFAULT_VIDEO_MODEL, video.max_side, video.max_steps, video.max_frames,
                       video.max_fps, video.frames or (OTHER_VIDEO_FRAMES if video.model else DEFAULT_VIDEO_FRAMES)),
            _speech_model(installed_voices(speech.voice_dir), speech.voice_map),
        )


def _speech_model(voices: frozenset[str], voice_map: dict[str, str]) -> SpeechModel:
    return SpeechModel(SPEECH_MODEL, voices, openai_voice_table(voices, voice_map))


def installed_voices(voice_dir: Path | None) -> frozenset[str]:
    """The voices the speech worker loads: the shipped one plus those in `voice_dir` (files only)."""
    names: set[str] = set()
    try:
        shipped_voice()
        names.add(SHIPPED_VOICE_NAME)
    except VoiceLoadError as exc:
        log.warning("%s: speech requests for %r will be refused", exc, SHIPPED_VOICE_NAME)
    if voice_dir is not None:
        try:
            names.update(voices_in_folder(voice_dir))
        except VoiceLoadError as exc:
            log.warning("%s: only the shipped voice is served", exc)
    return frozenset(names)
