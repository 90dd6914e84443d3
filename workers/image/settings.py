"""Image worker settings (``GENLOOM_IMAGE_*``), read once by ``create_handler()``."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from schemas.enums import ImageScheduler


class ImageSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_IMAGE_", extra="ignore", frozen=True)

    model: str | None = Field(
        default=None,
        description="Diffusers model id (from the local hub cache) or folder; unset builds the tiny "
        "random pipeline once into GENLOOM_CACHE_DIR/models/tiny-sd.",
    )
    device: str | None = Field(default=None, description="cpu, cuda or cuda:N; unset picks CUDA when present.")
    max_batch_size: int = Field(default=4, ge=1, description="Most jobs of one shape in one pipeline call.")
    max_wait_ms: int = Field(
        default=50, ge=0, description="How long a job waits for companions of its shape before its batch runs."
    )
    width: int | None = Field(default=None, ge=8, description="Default width; unset = the model's native size.")
    height: int | None = Field(default=None, ge=8, description="Default height; unset = the model's native size.")
    steps: int = Field(default=30, ge=1, description="Default denoising steps.")
    guidance: float = Field(default=7.0, ge=0.0, description="Default classifier-free guidance scale.")
    scheduler: ImageScheduler = Field(default=ImageScheduler.DPM_SOLVER, description="Default scheduler.")
    max_side: int = Field(default=2048, ge=8, description="Largest width or height served (invalid_size above).")
    max_steps: int = Field(default=100, ge=1, description="Most denoising steps a job may ask for.")
    max_n: int = Field(default=8, ge=1, description="Most images per job.")
