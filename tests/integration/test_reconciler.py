"""The reconciler against a real redis-server: leaked slots come back, lost jobs end once, with
their webhook owed, and only one reconciler acts at a time."""

from __future__ import annotations

import json
import os
import time
import uuid

import pytest

from infra.blob import LocalBlobStore, artifact_key
from infra.redis import keys
from infra.redis.client import connect
from infra.redis.jobrecord import JobRecord
from infra.redis.jobstore import Admitted, JobStore, WebhookOutboxBounds
from infra.settings.streams import ReconcilerSettings
from schemas.enums import EventSource, JobStatus, Modality
from schemas.events import ModelInfo, Progress, Started, TokenDelta, parse_event
from streams.reconciler.loop import Reconciler

pytestmark = pytest.mark.integration

MODEL = ModelInfo(id="tiny", device="cpu", dtype="float32")
LIMITS = ReconcilerSettings(queued_s=600, text_s=60, speech_s=60, image_s=120, video_s=1800, lock_ttl_s=30)


@pytest.fixture
async def redis(redis_url):
    client = connect(redis_url)
    await client.delete(keys.reconciler_lock())
    yield client
    await client.delete(keys.reconciler_lock())
    await client.aclose()


def _id(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}"


def _record(tenant: str, modality: Modality, webhook: str | None = None) -> JobRecord:
    return JobRecord(status=JobStatus.QUEUED, tenant=tenant, modality=modality, fingerprint="f",
                     webhook=webhook, created_at=1000.0)


async def _event(store: JobStore, event, now: float) -> None:
    await store.apply(event, event.model_dump_json().encode(), now)


async def test_lost_jobs_end_once_with_their_webhook_and_live_ones_are_left(redis):
    outbox = f"genloom:test:outbox:{uuid.uuid4().hex[:8]}"
    store = JobStore(redis, job_ttl_s=600, webhook_outbox=WebhookOutboxBounds(key=outbox))
    tenant = _id("t")
    hook = json.dumps({"url": "https://hooks.example/x", "events": ["failed", "completed"]})
    stalled_text, slow_video, waiting, fresh = _id("text"), _id("video"), _id("queued"), _id("fresh")
    for job, modality in ((stalled_text, Modality.TEXT), (slow_video, Modality.VIDEO),
                          (waiting, Modality.IMAGE), (fresh, Modality.TEXT)):
        assert await store.admit(job, _record(tenant, modality, hook), max_inflight=8, now=1000.0) == Admitted()
    w = EventSource.WORKER
    await _event(store, Started(job_id=stalled_text, seq=0, attempt=7, source=w, worker="w", model=MODEL), 1000.0)
    await _event(store, TokenDelta(job_id=stalled_text, seq=1, attempt=7, source=w, text="a", tokens=1), 1010.0)
    await _event(store, Started(job_id=slow_video, seq=0, attempt=7, source=w, worker="w", model=MODEL), 1000.0)
    await _event(store, Progress(job_id=slow_video, seq=1, attempt=7, source=w, step=1, total=50), 1010.0)
    await _event(store, Started(job_id=fresh, seq=0, attempt=7, source=w, worker="w", model=MODEL), 1100.0)
    # at 1150 the text job has been silent 140 s (limit 60), the video 140 s (limit 1800), the queued
    # image job 150 s (limit 600), the fresh text job 50 s (limit 60): only the first is lost
    mine = {stalled_text, slow_video, waiting, fresh}
    stopped = []

    async def stop_work(job_id: str, tenant_: str, reason: str) -> None:
        stopped.append((job_id, tenant_))
        raise ConnectionError("the broker is down")  # the sweep goes on: the job has ended anyway

    sweep = await Reconciler(store, LIMITS, holder="a", clock=lambda: 1150.0, stop_work=stop_work).sweep()
    assert sweep.led and mine.intersection(sweep.ended) == {stalled_text}
    assert (stalled_text, tenant) in stopped and not mine.intersection(j for j, _ in stopped) - {stalled_text}

    record = await store.load(stalled_text)
    assert record.status == JobStatus.FAILED and record.error.code == "job_lost" and record.error.retryable
    assert "same job_id" in record.error.message
    (failed,) = [e for e in await store.entries(stalled_text) if e.terminal]
    assert parse_event(failed.data).code == "job_lost"
    assert await store.inflight(tenant, "text") == 1 and await store.inflight(tenant, "video") == 1
    deliveries = await redis.xrange(outbox)
    assert [(d[b"job"], d[b"type"]) for _, d in deliveries] == [(stalled_text.encode(), b"failed")]
    for job in (slow_video, waiting, fresh):
        assert (await store.load(job)).terminal_id == 0

    again = await Reconciler(store, LIMITS, holder="a", clock=lambda: 1150.0).sweep()
    assert not mine.intersection(again.ended) and len(await store.entries(stalled_text)) == 3  # no second terminal


async def test_only_the_lock_holder_sweeps(redis):
    store = JobStore(redis, job_ttl_s=600)
    tenant, job = _id("t"), _id("lock")
    await store.admit(job, _record(tenant, Modality.TEXT), max_inflight=2, now=1000.0)
    first = Reconciler(store, LIMITS, holder="a", clock=lambda: 1000.0)
    second = Reconciler(store, LIMITS, holder="b", clock=lambda: 9999.0)
    assert (await first.sweep()).led
    assert not (await second.sweep()).led
    assert (await store.load(job)).terminal_id == 0  # "b" would have ended it
    await redis.delete(keys.reconciler_lock())  # as when "a" dies and its lock expires
    assert job in (await second.sweep()).ended
    assert await store.inflight(tenant, "text") == 0


async def test_artifacts_older_than_the_blob_ttl_are_deleted_at_most_once_per_interval(redis, tmp_path):
    blobs = LocalBlobStore(tmp_path / "blobs")
    await blobs.start()
    old, new = artifact_key("t", "job-old", "image-0.png"), artifact_key("t", "job-new", "image-0.png")
    await blobs.put(old, b"old", "image/png")
    await blobs.put(new, b"new", "image/png")
    written = time.time()
    os.utime(tmp_path / "blobs" / "meta" / f"{old}.json", (written - 7200, written - 7200))  # two hours ago
    now = [written]
    never_lost = {f"{name}_s": 1e12 for name in ("queued", "text", "speech", "image", "video")}  # other tests' jobs
    reconciler = Reconciler(JobStore(redis), ReconcilerSettings(artifact_sweep_s=600, **never_lost), holder="a",
                            clock=lambda: now[0], blobs=blobs, blob_ttl_s=3600)
    assert (await reconciler.sweep()).expired == 1
    assert not await blobs.exists(old) and await blobs.get(new) == b"new"
    now[0] += 300
    assert (await reconciler.sweep()).expired is None  # not due yet
    now[0] += 3600
    assert (await reconciler.sweep()).expired == 1 and not await blobs.exists(new)
