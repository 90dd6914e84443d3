"""PNG encoding of generated images."""

from __future__ import annotations

import io

from PIL import Image

MIME_PNG = "image/png"


def encode_png(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()
