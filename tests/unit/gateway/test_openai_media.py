"""Pure translation of OpenAI image, video and speech bodies into genloom jobs (no broker, no HTTP)."""

from __future__ import annotations

import base64
import json

import pytest

from gateway.artifacts import key_of
from gateway.body import form_fields, parse_body
from gateway.errors import ApiError
from gateway.openai.media import (
    parse_size,
    speech_delta,
    speech_done,
    to_image_request,
    to_speech_request,
    to_video_request,
    video_meta,
    video_object,
)
from infra.models.catalog import ImageModel, SpeechModel, VideoModel, installed_voices
from infra.models.voices import VoiceLoadError, openai_voice_table
from infra.redis.jobrecord import JobRecord
from schemas.openai import ImageGenerationRequest, SpeechCreateRequest, VideoCreateRequest

IMAGE = ImageModel("tiny-sd", max_side=512, max_steps=50, max_n=4)
VIDEO = VideoModel("tiny-animatediff", max_side=256, max_steps=40, max_frames=32, max_fps=30, frames=16)
SPEECH = SpeechModel("piper", frozenset({"joe", "amy"}), openai_voice_table(frozenset({"joe", "amy"}), {"onyx": "amy"}))


def image(**fields):
    body = parse_body(ImageGenerationRequest, {"prompt": "a red cat", **fields}, "image")
    return to_image_request(body, tenant="t1", job_id="img-1", model=IMAGE)


def video(**fields):
    body = parse_body(VideoCreateRequest, {"prompt": "waves", **fields}, "video")
    return to_video_request(body, tenant="t1", job_id="vid-1", model=VIDEO)


def speech(**fields):
    body = parse_body(SpeechCreateRequest, {"model": "piper", "input": "Hello.", "voice": "joe", **fields}, "speech")
    return to_speech_request(body, tenant="t1", job_id="sp-1", model=SPEECH)


def code_of(call, **fields) -> tuple[str, str | None]:
    with pytest.raises(ApiError) as info:
        call(**fields)
    return info.value.code.value, info.value.param


def test_image_body_becomes_an_image_job_with_the_extras():
    job = image(size="64x128", n=2, steps=3, guidance=2.5, scheduler="ddim", seed=7, negative_prompt="blur",
                response_format="b64_json", model="tiny-sd")
    p = job.params
    assert (job.job_id, job.tenant, job.model) == ("img-1", "t1", "tiny-sd")
    assert (p.width, p.height, p.n, p.steps, p.guidance, p.scheduler.value, p.seed) == (64, 128, 2, 3, 2.5, "ddim", 7)
    assert p.negative_prompt == "blur"


def test_image_defaults_are_left_to_the_worker():
    p = image(size="auto").params
    assert (p.width, p.height, p.steps, p.scheduler, p.n) == (None, None, None, None, 1)


@pytest.mark.parametrize("fields,code,param", [
    ({"size": "100x100"}, "invalid_size", "size"),
    ({"size": "1024x1024"}, "invalid_size", "size"),
    ({"size": "big"}, "invalid_size", "size"),
    ({"steps": 0}, "invalid_parameter", "steps"),
    ({"steps": 51}, "invalid_parameter", "steps"),
    ({"n": 0}, "invalid_parameter", "n"),
    ({"n": 5}, "invalid_parameter", "n"),
    ({"scheduler": "euler"}, "unknown_scheduler", "scheduler"),
    ({"style": "vivid"}, "invalid_parameter", "style"),
    ({"response_format": "png"}, "invalid_parameter", "response_format"),
    ({"output_format": "jpeg"}, "unsupported_format", "output_format"),
    ({"model": "dall-e-3"}, "model_not_found", "model"),
    ({"prompt": "  "}, "empty_input", "prompt"),
    ({"guidance": 99.0}, "invalid_parameter", "params.guidance"),
])
def test_bad_image_bodies_have_stable_codes(fields, code, param):
    assert code_of(image, **fields) == (code, param)


