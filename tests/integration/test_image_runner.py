"""The shared job runner with the real image handler (tiny random pipeline), against the real broker."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from infra.blob.local import LocalBlobStore
from infra.kafka.codec import encode
from infra.kafka.topics import CONTROL, EVENTS_RAW, jobs_topic
from infra.models.settings import ImageSettings
from schemas import CancelJob, ImageRequest, parse_request
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import serving, job_events, read_topic
from schemas.enums import Modality
from workers.image.handler import ImageHandler
from workers.image.tiny import load_tiny_pipeline
from workers.runner import jobs_group
from workers.wiring import job_runner

pytestmark = pytest.mark.integration
TOPIC = jobs_topic("image")
GROUP = jobs_group(Modality.IMAGE)


@pytest.fixture(scope="module")
async def blobs(tmp_path_factory):
    return LocalBlobStore(tmp_path_factory.mktemp("blobs"))


@pytest.fixture(scope="module")
async def image_worker(kafka_bootstrap, blobs, tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny-sd"
    # A wide window, so that jobs sent together surely meet in one bucket on a busy machine.
    settings = ImageSettings(max_batch_size=4, max_wait_ms=400, steps=2, scheduler="ddim")
    handler = ImageHandler(lambda: load_tiny_pipeline(path, device="cpu"), blobs, settings)
    async with serving(job_runner(handler, bootstrap=kafka_bootstrap, **FAST_GROUP)) as (runner,):
        yield runner


def image(job_id: str, **params) -> ImageRequest:
    return parse_request({"job_id": job_id, "tenant": "t1", "modality": "image",
                          "params": {"prompt": "a red cat on a boat", **params}})


async def submit(producer, *requests: ImageRequest) -> list:
    """Send the jobs together; returns where each landed (RecordMetadata, in order)."""
    deliveries = [await producer.send(TOPIC, encode(req), key=req.key.encode()) for req in requests]
    await producer.flush()
    return [await d for d in deliveries]


def has_event(job_id: str, event_type: str):
    def until(messages) -> bool:
        return any(m.key == job_id.encode() and json.loads(m.value)["type"] == event_type for m in messages)
    return until


def progressed(job_id: str):
    return has_event(job_id, "progress")


async def png_pixels(blobs: LocalBlobStore, job_id: str, index: int = 0) -> np.ndarray:
    data = await blobs.get(f"artifacts/t1/{job_id}/image-{index}.png")
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    return np.asarray(img.convert("RGB"), dtype=np.int16)


async def test_job_streams_one_progress_per_step_and_png_artifacts(kafka_bootstrap, image_worker, producer, blobs):
    await submit(producer, image("img-ok", width=48, height=32, steps=3, n=2, seed=7))
    events = await job_events(kafka_bootstrap, EVENTS_RAW, "img-ok")
    types = [e.type for e in events]
    assert types == ["started", "progress", "progress", "progress", "artifact", "artifact", "completed"]
    assert [e.seq for e in events] == list(range(len(events)))
    assert events[0].model.random_weights is True and events[0].model.device == "cpu"
    assert [(e.step, e.total, e.stage) for e in events if e.type == "progress"] == [
        (1, 3, "denoise"), (2, 3, "denoise"), (3, 3, "denoise")]
    artifacts = [e for e in events if e.type == "artifact"]
    for i, art in enumerate(artifacts):
        data = await blobs.get(f"artifacts/t1/img-ok/image-{i}.png")
        assert (art.index, art.mime_type, art.width, art.height) == (i, "image/png", 48, 32)
        assert art.bytes == len(data) and art.uri.endswith(f"image-{i}.png")
        assert Image.open(io.BytesIO(data)).size == (48, 32)
    a, b = [await png_pixels(blobs, "img-ok", i) for i in (0, 1)]
    assert np.abs(a - b).max() > 10  # image i uses seed + i
    done = events[-1]
    assert (done.usage.images, done.usage.steps) == (2, 3)


async def test_same_shape_jobs_run_as_one_batch_and_match_a_solo_run(kafka_bootstrap, image_worker, producer, blobs):
    handler: ImageHandler = image_worker.handler
    ids = [f"img-batch-{i}" for i in range(4)]
    await submit(producer, *(image(j, width=32, height=32, seed=100 + i) for i, j in enumerate(ids)))
    for j in ids:
        events = await job_events(kafka_bootstrap, EVENTS_RAW, j)
        assert events[-1].type == "completed", events[-1]
        assert sum(e.type == "progress" for e in events) == 2  # settings default: 2 steps
    assert sorted(ids) in [sorted(b) for b in handler.recent_batches]

    await submit(producer, image("img-solo", width=32, height=32, seed=102))
    solo = await job_events(kafka_bootstrap, EVENTS_RAW, "img-solo")
    assert solo[-1].type == "completed"
    assert ("img-solo",) in handler.recent_batches
    diff = np.abs(await png_pixels(blobs, "img-solo") - await png_pixels(blobs, "img-batch-2"))
    assert diff.max() <= 1
    other = np.abs(await png_pixels(blobs, "img-solo") - await png_pixels(blobs, "img-batch-1"))
    assert other.max() > 10


async def test_bad_size_and_steps_fail_with_codes_before_starting(kafka_bootstrap, image_worker, producer):
    await submit(producer, image("img-big", width=4096, height=32), image("img-steps", steps=400))
    big = await job_events(kafka_bootstrap, EVENTS_RAW, "img-big")
    assert [e.type for e in big] == ["failed"]
    assert big[0].code.value == "invalid_size" and "2048" in big[0].message
    steps = await job_events(kafka_bootstrap, EVENTS_RAW, "img-steps")
    assert [e.type for e in steps] == ["failed"]
    assert steps[0].code.value == "invalid_parameter" and "steps" in steps[0].message


async def test_pipeline_error_fails_its_batch_and_the_worker_keeps_serving(
        kafka_bootstrap, image_worker, producer, monkeypatch):
    engine = image_worker.handler.engine
    real = engine.generate

    def explode_on_demand(batch, on_step=None, should_stop=None):
        if any(job.prompt == "explode" for job in batch):
            raise RuntimeError("CUDA out of memory (simulated)")
        return real(batch, on_step, should_stop)

    monkeypatch.setattr(engine, "generate", explode_on_demand)
    await submit(producer, image("img-boom", prompt="explode", width=32, height=32))
    failed = await job_events(kafka_bootstrap, EVENTS_RAW, "img-boom")
    assert [e.type for e in failed] == ["started", "failed"]
    assert failed[-1].code.value == "generation_error" and failed[-1].retryable
    assert "out of memory" in failed[-1].message

    await submit(producer, image("img-after", width=32, height=32))
    after = await job_events(kafka_bootstrap, EVENTS_RAW, "img-after")
    assert after[-1].type == "completed"


async def test_a_batch_failure_tells_each_tenant_nothing_of_the_others_jobs(
        kafka_bootstrap, image_worker, producer, monkeypatch):
    engine = image_worker.handler.engine

    def explode_quoting_the_batch(batch, on_step=None, should_stop=None):
        # as a real pipeline error may: its text names every job of the batch
        raise RuntimeError("bad batch: " + "; ".join(f"{j.job_id} {j.prompt!r} {j.width}x{j.height}" for j in batch))

    monkeypatch.setattr(engine, "generate", explode_quoting_the_batch)
    mine = image("img-mine", prompt="my secret holiday plan", width=32, height=32, seed=3)
    theirs = parse_request({"job_id": "img-theirs", "tenant": "t2", "modality": "image",
                            "params": {"prompt": "their private prompt", "width": 32, "height": 32, "seed": 3}})
    await submit(producer, mine, theirs)
    seen = {job: await job_events(kafka_bootstrap, EVENTS_RAW, job) for job in ("img-mine", "img-theirs")}
    assert sorted(["img-mine", "img-theirs"]) in [sorted(b) for b in image_worker.handler.recent_batches]
    for job, other, other_prompt in (("img-mine", "img-theirs", "their private"), ("img-theirs", "img-mine", "my secret")):
        failed = seen[job][-1]
        assert failed.type == "failed" and failed.code.value == "generation_error" and failed.retryable
        assert other not in failed.message and other_prompt not in failed.message
        assert "RuntimeError" in failed.message


async def test_cancel_inside_a_batch_ends_that_job_and_the_batch_goes_on(kafka_bootstrap, image_worker, producer):
    handler: ImageHandler = image_worker.handler
    steps = 60
    stay, leave = (image(j, width=64, height=64, steps=steps, seed=5) for j in ("img-stay", "img-leave"))
    _, sent = await submit(producer, stay, leave)

    await read_topic(kafka_bootstrap, EVENTS_RAW, until=progressed("img-leave"), timeout=60)
    await producer.send_and_wait(CONTROL, encode(CancelJob(job_id="img-leave", tenant="t1", reason="enough")),
                                 key=b"img-leave")
    left = await job_events(kafka_bootstrap, EVENTS_RAW, "img-leave", after_commit=(GROUP, sent))
    terminals = [e for e in left if e.type in ("completed", "failed", "cancelled")]
    assert [(t.type, t.reason) for t in terminals] == [("cancelled", "enough")]
    assert 0 < sum(e.type == "progress" for e in left) < steps
    assert not any(e.type == "artifact" for e in left)

    stayed = await job_events(kafka_bootstrap, EVENTS_RAW, "img-stay")
    assert stayed[-1].type == "completed"
    assert sum(e.type == "progress" for e in stayed) == steps
    assert sorted(["img-stay", "img-leave"]) in [sorted(b) for b in handler.recent_batches]


async def test_cancel_of_a_queued_job_removes_it_without_generating(kafka_bootstrap, image_worker, producer):
    handler: ImageHandler = image_worker.handler
    await submit(producer, image("img-busy", width=64, height=64, steps=60))
    await read_topic(kafka_bootstrap, EVENTS_RAW, until=progressed("img-busy"), timeout=60)
    [sent] = await submit(producer, image("img-queued", width=32, height=32))  # waits behind the busy batch
    await read_topic(kafka_bootstrap, EVENTS_RAW, until=has_event("img-queued", "started"), timeout=30)
    await producer.send_and_wait(CONTROL, encode(CancelJob(job_id="img-queued", tenant="t1")), key=b"img-queued")
    queued = await job_events(kafka_bootstrap, EVENTS_RAW, "img-queued", after_commit=(GROUP, sent))
    assert [e.type for e in queued] == ["started", "cancelled"]
    busy = await job_events(kafka_bootstrap, EVENTS_RAW, "img-busy")
    assert busy[-1].type == "completed"
    assert busy[-1].ts > queued[-1].ts  # it left the queue while the batch ahead of it ran
    assert not any("img-queued" in batch for batch in handler.recent_batches)
