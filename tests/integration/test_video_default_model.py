"""The video worker with its default model (the video digit model trained here, models/digits-video),
against the real broker: trained weights, the model's own defaults (8 frames of 16x16, 25 steps), and a
prompt outside what the model knows still gets a clip, its artifact saying so."""

from __future__ import annotations

import pytest

from infra.blob.local import LocalBlobStore
from infra.kafka.codec import encode
from infra.kafka.topics import EVENTS_RAW, jobs_topic
from infra.models.settings import VideoSettings
from schemas import parse_request
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import job_events, serving
from workers.video.encode import probe_mp4
from workers.video.handler import VideoHandler, pipeline_loader
from workers.wiring import job_runner

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def blobs(tmp_path_factory):
    return LocalBlobStore(tmp_path_factory.mktemp("blobs"))


@pytest.fixture(scope="module")
async def default_video_worker(kafka_bootstrap, blobs):
    handler = VideoHandler(pipeline_loader(None, "cpu"), blobs, VideoSettings())
    async with serving(job_runner(handler, bootstrap=kafka_bootstrap, **FAST_GROUP)) as (runner,):
        yield runner


async def run_job(kafka_bootstrap, producer, job_id: str, prompt: str) -> list:
    request = parse_request({"job_id": job_id, "tenant": "t1", "modality": "video",
                             "params": {"prompt": prompt, "seed": 3}})
    await producer.send_and_wait(jobs_topic("video"), encode(request), key=request.key.encode())
    return await job_events(kafka_bootstrap, EVENTS_RAW, job_id)


async def test_a_digit_prompt_gets_a_clip_from_trained_weights(kafka_bootstrap, default_video_worker, producer,
                                                               blobs):
    events = await run_job(kafka_bootstrap, producer, "vid-three-left", "a three drifting to the left")
    assert events[-1].type == "completed", events[-1]
    assert events[0].model.random_weights is False and events[0].model.id.endswith("digits-video")
    assert sum(e.type == "progress" for e in events) == 25  # the model's own default steps
    [artifact] = [e for e in events if e.type == "artifact"]
    assert (artifact.width, artifact.height, artifact.frames) == (16, 16, 8)
    assert artifact.prompt_match.known is True and artifact.prompt_match.confidence > 0.7
    info = probe_mp4(await blobs.get("artifacts/t1/vid-three-left/video.mp4"))
    assert (info.frames, info.width, info.height) == (8, 16, 16)


@pytest.mark.parametrize(("job_id", "prompt"), [("vid-no-digit", "a cat on a sofa"), ("vid-nonsense", "asdkjh qwe"),
                                                  ("vid-two-digits", "a three and a seven drifting up")])
async def test_a_prompt_outside_the_model_still_gets_a_clip_marked_unknown(kafka_bootstrap, default_video_worker,
                                                                          producer, job_id, prompt):
    events = await run_job(kafka_bootstrap, producer, job_id, prompt)
    assert events[-1].type == "completed", events[-1]
    [artifact] = [e for e in events if e.type == "artifact"]
    assert artifact.prompt_match.known is False and artifact.frames == 8
