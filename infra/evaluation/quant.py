"""Quantisation section of `genloom eval` (issue 14, item 6): int8 dynamic quantisation
(`torch.ao.quantization.quantize_dynamic` on every `nn.Linear`: int8 weights, activations quantised
per batch at run time) of the text model and of the digit UNet, on CPU, against the float32 models:
speed, weight memory and quality (perplexity for text, conditional accuracy for the UNet).

Dynamic quantisation only covers Linear (and recurrent) layers. The text model is almost all Linear,
so it gains; the UNet's compute is mostly convolutions, which dynamic quantisation leaves in float32
(they would need static quantisation with calibration, or a compiler such as torch.compile with an
int8 backend); `linear_share` says how much of each model it could reach.
"""

from __future__ import annotations

import copy
import io
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from torch import nn

from infra.models.digits import IMAGE_MODEL_DIR


def _quiet(_: str) -> None:
    pass


def quantise_linear(model: nn.Module) -> nn.Module:
    """An int8 dynamically quantised copy of ``model`` (its Linear layers); ``model`` is untouched."""
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():  # torch.ao.quantization is deprecated in favour of torchao (not here)
        warnings.simplefilter("ignore")
        return quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=torch.qint8)


def _plain(model: nn.Module) -> nn.Module:
    """``model`` (a float32 text model as the loader serves it) with plain ``nn.Linear`` layers again: its
    weights packed into oneDNN's layout (`infra.models.invariant.pack_float32`) are opaque tensors, which
    ``quantize_dynamic``'s copy cannot take. Every packed float32 layer kept its plain weight. In place."""
    from infra.models.invariant import PackedLinear

    for module in model.modules():
        if isinstance(module, PackedLinear) and module.weight.numel():
            module.packed = None
            module.__class__ = nn.Linear
    return model


