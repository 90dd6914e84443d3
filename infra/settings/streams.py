"""Settings of the stream processors (`python -m streams`): the faust app, the fan-out and its webhooks."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.redis import keys


class StreamsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_STREAMS_", extra="ignore", frozen=True)

    app_id: str = Field(default="genloom-streams", description="Faust app id (consumer group).")
    session_timeout_s: float = Field(
        default=6.0, description="Group session timeout; joins take about half of it."
    )
    heartbeat_s: float = Field(default=1.0)
    rebalance_timeout_s: float = Field(default=10.0)
    fetch_max_wait_ms: int = Field(
        default=10, ge=1, description="Consumer fetch wait; the bundled broker never ends a wait early."
    )
    web_port: int = Field(default=0, description="Faust web port; 0 runs without the web server.")
    max_message_bytes: int = Field(default=8 * 1024 * 1024, description="Larger requests are dead-lettered.")


class FanoutSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_FANOUT_", extra="ignore", frozen=True)

    replay_maxlen: int = Field(
        default=keys.REPLAY_MAXLEN, ge=1, description="Most events kept per job's replay log."
    )
    job_ttl_s: int = Field(
        default=keys.JOB_TTL_S, ge=1, description="Expiry of a job's record and replay log after its last event."
    )
    batch_max: int = Field(default=256, ge=1, description="Most events applied to Redis in one pipelined round trip (a batch is what queued up meanwhile).")


class WebhookSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_WEBHOOK_", extra="ignore", frozen=True)

    secret: SecretStr | None = Field(
        default=None, description="HMAC-SHA256 key for X-Genloom-Signature; unset disables webhooks."
    )
    max_attempts: int = Field(default=5, ge=1, description="Tries per delivery, the first included.")
    backoff_s: float = Field(default=0.5, gt=0, description="Wait before the first retry; doubles each time.")
    backoff_max_s: float = Field(default=30.0, gt=0, description="Longest wait between retries.")
    timeout_s: float = Field(default=10.0, gt=0, description="Per-request timeout.")
    progress_interval_s: float = Field(
        default=5.0, ge=0, description="At most one progress webhook per job in this many seconds."
    )
    max_pending: int = Field(
        default=1000, ge=1, description="Deliveries queued or in flight; beyond it new ones are dropped and logged."
    )
    concurrency: int = Field(default=32, ge=1, description="HTTP requests in flight at once.")
    mark_ttl_s: int = Field(default=keys.WEBHOOK_MARK_TTL_S, ge=1, description="Expiry of delivered markers.")
