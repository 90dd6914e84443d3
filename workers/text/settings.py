"""Text worker settings."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class TextSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_TEXT_", extra="ignore", frozen=True)

    model: str | None = Field(
        default=None, description="HF model id or folder; unset serves SmolLM2-135M-Instruct from its wheel."
    )
    revision: str | None = Field(default=None, description="Model revision (branch, tag or commit).")
    dtype: str = Field(default="auto", description="auto (float32 on CPU, bfloat16 on GPU), float32, bfloat16, float16.")
    device: str = Field(default="auto", description="auto, cpu, cuda, cuda:N.")
    cache_dir: Path = Field(
        default=Path.home() / ".cache" / "genloom" / "models", description="Dequantised model cache."
    )
    served_name: str = Field(
        default="smollm2-135m-instruct", description="Model name clients ask for (`model` in requests)."
    )
    max_batch_size: int = Field(default=16, ge=1, description="Sequences decoded together per step.")
    max_batch_tokens: int = Field(default=8192, ge=2, description="Token budget of the running batch.")
    engine_process: bool = Field(
        default=True,
        description="Run the engine in a child process, so its steps do not share the GIL with the worker's"
        " Kafka I/O; false runs it on a thread of the worker.",
    )
    max_prefill_tokens: int = Field(
        default=512, ge=1, description="Prompt tokens prefilled per step; bounds how long new arrivals stall running ones."
    )
