"""Conditional accuracy of the digit model: does "a handwritten seven" give a seven?

Each digit is drawn from every caption form (seen in training, and held out), each image with its
own seed, and judged by `DigitClassifier`, which learnt from real digits only.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from .classifier import DigitClassifier
from .data import HELDOUT_FORMS, TRAIN_FORMS, captions
from .pipeline import DigitsPipeline


@dataclass(frozen=True)
class ImageEval:
    accuracy: float  #: over every image drawn
    train_forms: float  #: captions of forms seen in training
    heldout_forms: float  #: captions of forms never seen in training
    per_digit: list[float]
    images: int
    images_per_s: float
    guidance: float
    steps: int


def evaluate_image(pipe: DigitsPipeline, judge: DigitClassifier, *, per_caption: int = 2, guidance: float = 2.0,
                   steps: int = 25, seed: int = 1234, batch_size: int = 64,
                   forms: tuple[tuple[str, ...], tuple[str, ...]] = (TRAIN_FORMS, HELDOUT_FORMS),
                   on_batch: Callable[[torch.Tensor], None] | None = None) -> ImageEval:
    """Draw every digit from every caption form ``per_caption`` times and judge each image;
    ``on_batch`` receives each batch of images (B, 1, 16, 16) in [0, 1] as it is drawn (the FID and
    the progress bar of `genloom eval` use it)."""
    rows: list[tuple[int, bool, str]] = []  # (digit, held out, caption) per image
    for heldout, group in enumerate(forms):
        rows += [(d, bool(heldout), c) for d, c in captions(group) for _ in range(per_caption)]
    predicted: list[int] = []
    start = time.perf_counter()
    for lo in range(0, len(rows), batch_size):
        chunk = rows[lo:lo + batch_size]
        gens = [torch.Generator().manual_seed(seed + lo + i) for i in range(len(chunk))]
        pixels = pipe.sample([c for _, _, c in chunk], steps=steps, guidance=guidance, generator=gens)
        predicted += [int(p) for p in judge.predict(pixels)]
        if on_batch is not None:
            on_batch(pixels)
    elapsed = time.perf_counter() - start
    right = [p == d for p, (d, _, _) in zip(predicted, rows)]

    def share(keep) -> float:
        picked = [r for r, row in zip(right, rows) if keep(row)]
        return sum(picked) / max(1, len(picked))

    return ImageEval(
        accuracy=sum(right) / len(right),
        train_forms=share(lambda row: not row[1]),
        heldout_forms=share(lambda row: row[1]),
        per_digit=[share(lambda row, d=d: row[0] == d) for d in range(10)],
        images=len(rows),
        images_per_s=len(rows) / elapsed,
        guidance=guidance,
        steps=steps,
    )
