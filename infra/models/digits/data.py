"""The training data: scikit-learn's handwritten digits (8x8, upscaled to 16x16) and their captions.

Each digit has many caption forms, embedded with all-MiniLM-L6-v2, so that the model is conditioned
on what a sentence means rather than on a label: a prompt never seen in training lands near the
captions of its digit. Some forms are held out of training to measure exactly that.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

#: pixel side the models generate (the 8x8 digits upscaled twice)
SIDE = 16
WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")

#: caption forms seen in training; {w} is the word, {d} the numeral
TRAIN_FORMS = (
    "a handwritten {w}",
    "the digit {d}",
    "number {w}",
    "{d}",
    "{w}",
    "a picture of the number {d}",
    "digit {w}, thick strokes",
    "a {w} written by hand",
    "handwritten digit {d}",
    "the number {w}, thin strokes",
    "an image of a {w}",
    "{w}, drawn with a pen",
    "the numeral {d}",
    "a scanned {w}",
)
#: caption forms never seen in training, for the evaluation of unseen wording
HELDOUT_FORMS = (
    "a hand-drawn {w}",
    "show me the number {d}",
    "number {w}, thick strokes",
    "a sketch of the digit {w}",
)


def captions(forms: tuple[str, ...]) -> list[tuple[int, str]]:
    """(digit, caption) for every digit and form."""
    return [(d, f.format(w=WORDS[d], d=d)) for d in range(10) for f in forms]


@dataclass(frozen=True)
class Digits:
    images: torch.Tensor  #: (N, 1, 16, 16) in [-1, 1]
    labels: torch.Tensor  #: (N,) int64
    sha256: str  #: of the raw 8x8 images and labels, for the model card


def upscale(images8: np.ndarray) -> torch.Tensor:
    """(N, 8, 8) values 0..16 -> (N, 1, 16, 16) in [-1, 1], bilinear."""
    x = torch.from_numpy(np.asarray(images8, dtype=np.float32) / 16.0).unsqueeze(1)
    x = F.interpolate(x, size=(SIDE, SIDE), mode="bilinear", align_corners=False)
    return x.clamp(0, 1) * 2 - 1


def load_digits(split: str = "train") -> Digits:
    """The 1797 digits, split 80/20 by a fixed permutation: "train", "test" or "all"."""
    from sklearn.datasets import load_digits as sk_digits

    raw = sk_digits()
    images, labels = raw.images.astype(np.float32), raw.target.astype(np.int64)
    digest = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
    order = np.random.default_rng(0).permutation(len(labels))
    cut = int(0.8 * len(labels))
    idx = {"train": order[:cut], "test": order[cut:], "all": order}[split]
    return Digits(upscale(images[idx]), torch.from_numpy(labels[idx]), digest)
