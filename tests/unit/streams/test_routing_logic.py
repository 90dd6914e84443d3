import json

from streams.routing.logic import Rejected, Routed, route
from schemas import ErrorCode

ARGS = dict(topic="genloom.requests", partition=0, offset=5, key=b"k", max_bytes=10_000, consumer="test")


def test_valid_job_goes_to_its_modality_topic_keyed_by_session():
    value = json.dumps({"job_id": "j1", "session": "s1", "modality": "image",
                        "params": {"prompt": "a cat"}}).encode()
    decision = route(value=value, **ARGS)
    assert isinstance(decision, Routed)
    assert decision.topic == "genloom.jobs.image" and decision.key == b"s1"
    assert json.loads(decision.value)["job_id"] == "j1"


def test_invalid_job_is_rejected_with_code_and_job_id():
    value = json.dumps({"job_id": "j2", "modality": "text", "params": {"messages": []}}).encode()
    decision = route(value=value, **ARGS)
    assert isinstance(decision, Rejected)
    assert decision.code is ErrorCode.INVALID_PARAMETER and decision.job_id == "j2"
    assert decision.letter.offset == 5 and decision.letter.topic == "genloom.requests"


def test_garbage_and_empty_and_oversized_never_raise():
    assert route(value=b"\x00\x01garbage", **ARGS).code is ErrorCode.INVALID_JSON
    assert route(value=b"", **ARGS).code is ErrorCode.MALFORMED_MESSAGE
    big = json.dumps({"job_id": "j3", "modality": "text", "params": {"messages": [
        {"role": "user", "content": "x" * 20_000}]}}).encode()
    rejected = route(value=big, **ARGS)
    assert rejected.code is ErrorCode.MESSAGE_TOO_LARGE and rejected.job_id == "j3"
