"""Images, videos and speech through the OpenAI-compatible endpoints and the official SDK: gateway →
Kafka → streams → the real image / video / speech workers (tiny random pipelines, the shipped piper
voice) → moderation → fan-out → Redis → HTTP."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import time
import uuid
import wave

import httpx
import openai
import pytest
from PIL import Image

from infra.blob import LocalBlobStore
from infra.kafka.topics import CONTROL, EVENTS, REQUESTS, jobs_topic
from infra.models.settings import ImageSettings, VideoSettings
from infra.redis.jobstore import JobStore
from schemas.enums import EventType, Modality
from schemas.requests import scoped_job_id
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import serving, skip_backlog
from tests.edge_helpers import read_until_idle, values
from workers.image.handler import ImageHandler, pipeline_loader
from workers.speech.handler import SpeechHandler
from workers.speech.synthesizer import PiperSynthesizer
from workers.video.encode import probe_mp4
from workers.video.handler import VideoHandler
from workers.video.pipeline import load_tiny_video_pipeline
from workers.wiring import job_runner

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TENANT, OTHER = "t-media", "t-media-b"
IMAGE_MODEL, VIDEO_MODEL, SPEECH_MODEL = "digits-image", "digits-video", "piper"


@pytest.fixture(scope="module")
async def media_workers(kafka_bootstrap, gateway_url, blob_dir, tmp_path_factory):
    """The three media workers (beside the session's moderation gate), writing artifacts where the gateway reads them."""
    models = tmp_path_factory.mktemp("media-models")
    # the default image model (trained here); the video worker serves the tiny random pipeline under the
    # default video model's name, so that a 60-step job runs long enough to be deleted mid-way (the default
    # video model is served by tests/integration/test_video_default_model.py)
    image = ImageHandler(pipeline_loader(None, "cpu"), LocalBlobStore(blob_dir),
                         ImageSettings(steps=2, scheduler="ddim", max_wait_ms=20))
    video = VideoHandler(lambda: load_tiny_video_pipeline(models / "tiny-animatediff", device="cpu"),
                         LocalBlobStore(blob_dir), VideoSettings(steps=3, frames=8))
    speech = SpeechHandler(PiperSynthesizer.with_shipped_voice(intra_op_threads=1), LocalBlobStore(blob_dir))
    for modality in ("image", "video", "speech"):
        await skip_backlog(kafka_bootstrap, jobs_topic(modality), f"genloom-workers-{modality}")
    async with serving(*(job_runner(h, bootstrap=kafka_bootstrap, **FAST_GROUP) for h in (image, video, speech))):
        yield


@pytest.fixture
def sdk(gateway_url, edge_keys):
    return openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key=edge_keys[TENANT], max_retries=0, timeout=120)


def http_for(gateway_url: str, key: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=gateway_url, headers={"Authorization": f"Bearer {key}"}, timeout=120)


# -- images -------------------------------------------------------------------------------------------


async def test_sdk_generates_b64_pngs_at_the_requested_size(sdk, media_workers):
    result = await sdk.images.generate(model=IMAGE_MODEL, prompt="a red cat on a boat", size="64x32", n=2,
                                       response_format="b64_json", extra_body={"steps": 2, "seed": 3})
    assert len(result.data) == 2 and result.created > 0
    pixels = []
    for item in result.data:
        png = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        assert png.format == "PNG" and png.size == (64, 32)
        pixels.append(png.convert("RGB").tobytes())
    assert pixels[0] != pixels[1]  # index order: two seeds, two images


