"""The job record: its round trip through the Redis hash, its view, and what each event writes to it."""

from __future__ import annotations

import json

from infra.redis.jobrecord import JobRecord, record_update, status_of
from schemas.api import ArtifactRef, JobError, JobProgress
from schemas.enums import ErrorCode, EventSource, EventType, FinishReason, JobStatus, Modality
from schemas.events import (
    Accepted, Artifact, Cancelled, Completed, Failed, ModelInfo, ModerationVerdict, Progress, TokenDelta, Usage,
)

W = EventSource.WORKER


def _hash(record: JobRecord) -> dict[bytes, bytes]:
    """The record as HGETALL returns it."""
    return {k.encode(): v.encode() for k, v in record.to_fields().items()}


def test_a_full_record_survives_the_hash():
    record = JobRecord(
        status=JobStatus.COMPLETED, tenant="t", modality=Modality.IMAGE, model="m", fingerprint="f" * 64,
        webhook='{"url":"http://h/"}', slot="genloom:inflight:t:image", slot_held=True, created_at=1.5,
        accepted_at=1.75, started_at=2.0, finished_at=9.125, updated_at=9.5, worker="w1", queue_s=0.25,
        last_event_id=7, terminal_id=7, terminal_type=EventType.COMPLETED,
        progress=JobProgress(step=2, total=4, stage="denoise"),
        artifacts=(ArtifactRef(index=0, uri="file:///a.png", mime_type="image/png", bytes=3, sha256="0" * 64),
                   ArtifactRef(index=1, uri="file:///b.png", mime_type="image/png", bytes=4, sha256="1" * 64)),
        finish_reason=FinishReason.STOP, text="hi", usage=Usage(images=2), model_info=ModelInfo(
            id="tiny", device="cpu", dtype="float32"),
        error=JobError(code=ErrorCode.GENERATION_ERROR, message="oom", retryable=True), cancel_reason="why",
        video_meta={"model": "v", "size": None, "seconds": "1"},
    )
    assert JobRecord.from_fields(_hash(record)) == record
    assert JobRecord.from_fields(record.to_fields()) == record


def test_only_the_fields_a_record_was_built_with_are_written():
    assert JobRecord(tenant="t", model=None).to_fields() == {"tenant": "t"}
    assert JobRecord(status=JobStatus.QUEUED, slot_held=False).to_fields() == {"status": "queued"}


def test_records_become_job_views():
    record = JobRecord(status=JobStatus.QUEUED, tenant="t", modality=Modality.IMAGE, fingerprint="f", created_at=1.5)
    job = JobRecord.from_fields(_hash(record)).view("j")
    assert job.status == JobStatus.QUEUED and job.progress is None and job.result is None and job.created_at == 1.5
    assert JobRecord.from_fields({}).view("j").status == JobStatus.QUEUED
    fields = {**record.to_fields(), "status": "failed", "progress_step": "2", "progress_total": "4",
              "error_code": "generation_error", "error_message": "oom", "retryable": "1", "last_event_id": "6"}
    job = JobRecord.from_fields(fields).view("j")
    assert job.progress.step == 2 and job.error.retryable and job.last_event_id == 6
    assert JobRecord(tenant="t").owned_by("t") and not JobRecord(tenant="t").owned_by("u")


def test_status_moves_forward_only_by_rank():
    assert status_of(Accepted(job_id="j", seq=0, source=EventSource.GATEWAY, tenant="t", modality="text")) == JobStatus.QUEUED
    assert status_of(TokenDelta(job_id="j", seq=1, source=W, text="a", tokens=1)) == JobStatus.RUNNING
    assert status_of(Cancelled(job_id="j", seq=1, source=W)) == JobStatus.CANCELLED
    verdict = ModerationVerdict(job_id="j", seq=1, source=EventSource.MODERATION, target="prompt",
                                allowed=True, score=0.1, model="m")
    assert status_of(verdict) is None and record_update(verdict).rank == -1
    assert record_update(Completed(job_id="j", seq=2, source=W)).rank > record_update(
        Progress(job_id="j", seq=1, source=W, step=1, total=2)).rank


