"""The image worker with its default model (the digit model trained here, models/digits-image),
against the real broker: a digit prompt gets that digit; a prompt outside what the model knows
still gets an image, and its artifact says so."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from infra.blob.local import LocalBlobStore
from infra.kafka.codec import encode
from infra.kafka.topics import EVENTS_RAW, jobs_topic
from infra.models.digits.classifier import DigitClassifier
from infra.models.settings import ImageSettings
from schemas import parse_request
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import job_events, serving
from workers.image.handler import ImageHandler, pipeline_loader
from workers.wiring import job_runner

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def blobs(tmp_path_factory):
    return LocalBlobStore(tmp_path_factory.mktemp("blobs"))


@pytest.fixture(scope="module")
async def default_image_worker(kafka_bootstrap, blobs):
    handler = ImageHandler(pipeline_loader(None, "cpu"), blobs, ImageSettings(max_wait_ms=20))
    async with serving(job_runner(handler, bootstrap=kafka_bootstrap, **FAST_GROUP)) as (runner,):
        yield runner


async def run_job(kafka_bootstrap, producer, job_id: str, prompt: str) -> list:
    request = parse_request({"job_id": job_id, "tenant": "t1", "modality": "image",
                             "params": {"prompt": prompt, "seed": 3}})
    await producer.send_and_wait(jobs_topic("image"), encode(request), key=request.key.encode())
    return await job_events(kafka_bootstrap, EVENTS_RAW, job_id)


async def test_a_digit_prompt_gets_that_digit_from_trained_weights(kafka_bootstrap, default_image_worker,
                                                                   producer, blobs):
    events = await run_job(kafka_bootstrap, producer, "img-seven", "a handwritten seven")
    assert events[-1].type == "completed", events[-1]
    assert events[0].model.random_weights is False
    assert sum(e.type == "progress" for e in events) == 25  # the model's own default steps
    [artifact] = [e for e in events if e.type == "artifact"]
    assert (artifact.width, artifact.height) == (16, 16)
    assert artifact.prompt_match.known is True and artifact.prompt_match.confidence > 0.7
    png = Image.open(io.BytesIO(await blobs.get("artifacts/t1/img-seven/image-0.png")))
    pixels = torch.from_numpy(np.asarray(png.convert("L"), dtype=np.float32) / 255).reshape(1, 1, 16, 16)
    assert DigitClassifier.train().predict(pixels)[0] == 7


@pytest.mark.parametrize(("job_id", "prompt"), [("img-no-digit", "a cat on a sofa"), ("img-nonsense", "asdkjh qwe"),
                                                  ("img-two-digits", "a three and a seven")])
async def test_a_prompt_outside_the_model_still_gets_an_image_marked_unknown(kafka_bootstrap, default_image_worker,
                                                                            producer, job_id, prompt):
    events = await run_job(kafka_bootstrap, producer, job_id, prompt)
    assert events[-1].type == "completed", events[-1]
    [artifact] = [e for e in events if e.type == "artifact"]
    assert artifact.prompt_match.known is False