async def test_image_url_is_fetchable_by_its_tenant_only(sdk, media_workers, gateway_url, edge_keys):
    result = await sdk.images.generate(model=IMAGE_MODEL, prompt="a lighthouse", size="32x32",
                                       response_format="url", extra_body={"steps": 2, "scheduler": "dpm-solver"})
    url = result.data[0].url
    assert url.startswith(f"{gateway_url}/v1/artifacts/artifacts/{TENANT}/") and url.endswith(".png")
    async with http_for(gateway_url, edge_keys[TENANT]) as mine, http_for(gateway_url, edge_keys[OTHER]) as other:
        response = await mine.get(url)
        assert response.status_code == 200 and response.headers["content-type"] == "image/png"
        assert Image.open(io.BytesIO(response.content)).size == (32, 32)
        stranger = await other.get(url)
    assert stranger.status_code == 404 and stranger.json()["error"]["code"] == "not_found"


# -- videos -------------------------------------------------------------------------------------------


async def _poll(http: httpx.AsyncClient, video_id: str, until, timeout: float = 90) -> list[dict]:
    seen: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = await http.get(f"/v1/videos/{video_id}")
        assert response.status_code == 200, response.text
        seen.append(response.json())
        if until(seen[-1]):
            return seen
        await asyncio.sleep(0.05)
    raise AssertionError(f"video {video_id} never got there: last {seen[-1] if seen else None}")


async def test_video_goes_queued_to_completed_with_rising_progress(sdk, media_workers, gateway_url, edge_keys):
    created = await sdk.videos.create(model=VIDEO_MODEL, prompt="waves at dusk", size="48x32", seconds="1",
                                      extra_body={"steps": 6, "seed": 1})
    assert created.object == "video" and created.status in ("queued", "in_progress")
    assert (created.model, created.size, created.seconds) == (VIDEO_MODEL, "48x32", "1")
    async with http_for(gateway_url, edge_keys[TENANT]) as http:
        early = await http.get(f"/v1/videos/{created.id}/content")
        seen = await _poll(http, created.id, lambda v: v["status"] in ("completed", "failed", "cancelled"))
        content = await http.get(f"/v1/videos/{created.id}/content")
    if created.status == "queued" or seen[0]["status"] != "completed":
        assert early.status_code == 409 and early.json()["error"]["code"] == "not_ready"
    final = seen[-1]
    assert final["status"] == "completed" and final["progress"] == 100 and final["error"] is None
    assert final["completed_at"] >= final["created_at"] == created.created_at
    progress = [v["progress"] for v in seen]
    assert progress == sorted(progress) and any(0 < p < 100 for p in progress), progress
    assert content.status_code == 200 and content.headers["content-type"] == "video/mp4"
    info = probe_mp4(content.content)
    assert (info.frames, info.width, info.height, info.fps) == (8, 48, 32, 8.0)
    downloaded = await sdk.videos.download_content(created.id)
    assert downloaded.content == content.content


async def test_delete_cancels_a_running_video_exactly_once(media_workers, gateway_url, edge_keys, kafka_bootstrap):
    async with http_for(gateway_url, edge_keys[TENANT]) as http:
        created = (await http.post("/v1/videos", json={"model": VIDEO_MODEL, "prompt": "a long pan", "size": "32x32",
                                                       "frames": 8, "steps": 60})).json()
        video_id = created["id"]
        await _poll(http, video_id, lambda v: v["status"] == "in_progress" and v["progress"] > 0)
        first, second = await http.delete(f"/v1/videos/{video_id}"), await http.delete(f"/v1/videos/{video_id}")
        assert first.status_code == second.status_code == 200 and first.json()["id"] == video_id
        final = (await _poll(http, video_id, lambda v: v["status"] in ("completed", "failed", "cancelled")))[-1]
        again = await http.delete(f"/v1/videos/{video_id}")
        content = await http.get(f"/v1/videos/{video_id}/content")
    assert final["status"] == "cancelled" and final["progress"] < 100
    assert again.json()["status"] == "cancelled"
    assert content.status_code == 404 and content.json()["error"]["code"] == "not_found"
    internal = scoped_job_id(TENANT, video_id)
    cancels = [v for v in values(await read_until_idle(kafka_bootstrap, CONTROL, idle_s=1.0))
               if v.get("job_id") == internal]
    terminal = [v for v in values(await read_until_idle(kafka_bootstrap, EVENTS, idle_s=1.0))
                if v.get("job_id") == internal and v.get("type") in ("completed", "failed", "cancelled")]
    assert len(cancels) == 1 and [e["type"] for e in terminal] == ["cancelled"]


