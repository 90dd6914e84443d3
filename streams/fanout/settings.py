"""Fan-out and webhook settings, read once by `python -m streams`."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.redis import keys


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
