"""What the gateway's job API answers: the job object and the error envelope."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._base import Contract
from .enums import ErrorCode, FinishReason, JobStatus, Modality
from .events import CacheInfo, MemoryUse, ModelInfo, Timings, Usage


class ErrorDetail(Contract):
    code: ErrorCode = Field(description="Stable, machine-readable error code.")
    message: str = Field(description="What is wrong and how to fix it.")
    param: str | None = Field(default=None, description="The field or header at fault, if one is.")


class ErrorBody(Contract):
    """Every 4xx/5xx answer of the gateway (OpenAI-like)."""

    error: ErrorDetail


class JobProgress(Contract):
    step: int = Field(ge=0, description="Steps done.")
    total: int = Field(ge=1, description="Steps in all.")
    stage: str | None = None


class ArtifactRef(Contract):
    index: int = Field(ge=0)
    uri: str = Field(description="Blob store URI; fetch it with GET /v1/artifacts/{key}.")
    mime_type: str
    bytes: int = Field(ge=0)
    sha256: str
    width: int | None = None
    height: int | None = None
    frames: int | None = None
    duration_s: float | None = None


class JobResult(Contract):
    finish_reason: FinishReason | None = None
    text: str | None = Field(default=None, description="Full output of a text job.")
    artifacts: list[ArtifactRef] = Field(default_factory=list)


class JobError(Contract):
    code: ErrorCode
    message: str
    retryable: bool = False


class JobView(Contract):
    """A job as the gateway reports it (built from the record the fan-out keeps in Redis)."""

    id: str = Field(description="The job id (also the idempotency key), as the tenant gave it: ids are scoped by"
                    " tenant, so another tenant's job of the same id is another job.")
    object: Literal["job"] = "job"
    status: JobStatus
    modality: Modality | None = None
    model: str | None = Field(default=None, description="Model asked for; null means the default.")
    created_at: float | None = None
    progress: JobProgress | None = None
    result: JobResult | None = None
    usage: Usage | None = None
    timings: Timings | None = None
    model_info: ModelInfo | None = Field(default=None, description="Model that served the job.")
    cache: CacheInfo | None = Field(
        default=None, description="Set when the answer came from the semantic cache (the job it reused, how alike).")
    memories: list[MemoryUse] = Field(
        default_factory=list, description="Memories of the user that were put into the job's prompt (enrichment)."
    )
    error: JobError | None = None
    cancel_reason: str | None = None
    last_event_id: int = Field(default=0, ge=0, description="Newest replay log entry of the job.")


class JobList(Contract):
    """The caller's most recent jobs (GET /v1/jobs), newest first."""

    object: Literal["list"] = "list"
    data: list[JobView]


class JobToken(Contract):
    """A browser token for one job (POST /v1/jobs/{id}/token)."""

    token: str = Field(description="Pass as `?token=` to this job's `/events` (EventSource) or `/ws`; nothing else"
                       " accepts it. Never the API key.")
    expires_at: int = Field(description="Unix seconds after which the token is refused (401); ask for a new one.")


class WebhookSecret(Contract):
    """The caller's webhook signing key (GET /v1/webhooks/secret)."""

    tenant: str = Field(description="The tenant the key belongs to (the API key's).")
    secret: str = Field(
        description="HMAC-SHA256 key, used as its UTF-8 bytes: X-Genloom-Signature is `t=<unix>,v1=<hex>` with"
        " hex = HMAC(secret, `<t>.<X-Genloom-Event-Id>.<body>`). Reject timestamps older than a few minutes."
    )
    signature_header: str = Field(default="X-Genloom-Signature", description="Where the signature comes.")


class ModerationAuditEntry(Contract):
    """One moderation decision, as the audit keeps it: never the content, only a hash of what was blocked."""

    id: str = Field(description="The entry's id (pass it as `before` to page back).")
    ts: float = Field(description="Unix time of the decision.")
    job_id: str = Field(description="The job, by the id its tenant knows it by.")
    stage: Literal["prompt", "output", "artifact"] = Field(description="What was checked.")
    action: Literal["allowed", "blocked", "released_unchecked", "withheld_unchecked"] = Field(
        description="What the decision did; *_unchecked: the classifier failed and the tenant's policy decided.")
    categories: list[str] = Field(default_factory=list, description="Categories that fired.")
    scores: dict[str, float] = Field(default_factory=dict, description="Scores above zero.")
    model: str = Field(default="", description="The classifier.")
    reason: str | None = Field(default=None, description="Why, when no category decided.")
    content_sha256: str | None = Field(default=None, description="SHA-256 of the blocked content.")


class ModerationAuditPage(Contract):
    data: list[ModerationAuditEntry] = Field(description="Newest first.")
    before: str | None = Field(default=None, description="Pass as `before` for the next (older) page; null at the end.")
