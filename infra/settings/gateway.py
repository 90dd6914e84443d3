"""Gateway settings, read once where the app is built (`python -m gateway`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.redis import keys


class ApiKeySettings(BaseSettings):
    """Who may call the gateway. Keys are hashed on load and never logged."""

    model_config = SettingsConfigDict(env_prefix="GENLOOM_", extra="ignore", frozen=True)

    api_keys: str | None = Field(
        default=None, description='API keys and their tenants: "key1:tenantA,key2:tenantB".'
    )
    api_keys_file: Path | None = Field(
        default=None, description="File with one key:tenant per line (# comments), added to GENLOOM_API_KEYS."
    )


class GatewaySettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_GATEWAY_", extra="ignore", frozen=True)

    max_body_bytes: int = Field(
        default=1024 * 1024, ge=1024, description="Largest request body; larger is 413 before parsing."
    )
    max_inflight: int = Field(
        default=64, ge=1, description="Jobs a tenant may have admitted and unfinished per modality."
    )
    retry_after_s: int = Field(default=2, ge=1, description="Retry-After of a 429.")
    sse_keepalive_s: float = Field(
        default=15.0, gt=0, description="Idle seconds before an SSE keep-alive comment."
    )
    route: Literal["direct", "streams"] = Field(
        default="direct",
        description="Where admitted jobs go: `direct` to genloom.jobs.<modality> (one Kafka hop fewer on the"
        " way to a worker); `streams` to genloom.requests, for the stream processors to forward.",
    )
    publish_timeout_s: float = Field(
        default=10.0, gt=0, description="How long a submit or cancel waits for Kafka before a 503."
    )
    job_ttl_s: int = Field(default=keys.JOB_TTL_S, ge=1, description="Expiry of a job record the gateway creates.")
    inflight_ttl_s: int = Field(
        default=keys.INFLIGHT_TTL_S, ge=1, description="Expiry of an in-flight counter idle that long."
    )
