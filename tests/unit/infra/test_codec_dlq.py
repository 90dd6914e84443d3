import json

from infra.kafka.codec import decode_event, encode, peek_job_id
from infra.kafka.dlq import MAX_PAYLOAD_CHARS, dead_letter_for
from infra.kafka.emitter import EventEmitter
from infra.kafka.topics import catalogue, jobs_topic
from schemas import Cancelled, ErrorCode, EventSource, Progress


def test_encode_is_plain_json_not_pickle():
    event = Progress(job_id="j", seq=0, source=EventSource.WORKER, step=1, total=2)
    raw = encode(event)
    assert json.loads(raw)["type"] == "progress"
    assert decode_event(raw) == event


def test_peek_job_id_reads_only_valid_ids():
    assert peek_job_id(b'{"job_id": "abc-1", "modality": "nope"}') == "abc-1"
    assert peek_job_id(b'{"job_id": "has space"}') is None
    assert peek_job_id(b"\xff\xfe") is None
    assert peek_job_id(b"[1,2]") is None
    assert peek_job_id(None) is None


def test_dead_letter_keeps_reason_and_truncates_payload():
    value = b'{"job_id": "j-1", "x": "' + b"a" * (MAX_PAYLOAD_CHARS * 2) + b'"}'
    letter = dead_letter_for(topic="t", partition=2, offset=9, key=b"k", value=value,
                             consumer="c", code=ErrorCode.MESSAGE_TOO_LARGE, error="too big")
    assert letter.job_id == "j-1"
    assert letter.payload_bytes == len(value)
    assert len(letter.payload) == MAX_PAYLOAD_CHARS
    assert letter.code is ErrorCode.MESSAGE_TOO_LARGE and letter.key == "k"


def test_emitter_numbers_per_job_and_attempt_and_resets_after_terminal():
    emitter = EventEmitter(None, "topic", EventSource.WORKER)
    a0 = emitter.build(Progress, "a", 1, step=1, total=3)
    a1 = emitter.build(Progress, "a", 1, step=2, total=3)
    b0 = emitter.build(Progress, "b", 1, step=1, total=3)
    a_other_attempt = emitter.build(Progress, "a", 2, step=1, total=3)
    end = emitter.build(Cancelled, "a", 1)
    assert [a0.seq, a1.seq, b0.seq, a_other_attempt.seq, end.seq] == [0, 1, 0, 0, 2]
    assert emitter.build(Progress, "a", 1, step=1, total=3).seq == 0


def test_catalogue_has_every_modality_and_final_partitions():
    names = {t.name: t.partitions for t in catalogue(partitions=6, job_partitions=3)}
    assert names["genloom.requests"] == 6 and names[jobs_topic("video")] == 3
    assert names["genloom.control"] == 1 and "genloom.dlq" in names
    assert len(names) == 10 and names["genloom.memory"] == 6
