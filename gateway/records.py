"""Job records in Redis → the job object the API answers (the reading is I/O, the mapping is pure)."""

from __future__ import annotations

import redis.asyncio as aioredis

from infra.redis import keys
from schemas.api import ArtifactRef, JobError, JobProgress, JobResult, JobView
from schemas.enums import JobStatus
from schemas.events import ModelInfo, Timings, Usage


async def load(redis: aioredis.Redis, job_id: str) -> dict[str, str] | None:
    raw = await redis.hgetall(keys.job_record(job_id))
    if not raw:
        return None
    return {k.decode(): v.decode() for k, v in raw.items()}


def owned_by(record: dict[str, str] | None, tenant: str) -> bool:
    return record is not None and record.get("tenant") == tenant


def _float(value: str | None) -> float | None:
    return float(value) if value else None


def view(job_id: str, record: dict[str, str]) -> JobView:
    """The API's job object from a record (pure)."""
    status = JobStatus(record.get("status", JobStatus.QUEUED.value))
    progress = None
    if record.get("progress_total"):
        progress = JobProgress(
            step=int(record.get("progress_step", "0")),
            total=int(record["progress_total"]),
            stage=record.get("progress_stage"),
        )
    artifacts = sorted(
        (ArtifactRef.model_validate_json(v) for k, v in record.items() if k.startswith("artifact:")),
        key=lambda a: a.index,
    )
    result = None
    if artifacts or "finish_reason" in record or "text" in record:
        result = JobResult(finish_reason=record.get("finish_reason"), text=record.get("text"), artifacts=artifacts)
    error = None
    if "error_code" in record:
        error = JobError(
            code=record["error_code"], message=record.get("error_message", ""), retryable=record.get("retryable") == "1"
        )
    return JobView(
        id=job_id,
        status=status,
        modality=record.get("modality"),
        model=record.get("model"),
        created_at=_float(record.get("created_at")),
        progress=progress,
        result=result,
        usage=Usage.model_validate_json(record["usage"]) if "usage" in record else None,
        timings=Timings.model_validate_json(record["timings"]) if "timings" in record else None,
        model_info=ModelInfo.model_validate_json(record["model_info"]) if "model_info" in record else None,
        error=error,
        cancel_reason=record.get("cancel_reason"),
        last_event_id=int(record.get("last_event_id", "0")),
    )


def initial_record(*, tenant: str, modality: str, model: str | None, fingerprint: str,
                   webhook: str | None, created_at: float) -> dict[str, str]:
    """What the gateway writes when it admits a job (pure)."""
    record = {
        "status": JobStatus.QUEUED.value,
        "tenant": tenant,
        "modality": modality,
        "fingerprint": fingerprint,
        "created_at": repr(created_at),
    }
    if model:
        record["model"] = model
    if webhook:
        record["webhook"] = webhook
    return record

