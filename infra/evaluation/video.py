"""Video section of `genloom eval`: the default video model's per-frame digit accuracy, temporal
consistency and motion accuracy (`infra.models.digits.video.evaluate_video`), or why it was not run."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from infra.models.digits import MODELS_DIR

VIDEO_MODEL_DIR = MODELS_DIR / "digits-video"


def shown(folder: Path) -> str:
    """A model folder as the report names it: relative to the repository when inside it."""
    folder = Path(folder).resolve()
    return str(folder.relative_to(MODELS_DIR.parent)) if folder.is_relative_to(MODELS_DIR.parent) else str(folder)


def evaluate_video(folder: Path = VIDEO_MODEL_DIR, *, quick: bool = False) -> dict[str, Any]:
    """Per-frame conditional accuracy, temporal consistency and motion-follows-caption."""
    from infra.models.digits.video import evaluate_video as measure

    folder = Path(folder)
    if not (folder / "unet").is_dir():
        return {"available": False, "folder": shown(folder), "reason": "no trained video model folder"}
    return {"available": True, "folder": shown(folder), "quick": quick, **measure(folder, quick=quick)}