def weight_bytes(model: nn.Module) -> int:
    """Bytes of the serialised state dict: what the weights take in memory, packed int8 included."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell()


def linear_share(model: nn.Module) -> float:
    """Share of the weights (parameter count, a tied weight once) that only Linear layers use: a
    weight tied to an embedding (SmolLM2's output head) counts as the embedding's."""
    others = {id(p) for m in model.modules() if not isinstance(m, nn.Linear) for p in m.parameters(recurse=False)}
    params = {id(p): p for p in model.parameters()}
    linear = {id(p) for m in model.modules() if isinstance(m, nn.Linear) for p in m.parameters(recurse=False)}
    return sum(params[i].numel() for i in linear - others if i in params) / sum(p.numel() for p in params.values())


def linear_flop_share(model: nn.Module, run: Callable[[], Any]) -> float:
    """Share of the multiply-accumulates of ``model``'s Linear and Conv2d layers (the layers that
    dominate these models) that Linear layers do while ``run()`` calls it; counted with forward hooks."""
    macs = {"linear": 0, "conv": 0}

    def on_linear(m: nn.Linear, _inp: Any, out: torch.Tensor) -> None:
        macs["linear"] += out.numel() * m.in_features

    def on_conv(m: nn.Conv2d, _inp: Any, out: torch.Tensor) -> None:
        macs["conv"] += out.numel() * (m.in_channels // m.groups) * m.kernel_size[0] * m.kernel_size[1]

    hooks = [m.register_forward_hook(on_linear) for m in model.modules() if isinstance(m, nn.Linear)]
    hooks += [m.register_forward_hook(on_conv) for m in model.modules() if isinstance(m, nn.Conv2d)]
    try:
        with torch.inference_mode():
            run()
    finally:
        for h in hooks:
            h.remove()
    return macs["linear"] / max(1, macs["linear"] + macs["conv"])


#: genloom's own int8 weights (infra/models/int8.py): what the text worker serves with GENLOOM_TEXT_DTYPE=int8
INT8_WEIGHTS = "int8 weights, float32 activations (served)"


def quantise_text(*, quick: bool = False, note: Callable[[str], None] = _quiet) -> list[dict[str, Any]]:
    """Rows of the table for the text model: float32 and int8."""
    from infra.evaluation.text import answer, corpus_perplexity, load_references, sklearn_prose
    from infra.models import int8
    from infra.models.loader import TextModelSpec, load_text_model

    loaded = load_text_model(TextModelSpec(device="cpu", dtype="float32"))
    prose = sklearn_prose()[: 6 if quick else None]
    prompts = [r.prompt for r in load_references()][: 3 if quick else 8]
    rows = []
    for name, model in (("float32", loaded.model), (INT8_WEIGHTS, None), ("int8 dynamic (Linear)", None)):
        if model is None and name == INT8_WEIGHTS:
            if not int8.available():
                continue
            note("quant: loading the text model with int8 weights")
            model = load_text_model(TextModelSpec(device="cpu", dtype="int8")).model
        elif model is None:
            note("quant: quantising the text model")
            model = quantise_linear(_plain(loaded.model))
        note(f"quant: text {name}")
        ppl, _ = corpus_perplexity(model, loaded.tokenizer, prose)
        _, tokens, seconds = answer(model, loaded.tokenizer, prompts)
        rows.append({"model": "text (SmolLM2-135M)", "variant": name, "weight_mb": weight_bytes(model) / 1e6,
                     "speed": tokens / seconds, "speed_unit": "tokens/s", "quality": ppl,
                     "quality_name": "perplexity, sklearn prose (lower is better)",
                     "linear_share": linear_share(loaded.model)})
    return rows


def quantise_unet(folder: Path = IMAGE_MODEL_DIR, *, quick: bool = False,
                  note: Callable[[str], None] = _quiet) -> list[dict[str, Any]]:
    """Rows of the table for the digit UNet: float32 and int8, conditional accuracy on a subset of
    the caption forms (the same images' seeds for both)."""
    from infra.models.digits.classifier import DigitClassifier
    from infra.models.digits.data import HELDOUT_FORMS, TRAIN_FORMS
    from infra.models.digits.evaluate import evaluate_image
    from infra.models.digits.pipeline import DigitsPipeline

    if not (Path(folder) / "unet").is_dir():
        return []
    judge = DigitClassifier.train()
    pipe = DigitsPipeline.from_folder(Path(folder)).to("cpu")
    pipe.set_progress_bar_config(disable=True)
    forms = (TRAIN_FORMS[:2], HELDOUT_FORMS[:1]) if quick else (TRAIN_FORMS[:5], HELDOUT_FORMS[:3])
    float_unet = pipe.unet
    flops = linear_flop_share(float_unet, lambda: pipe.sample(["a handwritten seven"], steps=1))
    rows = []
    for name in ("float32", "int8 dynamic (Linear)"):
        if name != "float32":
            note("quant: quantising the UNet")
            pipe.unet = quantise_linear(float_unet)
        note(f"quant: UNet {name}")
        result = evaluate_image(pipe, judge, per_caption=1, forms=forms)
        rows.append({"model": "image UNet (digits-image)", "variant": name, "weight_mb": weight_bytes(pipe.unet) / 1e6,
                     "speed": result.images_per_s, "speed_unit": "images/s (25 steps)", "quality": result.accuracy,
                     "quality_name": f"conditional accuracy, {result.images} images (higher is better)",
                     "linear_share": linear_share(float_unet), "linear_flop_share": flops})
    pipe.unet = float_unet
    return rows


def evaluate_quantisation(folder: Path = IMAGE_MODEL_DIR, *, quick: bool = False,
                          note: Callable[[str], None] = _quiet) -> dict[str, Any]:
    return {"available": True, "threads": torch.get_num_threads(), "engine": torch.backends.quantized.engine,
            "rows": quantise_text(quick=quick, note=note) + quantise_unet(folder, quick=quick, note=note)}