async def test_videos_are_private_to_their_tenant(sdk, media_workers, gateway_url, edge_keys):
    created = await sdk.videos.create(model=VIDEO_MODEL, prompt="a quiet street", size="32x32", seconds="1",
                                      extra_body={"steps": 1})
    async with http_for(gateway_url, edge_keys[OTHER]) as other:
        for method, path in (("GET", ""), ("GET", "/content"), ("DELETE", "")):
            response = await other.request(method, f"/v1/videos/{created.id}{path}")
            assert response.status_code == 404 and response.json()["error"]["code"] == "not_found"
    async with http_for(gateway_url, edge_keys[TENANT]) as http:
        await _poll(http, created.id, lambda v: v["status"] == "completed")


# -- speech -------------------------------------------------------------------------------------------


async def test_sdk_speech_is_a_wav_at_22050_hz(sdk, media_workers):
    response = await sdk.audio.speech.create(model=SPEECH_MODEL, voice="joe", input="Hello from genloom.",
                                             response_format="wav")
    with wave.open(io.BytesIO(response.content)) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth()) == (22050, 1, 2)
        assert wav.getnframes() > 22050 // 4  # a quarter of a second at least
    assert response.response.headers["content-type"] == "audio/wav"


async def test_openai_docs_first_speech_example_is_served_by_the_mapped_voice(sdk, media_workers):
    """`tts-1` with `alloy`, as OpenAI's docs call it: spoken by the installed voice the table names."""
    ours = await sdk.audio.speech.create(model=SPEECH_MODEL, voice="joe", input="Today is a wonderful day.")
    theirs = await sdk.audio.speech.create(model="tts-1", voice="alloy", input="Today is a wonderful day.")
    assert theirs.response.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(theirs.content)) as a, wave.open(io.BytesIO(ours.content)) as b:
        assert a.getframerate() == b.getframerate() == 22050
        # the same voice says the same words: the same length within piper's sampled durations (a few %)
        assert abs(a.getnframes() - b.getnframes()) < 0.2 * b.getnframes()
    with pytest.raises(openai.NotFoundError) as info:
        await sdk.audio.speech.create(model="tts-2", voice="alloy", input="Hi.")
    assert info.value.body["code"] == "model_not_found"


async def test_sse_speech_streams_each_sentence_before_done(media_workers, gateway_url, edge_keys, edge_redis):
    text = "The first sentence is short. The second one takes a little longer to say."
    events: list[dict] = []
    status_at_first_delta = None
    async with http_for(gateway_url, edge_keys[TENANT]) as http:
        async with http.stream("POST", "/v1/audio/speech", json={
                "model": SPEECH_MODEL, "voice": "joe", "input": text, "response_format": "pcm",
                "stream_format": "sse"}) as response:
            assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
            job_id = response.headers["x-genloom-job-id"]
            async for line in response.aiter_lines():
                if not line.startswith("data: "):
                    continue
                events.append(json.loads(line.removeprefix("data: ")))
                if len(events) == 1:
                    status_at_first_delta = (await JobStore(edge_redis).load(scoped_job_id(TENANT, job_id))).status
    deltas = [e for e in events if e["type"] == "speech.audio.delta"]
    assert len(deltas) >= 2 and events[-1]["type"] == "speech.audio.done" and events[:-1] == deltas
    # the first sentence went out before the last was spoken: read off the worker's own event times (the
    # record's status when the client read the first delta depends on how the fan-out batched the events)
    log = await JobStore(edge_redis).entries(scoped_job_id(TENANT, job_id))
    chunks = [e.event for e in log if e.type is EventType.AUDIO]
    assert status_at_first_delta is not None and len(chunks) >= 2 and chunks[0].ts < chunks[-1].ts
    pcm = b"".join(base64.b64decode(d["audio"]) for d in deltas)
    assert events[-1]["sample_rate"] == 22050
    assert events[-1]["audio_seconds"] == pytest.approx(len(pcm) / 2 / 22050, abs=0.01)


