"""Speech worker settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class SpeechSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_SPEECH_", extra="ignore", frozen=True)

    voice_dir: Path | None = Field(default=None, description="Folder of extra piper voices (.onnx + .onnx.json).")
    threads: int = Field(default=1, ge=0, description="onnxruntime threads per synthesis; 0 = its default.")
    max_concurrency: int = Field(default=2, ge=1, description="Speech jobs in flight per worker.")
