"""Settings of the stream processors (`python -m streams`): the faust app, the fan-out and its webhooks."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from infra.net.ssrf import TargetPolicy, parse_networks
from infra.redis import keys
from schemas.enums import JobStatus, Modality


class StreamsSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_STREAMS_", extra="ignore", frozen=True)

    app_id: str = Field(default="genloom-streams", description="Faust app id (consumer group).")
    session_timeout_s: float = Field(
        default=6.0, description="Group session timeout; joins take about half of it."
    )
    heartbeat_s: float = Field(default=1.0)
    rebalance_timeout_s: float = Field(default=10.0)
    fetch_max_wait_ms: int = Field(
        default=5, ge=1,
        description="Consumer fetch wait; the bundled broker never ends a wait early, so a message waits half of it"
        " on average at each hop into this process (genloom.requests, genloom.events). 5 ms costs about 4% of a core"
        " more when idle than 10 (this process and the broker); with a real Kafka, raise it.",
    )
    background_fetch_gap_ms: int = Field(
        default=200, ge=0,
        description="The cache filler and the memory writer fetch genloom.events at most once per this interval,"
        " each fetch taking what queued up meanwhile: they need no token-level latency, and while tokens stream"
        " their fetches cost the broker and this process CPU the fan-out needs. 0: as eagerly as the fan-out.",
    )
    web_port: int = Field(default=0, description="Faust web port; 0 runs without the web server.")
    max_message_bytes: int = Field(default=8 * 1024 * 1024, description="Larger requests are dead-lettered.")
    fanout: bool = Field(
        default=True, description="Run the fan-out in this process (off in a processor that runs one split-out"
        " preparation stage).",
    )


class FanoutSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="GENLOOM_FANOUT_", extra="ignore", frozen=True)

    replay_maxlen: int = Field(
        default=keys.REPLAY_MAXLEN, ge=1, description="Most events kept per job's replay log."
    )
    job_ttl_s: int = Field(
        default=keys.JOB_TTL_S, ge=1,
        description="Expiry of a job's record and replay log after its last event. While the job runs, the expiry"
                    " is pushed back now and then rather than by every token, so they may live up to a sixteenth"
                    " of this longer (a minute at most).",
    )
    batch_max: int = Field(default=256, ge=1, description="Most events the fan-out takes in one poll (what queued up meanwhile).")
    apply_chunk: int = Field(
        default=32, ge=1,
        description="Events per Redis script call: a poll's events are applied this many at a time, in order, so"
        " the first of a burst (one decode step of a wide batch) reach their streams while the rest are applied."
        " Smaller: earlier first events, a round trip more per slice.",
    )


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
    deliverer_stale_s: float = Field(
        default=30.0, gt=0,
        description="The gateway's /readyz reports webhooks degraded when no deliverer (in a streams process)"
        " has reported for this long; the gateway stays ready (deliveries wait in the outbox).",
    )

    @field_validator("allow_networks")
    @classmethod
    def _networks(cls, value: str) -> str:
        parse_networks(value)
        return value

    def policy(self) -> TargetPolicy:
        return TargetPolicy(allow=parse_networks(self.allow_networks), resolve_timeout_s=self.resolve_timeout_s)

    def master(self) -> bytes | None:
        return self.secret.get_secret_value().encode() if self.secret else None


class ReconcilerSettings(BaseSettings):
    """The streams process's reconciler: in-flight slots checked against job records, and jobs that can
    no longer end by themselves ended with a retryable `failed` (job_lost). A job is lost only after
    no event for longer than its status and modality allow, generously: ending a job that was merely
    slow costs its owner a resubmit, so the limits are many times the expected work between events."""

    model_config = SettingsConfigDict(env_prefix="GENLOOM_RECONCILER_", extra="ignore", frozen=True)

    enabled: bool = Field(default=True, description="Run the reconciler in the streams process.")
    interval_s: float = Field(default=30.0, gt=0, description="Seconds between sweeps.")
    lock_ttl_s: float = Field(
        default=90.0, gt=0,
        description="Expiry of the lock one streams process holds while it sweeps (renewed each sweep); another"
        " takes over this long after the holder died. Longer than interval_s.",
    )
    queued_s: float = Field(
        default=6 * 3600.0, gt=0,
        description="A job no worker has started (no event since it was accepted) is lost after this long: jobs"
        " wait behind others, so this bounds a queue, not a step.",
    )
    text_s: float = Field(
        default=300.0, gt=0, description="A started text job with no event (a token comes every decode step)"
        " for this long is lost.")
    speech_s: float = Field(
        default=300.0, gt=0, description="A started speech job with no audio chunk for this long is lost.")
    image_s: float = Field(
        default=900.0, gt=0, description="A started image job with no progress step for this long is lost.")
    video_s: float = Field(
        default=3600.0, gt=0, description="A started video job with no progress step for this long is lost"
        " (one denoising step of a large video model can take minutes).")

    artifact_sweep_s: float = Field(
        default=3600.0, gt=0,
        description="Seconds between sweeps of the blob store for job artifacts older than GENLOOM_BLOB_TTL_S.",
    )

    def limits(self, modality: str) -> tuple[float, float]:
        """The silence allowed to a queued and to a started job of the modality."""
        return self.silence_limit_s(JobStatus.QUEUED, modality), self.silence_limit_s(JobStatus.RUNNING, modality)

    def silence_limit_s(self, status: str, modality: str) -> float:
        """How long a job of this status and modality may go without an event before it is lost."""
        if status == JobStatus.QUEUED:
            return self.queued_s
        limits = {Modality.TEXT: self.text_s, Modality.SPEECH: self.speech_s, Modality.IMAGE: self.image_s,
                  Modality.VIDEO: self.video_s}
        return limits.get(modality, max(limits.values()))  # a modality added later: the longest until set
def _names(value: str) -> frozenset[str]:
    return frozenset(name.strip() for name in value.split(",") if name.strip())


class EmbeddingSettings(BaseSettings):
    """The embedding stage (streams/embedding)."""

    model_config = SettingsConfigDict(env_prefix="GENLOOM_EMBEDDING_", extra="ignore", frozen=True)

    model: str | None = Field(
        default=None,
        description="Sentence-transformers model folder or id (already local); unset: all-MiniLM-L6-v2 from its wheel.",
    )
    device: str = Field(default="cpu", description="Where the embedder runs: cpu, cuda, cuda:0, ...")
    batch_size: int = Field(default=64, ge=1, description="Most prompts per forward pass.")
    max_chars: int = Field(
        default=2048, ge=16, description="Prompt characters embedded; the model reads 256 word pieces anyway."
    )
    dtype: Literal["auto", "float32", "bfloat16"] = Field(
        default="auto",
        description="The model's weights: auto is bfloat16 on a CPU with native bfloat16 (AVX512-BF16, AMX; about"
        " 0.7x the time per prompt, similarities within 0.004 of float32's) and float32 elsewhere.",
    )
    runtime: Literal["auto", "torch", "onnxruntime"] = Field(
        default="auto",
        description="What runs the model: auto is onnxruntime on a CPU when it is installed (one short prompt in"
        " about half bfloat16 torch's time, a third of float32's; vectors within 1e-4 of torch's), else torch."
        " The ONNX graph is exported once into GENLOOM_CACHE_DIR.",
    )
    recent: int = Field(
        default=4096, ge=0,
        description="Vectors of the texts embedded last kept by SHA-256 digest (about 1.6 KB each): a prompt asked"
        " again is not embedded again. 0 keeps none.",
    )


class CacheSettings(BaseSettings):
    """The semantic cache (streams/cache): where it answers, how alike a prompt must be, its bounds."""

    model_config = SettingsConfigDict(env_prefix="GENLOOM_SEMANTIC_CACHE_", extra="ignore", frozen=True)

    enabled: bool = Field(default=True, description="Run the cache stage (greedy chats and opted-in jobs only).")
    threshold: float = Field(
        default=0.94, ge=0.0, le=1.0,
        description="Least cosine similarity of two prompts for one's answer to serve the other"
        " (chosen by bench/cache_quality.py; see docs/benchmarks.md).",
    )
    ttl_s: int = Field(default=keys.CACHE_TTL_S, ge=1, description="How long an answer may be reused after its job.")
    tenants_opt_in: str = Field(
        default="", description="Comma-separated tenants whose sampled chats use the cache too."
    )
    tenants_off: str = Field(default="", description="Comma-separated tenants the cache is off for.")
    tenants_only: str = Field(
        default="", description="Comma-separated tenants the cache serves, and no other (a canary rollout); empty: all.")
    local_max_entries: int = Field(default=2048, ge=1, description="Most entries in the in-process tier.")
    local_max_bytes: int = Field(default=16 * 1024 * 1024, ge=1024, description="Most bytes in the in-process tier.")
    shared: bool = Field(default=True, description="Use the shared Redis tier (GENLOOM_REDIS_URL) as well.")
    shared_max_entries: int = Field(default=keys.CACHE_MAX_ENTRIES, ge=1, description="Most entries in Redis.")
    shared_max_bytes: int = Field(default=keys.CACHE_MAX_BYTES, ge=1024, description="Most bytes in Redis.")
    scope_max_entries: int = Field(
        default=keys.CACHE_SCOPE_MAX_ENTRIES, ge=1, description="Most Redis entries of one scope (tenant, model, ...)."
    )
    redis_timeout_s: float = Field(
        default=0.1, gt=0, description="Longest wait for one Redis call of the cache; past it the job goes on uncached."
    )
    retry_s: float = Field(default=1.0, gt=0, description="After a Redis failure, the cache skips Redis this long.")

    @property
    def opt_in(self) -> frozenset[str]:
        return _names(self.tenants_opt_in)

    @property
    def off(self) -> frozenset[str]:
        return _names(self.tenants_off)

    @property
    def only(self) -> frozenset[str]:
        return _names(self.tenants_only)


def _names(value: str) -> frozenset[str]:
    return frozenset(n.strip() for n in value.split(",") if n.strip())


class PrepareSettings(BaseSettings):
    """The preparation processor on `genloom.requests` (streams/prepare): which stages it chains.

    Read by the streams process, and by the gateway, which routes a job straight to its modality's
    topic only when every stage is off for its tenant.
    """

    model_config = SettingsConfigDict(env_prefix="GENLOOM_PREPARE_", extra="ignore", frozen=True)

    stages: str = Field(
        default="privacy,moderation,embedding,enrichment,cache",
        description="Comma-separated stages this processor runs, in order (privacy, moderation, embedding,"
        " enrichment, cache; enrichment and the cache need the embedding before them, and the cache comes last so"
        " that a prompt personalised with a user's memories is only ever answered from the same memories). Empty:"
        " the processor only validates and routes.",
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
