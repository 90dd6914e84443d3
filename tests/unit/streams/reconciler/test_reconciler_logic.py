"""What the reconciler counts as lost (pure)."""

from __future__ import annotations

from infra.redis.jobstore import Held
from infra.settings.streams import ReconcilerSettings
from schemas.enums import JobStatus
from streams.reconciler.logic import lost_jobs

LIMITS = ReconcilerSettings(queued_s=1000, text_s=10, speech_s=20, image_s=30, video_s=400)


def _lost(status: JobStatus, modality: str, silent_s: float) -> bool:
    return bool(lost_jobs([Held("j", status, modality, since=100.0)], 100.0 + silent_s, LIMITS))


def test_a_running_job_is_lost_only_after_its_modality_s_silence_limit():
    assert not _lost(JobStatus.RUNNING, "text", 10) and _lost(JobStatus.RUNNING, "text", 11)
    assert not _lost(JobStatus.RUNNING, "image", 29) and _lost(JobStatus.RUNNING, "image", 31)
    assert not _lost(JobStatus.RUNNING, "video", 399) and _lost(JobStatus.RUNNING, "video", 401)


def test_a_queued_job_gets_the_queue_limit_whatever_its_modality():
    assert not _lost(JobStatus.QUEUED, "text", 999) and _lost(JobStatus.QUEUED, "text", 1001)


def test_a_clock_behind_the_last_event_never_makes_a_job_lost():
    assert not _lost(JobStatus.RUNNING, "text", -5000)


def test_the_message_says_what_was_silent_and_how_to_run_it_again():
    (lost,) = lost_jobs([Held("j1", JobStatus.RUNNING, "video", since=0.0)], 500.0, LIMITS)
    assert lost.job_id == "j1" and "no event from its worker for 500s" in lost.message
    assert "400s limit" in lost.message and "same job_id" in lost.message
    (queued,) = lost_jobs([Held("j2", JobStatus.QUEUED, "speech", since=0.0)], 2000.0, LIMITS)
    assert "not started by any worker" in queued.message


def test_unknown_modalities_get_the_longest_limit():
    assert LIMITS.silence_limit_s(JobStatus.RUNNING, "hologram") == 400