def test_size_message_says_what_to_use():
    with pytest.raises(ApiError) as info:
        parse_size("100x64", 512)
    assert "use 96 or 104" in info.value.message
    assert parse_size("64X32", 512) == (64, 32)


def test_video_seconds_become_frames_at_the_fps():
    job = video(seconds="2", fps="4", size="64x64", steps=2, seed=1)
    assert (job.params.frames, job.params.fps, job.params.width, job.params.steps) == (8, 4, 64, 2)
    assert video_meta(job, VIDEO) == {"model": "tiny-animatediff", "size": "64x64", "seconds": "2"}
    default = video()
    assert default.params.frames is None and video_meta(default, VIDEO)["seconds"] == "2"  # 16 frames at 8 fps


@pytest.mark.parametrize("fields,code,param", [
    ({"frames": 33}, "invalid_parameter", "frames"),
    ({"seconds": 5}, "invalid_parameter", "seconds"),  # 40 frames at 8 fps
    ({"seconds": 1, "frames": 4}, "invalid_parameter", "seconds"),
    ({"fps": 31}, "invalid_parameter", "fps"),
    ({"steps": 41}, "invalid_parameter", "steps"),
    ({"size": "512x512"}, "invalid_size", "size"),
    ({"size": "60x64"}, "invalid_size", "size"),
    ({"input_reference": "x"}, "invalid_parameter", "input_reference"),
    ({"model": "sora-2"}, "model_not_found", "model"),
])
def test_bad_video_bodies_have_stable_codes(fields, code, param):
    assert code_of(video, **fields) == (code, param)


def view(job_id: str, fields: dict[str, str]):
    return JobRecord.from_fields(fields).view(job_id)


def _record(status: str, **fields) -> dict[str, str]:
    return {"status": status, "tenant": "t1", "modality": "video", "created_at": "1700000000.5", **fields}


def test_video_object_maps_status_and_progress():
    meta = {"model": "tiny-animatediff", "size": "64x64", "seconds": "1"}
    queued = video_object(view("v", _record("queued")), meta, "m")
    assert (queued.status, queued.progress, queued.created_at, queued.size) == ("queued", 0, 1700000000, "64x64")
    running = video_object(view("v", _record("running", progress_step="1", progress_total="4")), meta, "m")
    assert (running.status, running.progress) == ("in_progress", 25)
    last_step = video_object(view("v", _record("running", progress_step="4", progress_total="4")), meta, "m")
    assert last_step.progress == 99  # still encoding
    artifact = {"index": 0, "uri": "file:///x/artifacts/t1/v/video.mp4", "mime_type": "video/mp4", "bytes": 10,
                "sha256": "0" * 64, "width": 64, "height": 32, "frames": 8, "duration_s": 1.0}
    done = video_object(view("v", _record("completed", **{"artifact:0": json.dumps(artifact)})), None, "m",
                        finished_at=1700000009.0)
    assert (done.status, done.progress, done.size, done.seconds, done.model) == ("completed", 100, "64x32", "1", "m")
    assert done.completed_at == 1700000009 and done.error is None
    failed = video_object(view("v", _record("failed", error_code="generation_error", error_message="boom")), meta, "m")
    assert failed.status == "failed" and failed.error.code == "generation_error"
    assert video_object(view("v", _record("cancelled")), meta, "m").status == "cancelled"


def test_multipart_fields_are_read_and_files_refused():
    boundary = "b0undary"
    body = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"prompt\"\r\n\r\nwaves at dusk\r\n"
            f"--{boundary}\r\nContent-Disposition: form-data; name=\"seconds\"\r\n\r\n4\r\n--{boundary}--\r\n")
    fields = form_fields(body.encode(), f"multipart/form-data; boundary={boundary}")
    assert fields == {"prompt": "waves at dusk", "seconds": "4"}
    upload = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"input_reference\"; filename=\"a.png\"\r\n"
              f"Content-Type: image/png\r\n\r\nPNG\r\n--{boundary}--\r\n")
    with pytest.raises(ApiError) as info:
        form_fields(upload.encode(), f"multipart/form-data; boundary={boundary}")
    assert info.value.param == "input_reference"


