"""Settings of the stream processors (`python -m streams`): the faust app, the fan-out and its webhooks."""

from __future__ import annotations

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.net.ssrf import TargetPolicy, parse_networks
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
    fanout: bool = Field(
        default=True, description="Run the fan-out agent in this process (off in a processor that runs one split-out"
        " preparation stage).",
    )


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
    """Read by the streams process (delivery) and by the gateway (submit-time checks, tenant keys)."""

    model_config = SettingsConfigDict(env_prefix="GENLOOM_WEBHOOK_", extra="ignore", frozen=True)

    secret: SecretStr | None = Field(
        default=None,
        description="Master key; each tenant signs with HMAC-SHA256(master, tenant) (GET /v1/webhooks/secret)."
        " Unset disables webhooks: a job that asks for one is refused.",
    )
    allow_networks: str = Field(
        default="",
        description="Comma-separated CIDRs a webhook may reach although they are loopback, private,"
        " link-local or otherwise internal (e.g. `10.1.2.0/24`). Empty: public addresses only.",
    )
    resolve_timeout_s: float = Field(default=5.0, gt=0, description="Longest DNS lookup of a webhook host.")
    max_attempts: int = Field(default=5, ge=1, description="Tries per delivery, the first included.")
    backoff_s: float = Field(default=0.5, gt=0, description="Wait before the first retry; doubles each time.")
    backoff_max_s: float = Field(default=30.0, gt=0, description="Longest wait between retries.")
    timeout_s: float = Field(
        default=10.0, gt=0,
        description="Deadline of one whole attempt (resolve, connect, send, read), not per read.",
    )
    max_response_bytes: int = Field(
        default=4096, ge=0, description="Most bytes of a receiver's answer read; the rest is discarded unread."
    )
    progress_interval_s: float = Field(
        default=5.0, ge=0, description="At most one progress webhook per job in this many seconds."
    )
    max_pending: int = Field(
        default=1000, ge=1,
        description="Deliveries held in memory at once; beyond it the outbox is read no further until some end.",
    )
    concurrency: int = Field(default=32, ge=1, description="HTTP requests in flight at once, all tenants.")
    tenant_max_pending: int = Field(
        default=100, ge=1,
        description="Deliveries one tenant may hold in memory; more wait in the outbox (taken up again later).",
    )
    tenant_concurrency: int = Field(default=4, ge=1, description="HTTP requests in flight at once per tenant.")
    outbox_maxlen: int = Field(
        default=keys.WEBHOOK_OUTBOX_MAXLEN, ge=1,
        description="Most deliveries kept in the Redis outbox stream (approximate; oldest trimmed first).",
    )
    claim_idle_s: float = Field(
        default=30.0, gt=0,
        description="An outbox entry idle this long in another deliverer's hands (it died) is taken over.",
    )
    mark_ttl_s: int = Field(default=keys.WEBHOOK_MARK_TTL_S, ge=1, description="Expiry of delivered markers.")

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    def policy(self) -> TargetPolicy:
        return TargetPolicy(allow=parse_networks(self.allow_networks), resolve_timeout_s=self.resolve_timeout_s)

    def master(self) -> bytes | None:
        return self.secret.get_secret_value().encode() if self.secret else None


def _names(value: str) -> frozenset[str]:
    return frozenset(n.strip() for n in value.split(",") if n.strip())


class PrepareSettings(BaseSettings):
    """The preparation processor on `genloom.requests` (streams/prepare): which stages it chains.

    Read by the streams process, and by the gateway, which routes a job straight to its modality's
    topic only when every stage is off for its tenant.
    """

    model_config = SettingsConfigDict(env_prefix="GENLOOM_PREPARE_", extra="ignore", frozen=True)

    stages: str = Field(
        default="privacy",
        description="Comma-separated stages this processor runs, in order (privacy, and embedding, cache when"
        " installed). Empty: the processor only validates and routes.",
    )
    input: str = Field(
        default="genloom.requests",
        description="Topic the processor reads. A stage split out into its own processor reads the topic the"
        " one before it writes.",
    )
    output: str = Field(
        default="jobs",
        description="Where prepared jobs go: `jobs` (genloom.jobs.<modality>, the last processor) or a topic"
        " name that the next processor reads as its input.",
    )
    batch_max: int = Field(default=32, ge=1, description="Most requests prepared in one batch (what was polled).")
    off_tenants: str = Field(
        default="",
        description="Comma-separated tenants for whom every stage is off: their jobs go straight to the workers.",
    )

    def stage_names(self) -> list[str]:
        return [n.strip() for n in self.stages.split(",") if n.strip()]

    def all_off(self, tenant: str) -> bool:
        return not self.stage_names() or tenant in _names(self.off_tenants)


class PrivacySettings(BaseSettings):
    """The privacy stage (streams/privacy) and the gateway's restoration of redacted values."""

    model_config = SettingsConfigDict(env_prefix="GENLOOM_PRIVACY_", extra="ignore", frozen=True)

    key: SecretStr | None = Field(
        default=None,
        description="Key that encrypts each job's placeholder mapping in Redis (AES-GCM; any string, hashed to"
        " 256 bits); the same on the streams processes and the gateway. Unset: values are redacted but never"
        " restored (`genloom up` generates one).",
    )
    redact_off_tenants: str = Field(
        default="", description="Comma-separated tenants whose prompts are not redacted."
    )
    restore_off_tenants: str = Field(
        default="", description="Comma-separated tenants who see placeholders instead of their values restored."
    )
    score_threshold: float = Field(
        default=0.35, ge=0.0, le=1.0, description="Lowest presidio score that counts as a find."
    )
    ner_max_chars: int = Field(
        default=32_000, ge=0,
        description="Longest prompt field spaCy's entity recognizer reads; a longer one is searched by genloom's own"
        " recognizers only (all pattern types; names by given-name list, titles, introductions), so one huge"
        " prompt cannot stall its batch.",
    )

    def redacts(self, tenant: str) -> bool:
        return tenant not in _names(self.redact_off_tenants)

    def restores(self, tenant: str) -> bool:
        return self.key is not None and tenant not in _names(self.restore_off_tenants)

    def key_bytes(self) -> bytes | None:
        return self.key.get_secret_value().encode() if self.key else None
