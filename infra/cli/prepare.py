"""Model preparation before `genloom up` starts workers: the first run dequantises the default
text model, checks the trained image model is there and builds the small random video pipeline,
with a progress line for each."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from infra.models.settings import ImageSettings, TextSettings, VideoSettings
from schemas.enums import Modality


def _text(cache_dir: Path) -> tuple[str, Callable[[], object]] | None:
    # the loader imports torch and transformers (the `text` extra): only when text is prepared
    from infra.models.loader import TextModelSpec, prepare_text_model

    s = TextSettings()
    spec = TextModelSpec(model=s.model, revision=s.revision, cache_dir=s.cache_dir)
    label = s.model or "SmolLM2-135M-Instruct (dequantised once, about 30 s)"
    return f"text: {label}", lambda: prepare_text_model(spec)


def _trained(kind: str, folder: Path) -> tuple[str, Callable[[], object]]:
    """The check that the default model trained here (committed in models/) is present."""
    def check() -> None:
        if not (folder / "unet").is_dir():
            raise FileNotFoundError(f"the default {kind} model is missing from {folder}: "
                                    f"run `genloom train {kind}`, or set GENLOOM_{kind.upper()}_MODEL")

    return f"{kind}: digit model trained here (models/{folder.name})", check


def _image(cache_dir: Path) -> tuple[str, Callable[[], object]] | None:
    if ImageSettings().model:
        return None
    from infra.models.digits import IMAGE_MODEL_DIR

    return _trained("image", IMAGE_MODEL_DIR)


def _video(cache_dir: Path) -> tuple[str, Callable[[], object]] | None:
    if VideoSettings().model:
        return None
    from infra.models.digits import VIDEO_MODEL_DIR

    return _trained("video", VIDEO_MODEL_DIR)


STEPS = {Modality.TEXT: _text, Modality.IMAGE: _image, Modality.VIDEO: _video}


def prepare(modalities: list[Modality], cache_dir: Path, console: Console) -> None:
    """Build what the given modalities' workers load, showing progress; raises on failure."""
    steps = [step(cache_dir) for m in modalities if (step := STEPS.get(m)) is not None]
    steps = [s for s in steps if s is not None]
    if not steps:
        return
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        for label, run in steps:
            task = progress.add_task(f"preparing {label}", total=1)
            run()
            progress.update(task, completed=1, description=f"ready     {label}")