def test_speech_body_becomes_a_speech_job():
    job = speech(voice="amy", response_format="pcm", speed=1.5)
    assert (job.params.voice, job.params.format.value, job.params.speed, job.model) == ("amy", "pcm", 1.5, "piper")
    assert speech().params.format.value == "wav"


@pytest.mark.parametrize("fields,code,param", [
    ({"voice": "nightingale"}, "unknown_voice", "voice"),
    ({"response_format": "mp3"}, "unsupported_format", "response_format"),
    ({"speed": 5.0}, "invalid_parameter", "speed"),
    ({"speed": 0.1}, "invalid_parameter", "speed"),
    ({"input": ""}, "empty_input", "input"),
    ({"input": "x" * 5000}, "payload_too_large", "params.input"),
    ({"stream_format": "chunks"}, "invalid_parameter", "stream_format"),
    ({"instructions": "cheerful"}, "invalid_parameter", "instructions"),
    ({"model": "tts-9"}, "model_not_found", "model"),
])
def test_bad_speech_bodies_have_stable_codes(fields, code, param):
    assert code_of(speech, **fields) == (code, param)


@pytest.mark.parametrize("model", ["tts-1", "tts-1-hd", "gpt-4o-mini-tts", "piper"])
def test_openai_speech_model_names_are_served_by_piper(model):
    assert speech(model=model).model == "piper"


@pytest.mark.parametrize("voice,installed", [("alloy", "joe"), ("Shimmer", "joe"), ("onyx", "amy"), ("amy", "amy"),
                                             ("joe", "joe")])
def test_openai_voices_are_spoken_by_the_installed_voice_the_table_names(voice, installed):
    assert speech(voice=voice).params.voice == installed


def test_a_voice_map_onto_a_voice_that_is_not_installed_refuses_to_start():
    with pytest.raises(VoiceLoadError, match="not installed"):
        openai_voice_table(frozenset({"joe"}), {"alloy": "amy"})
    with pytest.raises(VoiceLoadError, match="not OpenAI voices"):
        openai_voice_table(frozenset({"joe"}), {"robot": "joe"})


def test_without_the_shipped_voice_openai_voices_fall_back_to_an_installed_one():
    assert set(openai_voice_table(frozenset({"amy", "zed"})).values()) == {"amy"}
    assert openai_voice_table(frozenset()) == {}


def test_unsupported_format_names_the_supported_ones():
    with pytest.raises(ApiError) as info:
        speech(response_format="mp3")
    assert "wav, pcm" in info.value.message


def test_speech_events_are_shaped_like_openai():
    delta = speech_delta(base64.b64encode(b"\x00\x01").decode())
    assert delta.startswith(b"data: ") and delta.endswith(b"\n\n")
    assert json.loads(delta[6:]) == {"type": "speech.audio.delta", "audio": "AAE="}
    done = json.loads(speech_done(22050, 1.23456)[6:])
    assert done == {"type": "speech.audio.done", "sample_rate": 22050, "audio_seconds": 1.235}


def test_artifact_key_from_its_uri():
    assert key_of("file:///data/objects/artifacts/t1/job_1/image-0.png", "t1", "job_1") == \
        "artifacts/t1/job_1/image-0.png"
    assert key_of("s3://bucket/artifacts/t1/job_1/video.mp4", "t1", "job_1") == "artifacts/t1/job_1/video.mp4"


def test_installed_voices_reads_the_voice_folder(tmp_path):
    (tmp_path / "amy.onnx").write_bytes(b"")
    (tmp_path / "amy.onnx.json").write_text("{}")
    (tmp_path / "lonely.onnx").write_bytes(b"")  # no config: not a voice
    assert installed_voices(tmp_path) == {"joe", "amy"}
    assert installed_voices(None) == {"joe"}
