"""The gate on generated files: images as they are, videos by sampled frames, speech by its text.
A blocked file is deleted from the blob store and its `artifact` event never published; a file that
cannot be read or decoded is never released; a store or classifier that fails is the policy's call."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from infra.blob.base import artifact_key
from infra.blob.local import LocalBlobStore
from infra.kafka.codec import decode_event
from infra.kafka.emitter import EventEmitter
from infra.kafka.topics import EVENTS, EVENTS_RAW
from infra.moderation.image import NsfwImageClassifier
from infra.moderation.moderator import Moderator
from infra.moderation.policy import Policy, PolicyBook
from infra.moderation.text import BlocklistClassifier
from schemas import EventSource
from schemas.events import Artifact, AudioChunk, Completed, Usage
from tests.kafka_doubles import MemoryConsumer, MemoryLog, MemoryProducer
from workers.moderation.gate import ModerationGate
from workers.moderation.runner import GateRunner


def png(color) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((32, 32, 3), color, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


RED, BLUE = png((255, 0, 0)), png((0, 0, 255))


class _RedIsSexual:
    """Scores an image by its colour (the real open_nsfw model is exercised below and in the API tests)."""

    name = "by-colour"

    def scores(self, images):
        return [{"sexual": 0.99 if Image.open(io.BytesIO(d)).getpixel((0, 0))[0] > 200 else 0.01} for d in images]


def moderator(images, **policy) -> Moderator:
    return Moderator(BlocklistClassifier([]), PolicyBook(Policy.build(block=["forbidden"], **policy)), images=images)


async def run_gate(tmp_path, files: dict[str, tuple[bytes, str]], mod: Moderator, *extra):
    """Store `files` (name -> (bytes, mime)) as job j's artifacts, play the worker, run the gate once."""
    store = LocalBlobStore(tmp_path)
    await store.start()
    log = MemoryLog()
    worker = EventEmitter(MemoryProducer(log), EVENTS_RAW, EventSource.WORKER)
    for index, (name, (data, mime)) in enumerate(files.items()):
        ref = await store.put(artifact_key("t", "j", name), data, mime)
        await worker.emit(Artifact, "j", 1, index=index, uri=ref.uri, mime_type=mime, bytes=len(data), sha256=ref.sha256)
    for event_type, fields in extra:
        await worker.emit(event_type, "j", 1, **fields)
    await worker.emit(Completed, "j", 1, usage=Usage(images=len(files)))
    consumer = MemoryConsumer(log, EVENTS_RAW)
    runner = GateRunner(ModerationGate(mod), consumer=consumer, producer=MemoryProducer(log), blobs=store)
    await runner.start()
    await runner.run(burst=True)
    await runner.stop()
    return [decode_event(m.value) for m in log.read(EVENTS)], store, consumer


async def test_a_flagged_image_is_deleted_and_never_published(tmp_path):
    published, store, consumer = await run_gate(
        tmp_path, {"0.png": (BLUE, "image/png"), "1.png": (RED, "image/png")}, moderator(_RedIsSexual()))
    assert [e.type for e in published] == ["artifact", "moderation", "completed"]
    assert published[0].uri.endswith("0.png") and published[1].target == "artifact"
    assert published[1].categories == ["sexual"] and published[2].finish_reason.value == "content_filter"
    assert await store.exists(artifact_key("t", "j", "0.png"))
    assert not await store.exists(artifact_key("t", "j", "1.png"))
    assert sum(consumer.committed.values()) == 3  # every offset settled


async def test_an_undecodable_file_is_withheld_whatever_the_policy(tmp_path):
    published, store, _ = await run_gate(tmp_path, {"0.png": (b"not an image", "image/png")},
                                         moderator(_RedIsSexual(), fail_open=True))
    assert [e.type for e in published] == ["moderation", "completed"]
    assert "could not be checked" in published[0].reason
    assert not await store.exists(artifact_key("t", "j", "0.png"))


class _Down:
    name = "down"

    def scores(self, images):
        raise RuntimeError("model server down")


@pytest.mark.parametrize("fail_open, released", [(False, False), (True, True)])
async def test_a_failing_classifier_is_decided_by_the_policy_and_the_events_say_so(tmp_path, fail_open, released):
    published, store, _ = await run_gate(tmp_path, {"0.png": (BLUE, "image/png")}, moderator(_Down(), fail_open=fail_open))
    verdict = next(e for e in published if e.type == "moderation")
    assert "moderation unavailable" in verdict.reason and verdict.allowed is released
    assert any(e.type == "artifact" for e in published) is released
    assert await store.exists(artifact_key("t", "j", "0.png")) is released


async def test_speech_is_checked_by_the_text_it_speaks(tmp_path):
    chunk = dict(index=0, data="AAAA", sample_rate=22050, duration_s=0.1)
    published, _, _ = await run_gate(tmp_path, {}, moderator(_RedIsSexual()),
                                     (AudioChunk, {**chunk, "text": "a fine day"}),
                                     (AudioChunk, {**chunk, "index": 1, "text": "the forbidden word"}))
    assert [e.type for e in published] == ["audio", "moderation", "completed"]


@pytest.mark.slow
async def test_the_real_nsfw_model_passes_plain_images_and_videos_by_sampled_frames(tmp_path):
    from workers.video.encode import MIME_MP4, encode_mp4

    frames = [np.full((32, 32, 3), (i * 20, 100, 160), dtype=np.uint8) for i in range(8)]
    published, store, _ = await run_gate(
        tmp_path, {"0.png": (BLUE, "image/png"), "clip.mp4": (encode_mp4(frames, fps=8), MIME_MP4)},
        moderator(NsfwImageClassifier()))
    assert [e.type for e in published] == ["artifact", "artifact", "completed"]
    assert await store.exists(artifact_key("t", "j", "clip.mp4"))