def test_record_fields_per_event():
    accepted = record_update(Accepted(job_id="j", seq=0, source=EventSource.STREAMS, tenant="t", modality="image",
                                      model="m", ts=5.0))
    assert accepted.fields_if_absent == {"created_at": "5.0", "tenant": "t", "modality": "image",
                                         "accepted_at": "5.0", "model": "m"}
    assert not accepted.terminal and accepted.status == JobStatus.QUEUED
    progress = record_update(Progress(job_id="j", seq=1, source=W, step=3, total=10, stage="denoise"))
    assert progress.fields == {"progress_step": "3", "progress_total": "10", "progress_stage": "denoise"}
    art = record_update(Artifact(job_id="j", seq=2, source=W, index=1, uri="file:///x.png", mime_type="image/png",
                                 bytes=3, sha256="0" * 64, width=8, height=8))
    assert json.loads(art.fields["artifact:1"])["uri"] == "file:///x.png"
    assert JobRecord.from_fields(art.fields).artifacts[0].width == 8
    done = record_update(Completed(job_id="j", seq=3, source=W, text="hi", usage=Usage(total_tokens=2), ts=9.0))
    assert done.terminal and done.fields["text"] == "hi" and done.fields["finished_at"] == "9.0"
    assert json.loads(done.fields["usage"])["total_tokens"] == 2
    failed = record_update(Failed(job_id="j", seq=3, source=W, code="generation_error", message="oom", retryable=True))
    assert failed.fields["error_code"] == "generation_error" and failed.fields["retryable"] == "1"
    assert failed.status == JobStatus.FAILED


def test_a_token_sets_the_running_status_and_the_creation_time_only():
    update = record_update(TokenDelta(job_id="j", seq=4, source=W, text="a", tokens=1, ts=7.25))
    assert update.status == JobStatus.RUNNING and update.rank == 1 and not update.terminal
    assert update.fields == {} and update.fields_if_absent == {"created_at": "7.25"}
    # the same as the general path gives an event of the running kind that sets nothing of its own
    progress = record_update(Progress(job_id="j", seq=4, source=W, step=1, total=2, ts=7.25))
    assert (update.status, update.fields_if_absent) == (progress.status, progress.fields_if_absent)


def test_the_tenants_job_id_is_kept_for_display():
    record = JobRecord(tenant="t", client_id="order-1", modality=Modality.TEXT)
    assert JobRecord.from_fields(record.to_fields()).client_id == "order-1"
    # a producer's job, recorded from its routed `accepted`, keeps it too (unless set already)
    update = record_update(Accepted(job_id="j" + "0" * 32, seq=0, source=EventSource.STREAMS, tenant="t",
                                    client_job_id="order-1", modality=Modality.TEXT))
    assert update.fields_if_absent["client_id"] == "order-1" and "client_id" not in update.fields


def test_a_cached_answer_is_recorded_and_shown_with_its_source():
    from schemas.events import CacheInfo

    info = CacheInfo(similarity=0.97, source_job="job-src")
    event = Completed(job_id="j", seq=3, source=EventSource.STREAMS, text="Paris.", cache=info)
    update = record_update(event)
    record = JobRecord.from_fields({**update.fields, "status": "completed"})
    assert record.cache == info
    assert record.view("j").cache == info
    plain = record_update(Completed(job_id="j", seq=3, source=EventSource.WORKER, text="x"))
    assert "cache" not in plain.fields


def test_the_memories_put_into_a_prompt_are_recorded_and_shown():
    from schemas.events import MemoryUse, Prepared

    used = [MemoryUse(id="f1", kind="fact", text="The user's favourite colour is teal.", score=0.8, similarity=0.7,
                      supersedes=["f0"]),
            MemoryUse(id="j2", kind="interaction", text="Q: soup? A: leek soup.", score=0.5)]
    update = record_update(Prepared(job_id="j", seq=1, source=EventSource.STREAMS, stages=["enrichment"],
                                    memories=used))
    record = JobRecord.from_fields({**update.fields, "status": "queued", "user": "u:" + "0" * 32})
    assert list(record.memories) == used and record.user == "u:" + "0" * 32
    assert record.view("j").memories == used
    # a job enriched with nothing writes no field (and shows an empty list)
    bare = record_update(Prepared(job_id="j", seq=1, source=EventSource.STREAMS, stages=["privacy"]))
    assert "memories" not in bare.fields
    assert JobRecord.from_fields({**bare.fields, "status": "queued"}).view("j").memories == []