# -- bad input: a 4xx with its code, and nothing queued --------------------------------------------------

IMG = {"model": IMAGE_MODEL, "prompt": "a cat"}
VID = {"model": VIDEO_MODEL, "prompt": "waves"}
SPK = {"model": SPEECH_MODEL, "input": "Hello.", "voice": "joe"}
BAD = [
    ("image size not /8", "/v1/images/generations", {**IMG, "size": "100x100"}, 400, "invalid_size"),
    ("image too large", "/v1/images/generations", {**IMG, "size": "4096x4096"}, 400, "invalid_size"),
    ("image steps 0", "/v1/images/generations", {**IMG, "steps": 0}, 400, "invalid_parameter"),
    ("image steps over max", "/v1/images/generations", {**IMG, "steps": 101}, 400, "invalid_parameter"),
    ("image scheduler", "/v1/images/generations", {**IMG, "scheduler": "euler-a"}, 400, "unknown_scheduler"),
    ("image n", "/v1/images/generations", {**IMG, "n": 9}, 400, "invalid_parameter"),
    ("image style", "/v1/images/generations", {**IMG, "style": "vivid"}, 400, "invalid_parameter"),
    ("image model", "/v1/images/generations", {**IMG, "model": "dall-e-3"}, 404, "model_not_found"),
    ("video frames", "/v1/videos", {**VID, "frames": 33}, 400, "invalid_parameter"),
    ("video seconds", "/v1/videos", {**VID, "seconds": "12"}, 400, "invalid_parameter"),
    ("video size", "/v1/videos", {**VID, "size": "2048x2048"}, 400, "invalid_size"),
    ("video steps", "/v1/videos", {**VID, "steps": 0}, 400, "invalid_parameter"),
    ("video fps", "/v1/videos", {**VID, "fps": 61}, 400, "invalid_parameter"),
    ("speech mp3", "/v1/audio/speech", {**SPK, "response_format": "mp3"}, 400, "unsupported_format"),
    ("speech voice", "/v1/audio/speech", {**SPK, "voice": "nightingale"}, 400, "unknown_voice"),
    ("speech empty", "/v1/audio/speech", {**SPK, "input": ""}, 400, "empty_input"),
    ("speech speed", "/v1/audio/speech", {**SPK, "speed": 4.5}, 400, "invalid_parameter"),
]
#: the Idempotency-Key (so the job id) each bad request was sent with
BAD_IDS = {case[0]: f"bad-media-{uuid.uuid4().hex[:12]}" for case in BAD}


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
async def test_bad_media_input_gets_its_code(case, gateway_url, edge_keys):
    name, path, body, status, code = case
    async with http_for(gateway_url, edge_keys[TENANT]) as http:
        response = await http.post(path, json=body, headers={"Idempotency-Key": BAD_IDS[name]})
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code


async def test_sdk_sees_unsupported_format_as_a_bad_request(sdk):
    with pytest.raises(openai.BadRequestError) as info:
        await sdk.audio.speech.create(model=SPEECH_MODEL, voice="joe", input="Hi.", response_format="mp3")
    assert info.value.body["code"] == "unsupported_format" and "wav, pcm" in info.value.body["message"]


async def test_no_bad_media_request_reached_kafka(gateway_url, kafka_bootstrap):
    # runs after the cases above (file order)
    seen = []
    for topic in (REQUESTS, *(jobs_topic(m) for m in Modality)):
        seen += values(await read_until_idle(kafka_bootstrap, topic, idle_s=1.0))
    assert seen, "the request topics are readable"
    assert not {v.get("client_job_id") for v in seen} & set(BAD_IDS.values())
