"""Pure fan-out decisions: statuses, record fields, reading messages, webhook helpers."""

from __future__ import annotations

import json

import pytest

from schemas.enums import EventSource, JobStatus
from schemas.events import (
    Accepted, Artifact, Cancelled, Completed, Failed, ModerationVerdict, Progress, TokenDelta, Usage,
)
from streams.fanout.logic import Malformed, read_event, record_update, status_of
from streams.fanout.webhooks import backoff, event_id, should_retry, sign, target_for, verify

W = EventSource.WORKER


def _read(value: bytes | None):
    return read_event(topic="genloom.events", partition=3, offset=7, key=b"k", value=value, consumer="c")


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
    done = record_update(Completed(job_id="j", seq=3, source=W, text="hi", usage=Usage(total_tokens=2), ts=9.0))
    assert done.terminal and done.fields["text"] == "hi" and done.fields["finished_at"] == "9.0"
    assert json.loads(done.fields["usage"])["total_tokens"] == 2
    failed = record_update(Failed(job_id="j", seq=3, source=W, code="generation_error", message="oom", retryable=True))
    assert failed.fields["error_code"] == "generation_error" and failed.fields["retryable"] == "1"
    assert failed.status == JobStatus.FAILED


@pytest.mark.parametrize(
    "value, code",
    [(None, "malformed_message"), (b"", "malformed_message"), (b"{nope", "invalid_json"),
     (b'{"type": "token", "job_id": "j"}', "malformed_message"), (b'{"type": "bogus"}', "malformed_message")],
)
def test_malformed_messages_become_dead_letters(value, code):
    item = _read(value)
    assert isinstance(item, Malformed)
    assert item.letter.code.value == code and item.letter.partition == 3 and item.letter.offset == 7


def test_valid_message_is_an_event():
    event = TokenDelta(job_id="j", seq=1, source=W, text="a", tokens=1)
    assert _read(event.model_dump_json().encode()) == event


def test_signature_and_ids():
    body = b'{"type":"completed"}'
    header = sign(b"s3cret", body)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify(b"s3cret", body, header) and not verify(b"other", body, header)
    assert not verify(b"s3cret", body + b" ", header)
    assert event_id("job_1", 7) == "job_1:7"


def test_backoff_doubles_and_caps():
    assert list(backoff(5, 0.5, 3.0)) == [0.5, 1.0, 2.0, 3.0]
    assert list(backoff(1, 0.5, 3.0)) == []


def test_retry_policy():
    assert should_retry(500) and should_retry(503) and should_retry(429) and should_retry(408)
    assert not should_retry(400) and not should_retry(404) and not should_retry(410)


def test_webhook_target_filters_by_event_type():
    spec = json.dumps({"url": "http://127.0.0.1:1/h", "events": ["completed"]})
    assert target_for(spec, "completed").url == "http://127.0.0.1:1/h"
    assert target_for(spec, "token") is None
    assert target_for(None, "completed") is None and target_for("{broken", "completed") is None
