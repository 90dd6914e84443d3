"""Settings shared by every worker process (`python -m workers <role>`)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class WorkerSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_WORKER_", extra="ignore", frozen=True)

    id: str | None = Field(default=None, description="Worker instance id; default host-pid.")
    max_concurrency: int | None = Field(
        default=None, ge=1, description="Jobs in flight per worker; default is the engine's."
    )
    cancel_lookback_s: float = Field(
        default=3600.0, description="How far back a starting worker reads cancels."
    )
    torch_threads: int = Field(default=0, ge=0, description="torch threads; 0 keeps torch's default. `genloom up`"
                               " sets all cores but one for its generation workers (and OMP_NUM_THREADS=1 for"
                               " its other processes) where neither is set.")
    read_ahead: int = Field(
        default=64, ge=0,
        description="Jobs read beyond max_concurrency and queued per tenant, so that free slots go to tenants"
        " fairly; 0 starts jobs in arrival order.",
    )
    started_hold_ms: int = Field(
        default=250, ge=0,
        description="A job's `started` goes out together with its first output (a token, a progress step) when that"
        " comes within this long, else when it ends: one wake-up of every stage downstream instead of two, and none"
        " of them while the engine prefills the prompt. 0 sends it at once.",
    )
    tenant_weights: dict[str, Annotated[int, Field(ge=1)]] = Field(
        default_factory=dict,
        description='Share of a worker\'s slots per tenant, as JSON ({"acme": 3}); unlisted tenants weigh 1.',
    )
