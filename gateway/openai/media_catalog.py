"""The image, video and speech models this deployment serves, with the limits their workers apply,
so that the gateway rejects a request they would refuse before anything is queued.

Built from the workers' own settings (the same ``GENLOOM_IMAGE_*`` / ``GENLOOM_VIDEO_*`` /
``GENLOOM_SPEECH_*`` environment), without loading any model.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

#: the name the piper speech model is served under
SPEECH_MODEL = "piper"
#: frames per second when a video request names none (VideoParams' default)
DEFAULT_FPS = 8


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


@dataclass(frozen=True)
class MediaCatalog:
    image: ImageModel
    video: VideoModel
    speech: SpeechModel

    @classmethod
    def from_settings(cls) -> MediaCatalog:
        from infra.models.settings import ImageSettings
        from infra.models.settings import SpeechSettings
        from infra.models.settings import VideoSettings

        image, video = ImageSettings(), VideoSettings()
        return cls(
            ImageModel(image.model or "tiny-sd", image.max_side, image.max_steps, image.max_n),
            VideoModel(video.model or "tiny-animatediff", video.max_side, video.max_steps, video.max_frames,
                       video.max_fps, video.frames),
            SpeechModel(SPEECH_MODEL, installed_voices(SpeechSettings().voice_dir)),
        )


def installed_voices(voice_dir: Path | None) -> frozenset[str]:
    """The voices the speech worker loads: the shipped one plus those in `voice_dir` (files only)."""
    from workers.speech.errors import VoiceLoadError
    from workers.speech.synthesizer import SHIPPED_VOICE_NAME, shipped_voice, voices_in_folder

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
