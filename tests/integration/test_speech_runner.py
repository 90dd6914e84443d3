"""The shared job runner with the real speech handler, against the real bundled broker."""

from __future__ import annotations

import base64
import io
import json
import wave

import pytest

from infra.blob.local import LocalBlobStore
from infra.kafka.codec import encode
from infra.kafka.topics import CONTROL, DLQ, EVENTS_RAW, jobs_topic
from schemas import CancelJob, SpeechRequest, parse_request
from tests.conftest import FAST_GROUP
from tests.kafka_helpers import job_events, read_topic, serving, wait_until
from schemas.enums import Modality
from workers.runner import jobs_group
from workers.speech.handler import SpeechHandler
from workers.speech.synthesizer import PiperSynthesizer
from workers.wiring import job_runner

pytestmark = pytest.mark.integration
TOPIC = jobs_topic("speech")
GROUP = jobs_group(Modality.SPEECH)


@pytest.fixture(scope="module")
async def blobs(tmp_path_factory):
    store = LocalBlobStore(tmp_path_factory.mktemp("blobs"))
    yield store


@pytest.fixture(scope="module")
async def speech_worker(kafka_bootstrap, blobs):
    synth = PiperSynthesizer.with_shipped_voice(intra_op_threads=1)
    async with serving(job_runner(SpeechHandler(synth, blobs), bootstrap=kafka_bootstrap, **FAST_GROUP)) as (runner,):
        yield runner


def speech(job_id: str, text: str, **params) -> SpeechRequest:
    return parse_request({"job_id": job_id, "tenant": "t1", "modality": "speech",
                          "params": {"input": text, **params}})


async def test_speech_job_streams_sentences_then_one_artifact(kafka_bootstrap, speech_worker, producer, blobs):
    req = speech("sp-ok", "Hello there. This is genloom speaking. Goodbye!")
    await producer.send_and_wait(TOPIC, encode(req), key=req.key.encode())
    events = await job_events(kafka_bootstrap, EVENTS_RAW, "sp-ok")
    types = [e.type for e in events]
    assert types[0] == "started" and types[-1] == "completed"
    assert types.count("audio") == 3 and types.count("artifact") == 1
    assert [e.seq for e in events] == list(range(len(events)))
    assert len({e.attempt for e in events}) == 1
    artifact = next(e for e in events if e.type == "artifact")
    key = "artifacts/t1/sp-ok/speech.wav"
    data = await blobs.get(key)
    assert artifact.sha256 and artifact.bytes == len(data)
    with wave.open(io.BytesIO(data)) as wav:
        assert wav.getframerate() == 22050 and wav.getnchannels() == 1
        frames = wav.getnframes()
    pcm = b"".join(base64.b64decode(e.data) for e in events if e.type == "audio")
    assert len(pcm) // 2 == frames  # streamed chunks add up to the file
    done = events[-1]
    assert done.usage.audio_seconds == pytest.approx(frames / 22050, abs=0.01)
    assert done.timings.ttft_s is not None and done.timings.total_s >= done.timings.ttft_s


async def test_bad_voice_fails_with_code_and_worker_keeps_serving(kafka_bootstrap, speech_worker, producer):
    bad = speech("sp-badvoice", "Hi.", voice="nobody")
    good = speech("sp-after", "Still here.")
    await producer.send_and_wait(TOPIC, encode(bad), key=bad.key.encode())
    await producer.send_and_wait(TOPIC, encode(good), key=good.key.encode())
    failed = await job_events(kafka_bootstrap, EVENTS_RAW, "sp-badvoice")
    assert failed[-1].type == "failed" and failed[-1].code.value == "unknown_voice"
    assert "joe" in failed[-1].message
    after = await job_events(kafka_bootstrap, EVENTS_RAW, "sp-after")
    assert after[-1].type == "completed"


async def test_cancel_stops_a_running_job_with_one_cancelled_event(kafka_bootstrap, speech_worker, producer):
    text = " ".join(f"This is sentence number {i} of a long speech." for i in range(40))
    req = speech("sp-cancel", text)
    sent = await producer.send_and_wait(TOPIC, encode(req), key=req.key.encode())

    def first_audio(messages):
        return any(m.key == b"sp-cancel" and json.loads(m.value)["type"] == "audio" for m in messages)

    await read_topic(kafka_bootstrap, EVENTS_RAW, until=first_audio, timeout=60)
    cancel = CancelJob(job_id="sp-cancel", tenant="t1", reason="user asked")
    await producer.send_and_wait(CONTROL, encode(cancel), key=b"sp-cancel")
    events = await job_events(kafka_bootstrap, EVENTS_RAW, "sp-cancel", after_commit=(GROUP, sent))
    terminals = [e for e in events if e.type in ("completed", "failed", "cancelled")]
    assert [t.type for t in terminals] == ["cancelled"]
    assert terminals[0].reason == "user asked"
    assert sum(e.type == "audio" for e in events) < 40


async def test_cancel_before_pickup_ends_job_without_generating(kafka_bootstrap, speech_worker, producer):
    await producer.send_and_wait(CONTROL, encode(CancelJob(job_id="sp-early", tenant="t1")), key=b"sp-early")
    await wait_until(lambda: speech_worker.knows_cancel("sp-early"), timeout=30)
    req = speech("sp-early", "Never spoken.")
    await producer.send_and_wait(TOPIC, encode(req), key=req.key.encode())
    events = await job_events(kafka_bootstrap, EVENTS_RAW, "sp-early")
    assert [e.type for e in events] == ["cancelled"]


async def test_malformed_job_goes_to_dlq_and_its_job_fails(kafka_bootstrap, speech_worker, producer):
    await producer.send_and_wait(TOPIC, b'{"job_id": "sp-poison", "modality": "speech", "params": {}}',
                                 key=b"sp-poison")
    events = await job_events(kafka_bootstrap, EVENTS_RAW, "sp-poison")
    assert events[-1].type == "failed" and events[-1].code.value == "invalid_request"

    def has_letter(messages):
        return any(json.loads(m.value).get("job_id") == "sp-poison" for m in messages)

    letters = await read_topic(kafka_bootstrap, DLQ, until=has_letter)
    letter = next(json.loads(m.value) for m in letters if json.loads(m.value).get("job_id") == "sp-poison")
    assert letter["topic"] == TOPIC and letter["consumer"] == "genloom-workers-speech"
