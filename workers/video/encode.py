"""Frames to MP4 (H.264, yuv420p) through imageio's ffmpeg plugin, and a decode check."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass

import imageio.v2 as imageio
import numpy as np

MIME_MP4 = "video/mp4"


@dataclass(frozen=True)
class VideoInfo:
    frames: int
    width: int
    height: int
    fps: float
    duration_s: float  #: decoded frames / fps
    container_duration_s: float  #: what the MP4 header says
    codec: str
    pix_fmt: str


def encode_mp4(frames: Sequence[np.ndarray], fps: int, quality: int = 8) -> bytes:
    """Encode (H, W, 3) uint8 frames; width and height must be even (yuv420p)."""
    if not frames:
        raise ValueError("cannot encode a video without frames")
    height, width = frames[0].shape[:2]
    if width % 2 or height % 2:
        raise ValueError(f"H.264 yuv420p needs even sizes, got {width}x{height}")
    # ffmpeg seeks back to write the MP4 index, so it writes a real file, not a pipe.
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "out.mp4")
        writer = imageio.get_writer(
            path,
            format="FFMPEG",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            quality=quality,
            macro_block_size=2,  # keep the size as is (the default pads to multiples of 16)
            ffmpeg_log_level="error",
            output_params=["-movflags", "+faststart"],
        )
        try:
            for frame in frames:
                writer.append_data(frame)
        finally:
            writer.close()
        with open(path, "rb") as f:
            return f.read()


def probe_mp4(data: bytes) -> VideoInfo:
    """Decode ``data`` fully and report what it holds."""
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "in.mp4")
        with open(path, "wb") as f:
            f.write(data)
        reader = imageio.get_reader(path, format="FFMPEG")
        try:
            meta = reader.get_meta_data()
            fps = float(meta["fps"])
            count = 0
            height = width = 0
            for frame in reader:
                height, width = frame.shape[:2]
                count += 1
        finally:
            reader.close()
    return VideoInfo(
        frames=count,
        width=width,
        height=height,
        fps=fps,
        duration_s=count / fps,
        container_duration_s=float(meta["duration"]),
        codec=str(meta["codec"]),
        pix_fmt=str(meta["pix_fmt"]).split("(")[0],
    )
