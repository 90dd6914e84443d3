"""Gateway settings, read once where the app is built (`python -m gateway`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
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
        default="streams",
        description="Where admitted jobs go: `streams` to genloom.requests, for the preparation stages (privacy,"
        " ...) to prepare and forward, except for tenants with every stage off (GENLOOM_PREPARE_OFF_TENANTS), which"
        " go straight to genloom.jobs.<modality>; `direct` sends every job straight there, unprepared.",
    )
    publish_timeout_s: float = Field(
        default=10.0, gt=0, description="How long a submit or cancel waits for Kafka before a 503."
    )
    job_ttl_s: int = Field(default=keys.JOB_TTL_S, ge=1, description="Expiry of a job record the gateway creates.")
    redis_max_connections: int = Field(
        default=64, ge=2, description="Most Redis connections the gateway process opens (one is the shared replay"
        " reader's; `per_stream` needs one per open stream); a request waits for a free one up to the socket timeout, then answers 503.")
    redis_socket_timeout_s: float = Field(
        default=5.0, gt=0, description="Longest wait for a Redis reply; a slower (paused) Redis is a 503.")
    redis_connect_timeout_s: float = Field(default=2.0, gt=0, description="Longest wait to connect to Redis.")
    replay_reader: Literal["shared", "per_stream"] = Field(
        default="shared", description="How streams follow their jobs' replay logs: `shared`, one reader per process"
        " (one Pub/Sub connection subscribed to the followed logs, entries pushed by the fan-out, backlogs and slow"
        " clients read with XRANGE from their own cursors; each stream holds at most 512 entries); `per_stream`, one"
        " blocking XREAD and pooled connection per open stream, the former path, kept for comparison"
        " (bench/edge_fanout.py).")
    prompt_chars_per_token: int = Field(
        default=32, ge=1, description="Generous bound on characters per token: a chat whose characters exceed the"
        " context times this is refused (context_length_exceeded) without tokenising it.")
    validate_threads: int = Field(
        default=4, ge=1, description="Threads that tokenise and validate chat bodies off the event loop.")
    validate_per_tenant: int = Field(
        default=2, ge=1, description="Of those, how many one tenant's requests may hold at once (the rest wait).")
    max_sse_per_tenant: int = Field(
        default=100, ge=1, description="Job event streams (SSE) a tenant may hold open on one gateway process; more"
        " is 429.")
    max_ws_per_tenant: int = Field(
        default=100, ge=1, description="Job WebSockets a tenant may hold open on one gateway process; more is closed"
        " with 4429.")
    stream_max_lifetime_s: float = Field(
        default=3600.0, gt=0, description="Longest an SSE stream or WebSocket stays open; it then ends with an error"
        " frame telling the client to reconnect with Last-Event-ID.")
    ws_max_frame_bytes: int = Field(
        default=64 * 1024, ge=1024, description="Largest WebSocket frame a client may send (larger: close 1009).")
    ws_messages_per_s: float = Field(
        default=5.0, gt=0, description="Client frames per second a WebSocket may send on average.")
    ws_message_burst: int = Field(
        default=20, ge=1, description="Client frames a WebSocket may send at once; a flood past it is closed 1008.")
    browser_token_secret: SecretStr | None = Field(
        default=None, description="Key of the job-scoped browser tokens (POST /v1/jobs/{id}/token); set the same on"
        " every gateway replica. Unset: each process draws a random one (its tokens work only there).")
    browser_token_ttl_s: int = Field(
        default=300, ge=10, le=3600, description="How long a browser token is accepted after it is issued.")
