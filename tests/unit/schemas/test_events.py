import pytest
from pydantic import ValidationError

from schemas import (
    Accepted, Artifact, Cancelled, Completed, ErrorCode, Failed, ModelInfo, Progress, Started,
    TokenDelta, Usage, is_terminal, parse_event,
)

COMMON = {"job_id": "j", "seq": 3, "attempt": 7, "source": "worker"}
EVENTS = [
    Accepted(**COMMON, tenant="t", modality="text"),
    Started(**COMMON, worker="w", model=ModelInfo(id="m", device="cpu", dtype="float32")),
    TokenDelta(**COMMON, text="héllo", tokens=2),
    Progress(**COMMON, step=1, total=4),
    Artifact(**COMMON, uri="blob://t/j/0.png", mime_type="image/png", bytes=10, sha256="0" * 64),
    Completed(**COMMON, usage=Usage(prompt_tokens=3, completion_tokens=2, total_tokens=5)),
    Failed(**COMMON, code=ErrorCode.GENERATION_ERROR, message="boom"),
    Cancelled(**COMMON),
]


@pytest.mark.parametrize("event", EVENTS, ids=lambda e: e.type)
def test_every_event_round_trips_through_json(event):
    again = parse_event(event.model_dump_json().encode())
    assert again == event and type(again) is type(event)


def test_only_completed_failed_cancelled_are_terminal():
    assert [e.type for e in EVENTS if is_terminal(e)] == ["completed", "failed", "cancelled"]


def test_event_type_is_checked():
    with pytest.raises(ValidationError):
        parse_event({**COMMON, "type": "exploded"})


def test_failed_needs_a_known_code():
    with pytest.raises(ValidationError):
        parse_event({**COMMON, "type": "failed", "code": "weird", "message": "x"})


def test_artifact_checksum_must_be_sha256_hex():
    with pytest.raises(ValidationError):
        Artifact(**COMMON, uri="u", mime_type="image/png", bytes=1, sha256="xyz")


def test_may_be_lets_the_types_asked_for_through_and_skips_tokens_unparsed():
    from infra.kafka.codec import encode
    from schemas.enums import EventSource, EventType
    from schemas.events import Completed, TokenDelta, may_be

    done = encode(Completed(job_id="j", seq=3, source=EventSource.WORKER, text="hi", finish_reason="stop"))
    token = encode(TokenDelta(job_id="j", seq=2, source=EventSource.WORKER, text="x", tokens=1))
    wanted = frozenset({EventType.COMPLETED, EventType.STARTED})
    assert may_be(done, wanted) and not may_be(token, wanted)
    assert not may_be(None, wanted) and not may_be(b"", wanted)
    # a name inside a longer text is escaped in the JSON, so it does not let a token through
    quoted = encode(TokenDelta(job_id="j", seq=4, source=EventSource.WORKER, text='say "completed" now', tokens=3))
    assert not may_be(quoted, wanted)
    # a text that is exactly a name does: it is parsed and skipped then, never missed
    exact = encode(TokenDelta(job_id="j", seq=5, source=EventSource.WORKER, text="completed", tokens=1))
    assert may_be(exact, wanted)
