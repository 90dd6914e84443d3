"""Video worker settings (``GENLOOM_VIDEO_*``), read once by ``create_handler()``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class VideoSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_VIDEO_", extra="ignore", frozen=True)

    model: str | None = Field(
        default=None,
        description="Diffusers model id (from the local hub cache) or folder; unset builds the tiny "
        "random AnimateDiff pipeline once into GENLOOM_CACHE_DIR/models/tiny-animatediff.",
    )
    device: str | None = Field(default=None, description="cpu, cuda or cuda:N; unset picks CUDA when present.")
    max_concurrency: int = Field(default=1, ge=1, description="Video jobs in flight per worker.")
    width: int | None = Field(default=None, ge=8, description="Default width; unset = the model's native size.")
    height: int | None = Field(default=None, ge=8, description="Default height; unset = the model's native size.")
    frames: int = Field(default=16, ge=1, description="Default number of frames.")
    steps: int = Field(default=25, ge=1, description="Default denoising steps.")
    guidance: float = Field(default=7.5, ge=0.0, description="Default classifier-free guidance scale.")
    max_side: int = Field(default=1024, ge=8, description="Largest width or height served (invalid_size above).")
    max_steps: int = Field(default=100, ge=1, description="Most denoising steps a job may ask for.")
    max_frames: int = Field(default=32, ge=1, description="Most frames a job may ask for.")
    max_fps: int = Field(default=60, ge=1, description="Highest frame rate a job may ask for.")
