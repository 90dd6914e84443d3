"""The digit diffusion model's parts: its UNet, its noise schedule and its text conditioning.

The UNet works in pixel space (16x16, one channel: no VAE) and reads one conditioning token, the
all-MiniLM-L6-v2 embedding of the prompt, projected to the cross-attention width. The
unconditional token of classifier-free guidance is the zero vector (what caption dropout trains).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from diffusers import DDIMScheduler, UNet2DConditionModel

from infra.models.embedder import Embedder, load_embedder

from .data import SIDE, TRAIN_FORMS, captions

#: width of all-MiniLM-L6-v2's sentence embeddings
TEXT_DIM = 384
#: a prompt whose nearest training caption is less similar than this is outside what the model
#: knows (held-out caption forms score 0.77 or more; "a cat on a sofa" 0.14, "asdkjh qwe" 0.29)
KNOWN_MIN_COSINE = 0.55
#: a prompt this close to captions of two different digits names both (or neither) of them
#: ("a three and a seven" 0.056, "7 and 8" 0.024, "draw something" 0.022; held-out forms 0.07+)
AMBIGUOUS_MARGIN = 0.06


def digit_unet(channels: int = 1, widths: tuple[int, int, int] = (16, 32, 64),
               extra_inputs: int = 0) -> UNet2DConditionModel:
    """About 1.1M parameters: three resolutions (16, 8, 4), cross-attention at the two coarse ones.
    The 16x16 level is kept narrow (16 channels): it costs the most per channel on a CPU. `channels`:
    the pixels' channels (the video model's frames), `widths`: each level's, `extra_inputs`: channels
    of conditioning images concatenated to the noisy pixels (the video model's keyframe)."""
    return UNet2DConditionModel(
        sample_size=SIDE,
        in_channels=channels + extra_inputs,
        out_channels=channels,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
        block_out_channels=widths,
        layers_per_block=1,
        cross_attention_dim=64,
        encoder_hid_dim=TEXT_DIM,
        encoder_hid_dim_type="text_proj",
        attention_head_dim=8,
        norm_num_groups=8,
    )


def digit_scheduler() -> DDIMScheduler:
    """The DDPM training schedule (linear betas, 1000 steps); pixels are clipped to [-1, 1]."""
    return DDIMScheduler(
        num_train_timesteps=1000,
        beta_start=1e-4,
        beta_end=0.02,
        beta_schedule="linear",
        clip_sample=True,
        set_alpha_to_one=True,
        steps_offset=0,
    )


@dataclass(frozen=True)
class CaptionMatch:
    """How well a prompt matches what the model was trained on."""

    confidence: float  #: cosine of the prompt to its nearest training caption
    digit: int  #: the digit of that caption
    margin: float  #: how much closer the best digit's captions are than the next digit's
    nearest: str  #: the nearest training caption

    @property
    def known(self) -> bool:
        return self.confidence >= KNOWN_MIN_COSINE and self.margin >= AMBIGUOUS_MARGIN


class TextConditioner:
    """Prompts to conditioning tokens, and how well a prompt matches the training captions."""

    def __init__(self, embedder: Embedder, pairs: list[tuple[int, str]] | None = None) -> None:
        """``pairs``: the (digit, caption) pairs trained on (the image model's by default)."""
        self._embedder = embedder
        pairs = pairs or captions(TRAIN_FORMS)
        self._digits = np.array([d for d, _ in pairs])
        self._captions = [c for _, c in pairs]
        self._caption_vectors = embedder.encode(self._captions)

    @classmethod
    def default(cls, pairs: list[tuple[int, str]] | None = None) -> TextConditioner:
        return cls(load_embedder(dtype="float32"), pairs)

    def with_captions(self, pairs: list[tuple[int, str]]) -> TextConditioner:
        """The same embedder, matching prompts against other training captions."""
        return TextConditioner(self._embedder, pairs)

    def encode(self, prompts: list[str]) -> torch.Tensor:
        """(B, 1, 384) tokens; an empty prompt gives the unconditional (zero) token."""
        vectors = torch.from_numpy(self._embedder.encode(prompts))
        empty = torch.tensor([not p.strip() for p in prompts])
        vectors[empty] = 0.0
        return vectors.unsqueeze(1)

    def match(self, prompt: str) -> CaptionMatch:
        cos = self._caption_vectors @ self._embedder.encode([prompt])[0]
        best = int(cos.argmax())
        per_digit = np.array([cos[self._digits == d].max() for d in range(10)])
        top2 = np.sort(per_digit)[-2:]
        return CaptionMatch(confidence=float(cos[best]), digit=int(self._digits[best]),
                           margin=float(top2[1] - top2[0]), nearest=self._captions[best])
